// The controller loop: events queue keys; a bounded pool of workers hands each key's object to the
// reconciler, one worker per key at a time; the reconciler answers with a Result the loop acts on
// (done, requeue after a delay, blocked until something changes). Failures come back with per-key
// backoff. Every primary object is re-queued each resync period, except those already settled.
// Replays of the cache (the start, a resync) queue at low priority, events at normal: a change goes
// before thousands of objects that did not change. A reconcile has a deadline: past it, its signal
// aborts and its worker moves on. Knows nothing of any resource in particular.
import type { Span } from '@opentelemetry/api';
import type { KubeObject } from '../kube/object.ts';
import { inSpan, recordError, type Tracer } from '../telemetry/tracing.ts';
import { Priority, type WorkQueue } from './workqueue.ts';

/**
 * How long in-flight reconciles may go on after the stop: a write under way finishes instead of
 * being cut, and one stuck (throttled, the API server gone) is aborted well within the 30 s the
 * process gives its drain.
 */
export const DRAIN_GRACE_MS = 20_000;

/**
 * How long a reconcile may run (`--reconcile-timeout`) before its signal aborts and its worker
 * moves on. A reconcile makes a few requests, each bounded by the client's 60 s deadline: one that
 * has run for 2 minutes has had its requests fail already, or waits on something that will not
 * come; holding a worker longer only delays other keys.
 */
export const DEFAULT_RECONCILE_TIMEOUT_MS = 120_000;

/** A reconcile's deadline passed: its signal's reason, and the error its key is retried for. */
export class ReconcileTimeoutError extends Error {
  override readonly name = 'ReconcileTimeoutError';

  constructor(timeoutMs: number) {
    super(`the reconcile did not finish within its deadline (${String(timeoutMs / 1000)} s)`);
  }
}

/** A retry schedule: the first delay, doubling to the last. */
export interface RetrySchedule {
  initialMs: number;
  maxMs: number;
}

/** What a reconcile asks of the loop. */
export type Result =
  /** Nothing left to do until the object or what it owns changes. */
  | { kind: 'done' }
  /** Reconcile again after this long, even if nothing changes. */
  | { kind: 'requeue'; afterMs: number }
  /**
   * Something retrying soon cannot fix (a name someone else holds, a write the API server refuses
   * as invalid): looked at again on `schedule` (doubling while the same `reason` recurs), or at
   * once when an event of `wakeOn` arrives; resyncs leave it alone.
   */
  | { kind: 'blocked'; reason: string; schedule: RetrySchedule; wakeOn: 'any' | 'primary' };

export const Result = {
  done: (): Result => DONE,
  requeueAfter: (ms: number): Result => ({ kind: 'requeue', afterMs: ms }),
  /**
   * `wakeOn`: `any` for a block a related object's change may lift (the holder of a name going);
   * `primary` (the default) when only a change of the primary object itself can.
   */
  blocked: (
    reason: string,
    schedule: RetrySchedule,
    wakeOn: 'any' | 'primary' = 'primary',
  ): Result => ({ kind: 'blocked', reason, schedule, wakeOn }),
};

const DONE: Result = { kind: 'done' };

export interface ReconcileContext {
  /** `namespace/name`, or `name` for a cluster-scoped object. */
  key: string;
  /**
   * Aborted at the reconcile's deadline (a ReconcileTimeoutError), or when the process stops and
   * the drain's grace has run out.
   */
  signal: AbortSignal;
}

/** What a controller runs for each key. Throwing is a failure: retried with backoff. */
export interface Reconciler<T extends KubeObject> {
  /** Brings the world in line with `object`, read from the cache (a deleting object included). */
  reconcile(object: T, context: ReconcileContext): Promise<Result>;
  /**
   * The object is no longer in the cache (deleted): clean up what it leaves behind that nothing
   * else does (owner references let the garbage collector do most), and forget what is kept.
   */
  deleted?(key: string, context: ReconcileContext): Promise<void> | void;
}

export type ReconcileOutcome = 'success' | 'requeue_after' | 'error';

export interface ControllerObserver {
  /** `traceId` is the reconcile's sampled trace, if it has one (for exemplars). */
  reconciled?(outcome: ReconcileOutcome, seconds: number, traceId?: string): void;
  activeWorkers?(count: number): void;
}

/**
 * Why a key was queued: resyncs and the start replay the cache (low priority), events bring a
 * change (normal priority).
 */
export type Cause = 'resync' | 'primary' | 'related';

export interface ControllerOptions<T extends KubeObject> {
  name: string;
  queue: WorkQueue;
  reconciler: Reconciler<T>;
  /** The cache of the objects the controller reconciles. */
  primary: { get(key: string): T | undefined; keys(): string[] };
  /** Every cache the reconciler reads: workers start once all are synced. */
  informers: { whenSynced(): Promise<void> }[];
  concurrency: number;
  resyncMs: number;
  observer?: ControllerObserver;
  onError?: (key: string, error: unknown, retries: number) => void;
  /** When set, each reconcile runs in a span of its own, parent of its API calls' spans. */
  tracer?: Tracer;
  /**
   * A reconcile's deadline (0: none). Past it its signal aborts, and its worker moves on: the key
   * is retried with backoff, though not before the call returns (it may still be writing).
   */
  reconcileTimeoutMs?: number;
}

/** A key the reconciler said is blocked, until when it is left alone. */
interface Blocked {
  reason: string;
  delayMs: number;
  wakeOn: 'any' | 'primary';
}

export class Controller<T extends KubeObject = KubeObject> {
  readonly name: string;
  private readonly options: ControllerOptions<T>;
  private active = 0;
  /** Queues nothing before `run` is told to lead: a standby keeps its caches and writes nothing. */
  private running = false;
  /**
   * Keys whose last reconcile was done and that no event has touched since: a resync would replay
   * the same objects into the same decision, so it skips them.
   */
  private readonly settled = new Set<string>();
  private readonly blocked = new Map<string, Blocked>();
  /** Keys a worker holds, until their call returns (even one abandoned at its deadline). */
  private readonly inFlight = new Set<string>();

  constructor(options: ControllerOptions<T>) {
    this.options = options;
    this.name = options.name;
  }

  get queue(): WorkQueue {
    return this.options.queue;
  }

  /** Queues `key` for `cause`. Events wake a blocked key only if they are of the kind it awaits. */
  enqueue(key: string, cause: Cause): void {
    if (!this.running) return;
    if (cause === 'resync') {
      if (this.settled.has(key) || this.blocked.has(key)) return;
    } else {
      this.settled.delete(key);
      const blocked = this.blocked.get(key);
      if (blocked?.wakeOn === 'primary' && cause !== 'primary') return;
      // A changed primary object starts the wait afresh if it is still blocked.
      if (cause === 'primary') this.blocked.delete(key);
    }
    this.options.queue.add(key, cause === 'resync' ? Priority.low : Priority.normal);
  }

  /** Re-queues every primary object not settled: what the periodic resync does, on demand. */
  resync(): void {
    for (const key of this.options.primary.keys()) this.enqueue(key, 'resync');
  }

  /**
   * Queues `keys` at low priority whatever was known of them: objects this replica starts to
   * reconcile (a bucket taken over) may have changed since it last settled them, if ever.
   */
  replay(keys: Iterable<string>): void {
    for (const key of keys) {
      this.settled.delete(key);
      this.blocked.delete(key);
      this.enqueue(key, 'resync');
    }
  }

  /** Resolves once no worker holds any of `keys`: their reconciles, and their writes, are over. */
  async idle(keys: ReadonlySet<string>, pollMs = 50): Promise<void> {
    while ([...this.inFlight].some((key) => keys.has(key))) {
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  /**
   * Reconciles until `signal` aborts, once every cache is synced, starting with every cached
   * primary object at low priority (a new leader must check what happened while it stood by, but
   * the changes that come meanwhile go first); in-flight reconciles finish first (aborted past
   * DRAIN_GRACE_MS).
   */
  async run(signal: AbortSignal): Promise<void> {
    const { queue, informers, concurrency, resyncMs } = this.options;
    await Promise.race([
      Promise.all(informers.map((i) => i.whenSynced())),
      new Promise((resolve) => {
        signal.addEventListener('abort', resolve, { once: true });
      }),
    ]);
    if (signal.aborted) {
      await queue.shutDown();
      return;
    }
    this.running = true;
    this.resync();
    const resync = setInterval(() => {
      this.resync();
    }, resyncMs);
    resync.unref();
    // The reconciles' own signal: the stop ends the handing out of keys at once, but reaches the
    // reconciles under way only after the grace.
    const cancel = new AbortController();
    let grace: NodeJS.Timeout | undefined;
    const workers = Array.from({ length: concurrency }, () => this.work(cancel.signal));
    signal.addEventListener(
      'abort',
      () => {
        clearInterval(resync);
        void queue.shutDown();
        grace = setTimeout(() => {
          cancel.abort(signal.reason);
        }, DRAIN_GRACE_MS);
      },
      { once: true },
    );
    await Promise.all(workers);
    clearTimeout(grace);
  }

  private async work(signal: AbortSignal): Promise<void> {
    const { queue, observer, tracer, name } = this.options;
    for (;;) {
      const item = await queue.getWithPriority();
      if (item === undefined) return;
      const { key, priority } = item;
      this.inFlight.add(key);
      observer?.activeWorkers?.(++this.active);
      let abandoned: { returned: Promise<unknown> } | undefined;
      try {
        abandoned = await inSpan(
          tracer,
          () => {
            const [namespace, objectName] = key.includes('/') ? key.split('/', 2) : ['', key];
            return {
              name: 'reconcile',
              attributes: {
                'controller.name': name,
                'k8s.namespace.name': namespace,
                'k8s.object.name': objectName,
              },
            };
          },
          (span) => this.reconcileOne(key, priority, signal, span),
        );
      } finally {
        observer?.activeWorkers?.(--this.active);
        // A call abandoned at its deadline keeps its key: no second reconcile of it starts while
        // the first may still write. Its retry waits in the queue until the call returns.
        if (abandoned) {
          void abandoned.returned.then(() => {
            this.inFlight.delete(key);
            queue.done(key);
          });
        } else {
          this.inFlight.delete(key);
          queue.done(key);
        }
      }
    }
  }

  /**
   * Reconciles `key` and acts on the result; a failure is retried with backoff at the key's
   * priority. Resolves when the worker is free: if the call was abandoned at its deadline, with
   * a promise that settles when the call does (never rejecting), else undefined.
   */
  private async reconcileOne(
    key: string,
    priority: Priority,
    signal: AbortSignal,
    span?: Span,
  ): Promise<{ returned: Promise<unknown> } | undefined> {
    const { queue, observer, onError } = this.options;
    const traceId = span?.isRecording() ? span.spanContext().traceId : undefined;
    const started = performance.now();
    let outcome: ReconcileOutcome = 'error';
    const deadline = this.deadline(signal);
    const call = this.reconcileKey(key, deadline?.signal ?? signal);
    try {
      const result = await (deadline ? Promise.race([call, deadline.passed]) : call);
      queue.forget(key);
      outcome = this.act(key, result, priority);
      return undefined;
    } catch (err) {
      this.settled.delete(key);
      this.blocked.delete(key);
      onError?.(key, err, queue.retries(key));
      queue.addRateLimited(key, priority);
      // The span records the error; the loop goes on with the next key.
      if (span) recordError(span, err);
      // Wrapped: an async function returning the promise itself would wait for it.
      return deadline?.signal.aborted ? { returned: call.catch(() => undefined) } : undefined;
    } finally {
      deadline?.clear();
      span?.setAttribute('reconcile.result', outcome);
      observer?.reconciled?.(outcome, (performance.now() - started) / 1000, traceId);
    }
  }

  /**
   * The deadline of one reconcile, if it has one: a signal that aborts at it or with `signal`,
   * and a promise that rejects at it, for the worker to stop waiting on a call that ignores it.
   */
  private deadline(
    signal: AbortSignal,
  ): { signal: AbortSignal; passed: Promise<never>; clear: () => void } | undefined {
    const timeoutMs = this.options.reconcileTimeoutMs ?? 0;
    if (timeoutMs <= 0) return undefined;
    const expired = new AbortController();
    const passed = Promise.withResolvers<never>();
    // Unhandled only when the call wins the race, which leaves this one pending forever.
    passed.promise.catch(() => undefined);
    const timer = setTimeout(() => {
      const reason = new ReconcileTimeoutError(timeoutMs);
      expired.abort(reason);
      passed.reject(reason);
    }, timeoutMs);
    return {
      signal: AbortSignal.any([signal, expired.signal]),
      passed: passed.promise,
      clear: () => {
        clearTimeout(timer);
      },
    };
  }

  private async reconcileKey(key: string, signal: AbortSignal): Promise<Result> {
    const { primary, reconciler } = this.options;
    const object = primary.get(key);
    if (object) return reconciler.reconcile(object, { key, signal });
    this.settled.delete(key);
    this.blocked.delete(key);
    await reconciler.deleted?.(key, { key, signal });
    return DONE;
  }

  /** Acts on a reconcile's result; the outcome is what the metrics count. */
  private act(key: string, result: Result, priority: Priority): ReconcileOutcome {
    const { queue } = this.options;
    switch (result.kind) {
      case 'done':
        this.blocked.delete(key);
        if (this.options.primary.get(key)) this.settled.add(key);
        return 'success';
      case 'requeue':
        this.blocked.delete(key);
        this.settled.delete(key);
        queue.addAfter(key, result.afterMs, priority);
        return 'requeue_after';
      case 'blocked': {
        this.settled.delete(key);
        const known = this.blocked.get(key);
        const { reason, schedule, wakeOn } = result;
        const delayMs =
          known?.reason === reason
            ? Math.min(known.delayMs * 2, schedule.maxMs)
            : schedule.initialMs;
        this.blocked.set(key, { reason, delayMs, wakeOn });
        queue.addAfter(key, delayMs, priority);
        return 'requeue_after';
      }
    }
  }
}
