// The controller loop: informers feed keys into a work queue; a bounded pool of workers runs the
// reconciler on them; failures come back with per-key backoff, successes may ask for a later
// requeue; every primary object is re-queued each resync period. Knows nothing of Echo.
import type { Span } from '@opentelemetry/api';
import { inSpan, recordError, type Tracer } from '../telemetry/tracing.ts';
import type { Informer } from './cache/informer.ts';
import type { KubeObject } from '../kube/object.ts';
import type { WorkQueue } from './workqueue.ts';

/**
 * How long in-flight reconciles may go on after the stop: a write under way finishes instead of
 * being cut, and one stuck (throttled, the API server gone) is aborted well within the 30 s the
 * process gives its drain.
 */
export const DRAIN_GRACE_MS = 20_000;

export interface ReconcileResult {
  /** Reconcile this key again after this long, even if nothing changes. */
  requeueAfterMs?: number;
}

export type Reconcile = (key: string, signal: AbortSignal) => Promise<ReconcileResult | undefined>;

export type ReconcileOutcome = 'success' | 'requeue_after' | 'error';

export interface ControllerObserver {
  /** `traceId` is the reconcile's sampled trace, if it has one (for exemplars). */
  reconciled?(outcome: ReconcileOutcome, seconds: number, traceId?: string): void;
  activeWorkers?(count: number): void;
}

export interface ControllerOptions {
  name: string;
  queue: WorkQueue;
  reconcile: Reconcile;
  /** The informer of the objects the controller reconciles; its keys are what resync re-queues. */
  primary: Pick<Informer<KubeObject>, 'keys'>;
  /** Every informer the reconciler reads: workers start once all are synced. */
  informers: Pick<Informer<KubeObject>, 'whenSynced'>[];
  concurrency: number;
  resyncMs: number;
  observer?: ControllerObserver;
  onError?: (key: string, error: unknown, retries: number) => void;
  /** When set, each reconcile runs in a span of its own, parent of its API calls' spans. */
  tracer?: Tracer;
}

/** The key of `object`'s controller owner when that owner is of the given kind, else undefined. */
export function controllerOwnerKey(
  object: KubeObject,
  owner: { apiVersion: string; kind: string },
): string | undefined {
  const ref = object.metadata.ownerReferences?.find((r) => r.controller === true);
  if (ref?.apiVersion !== owner.apiVersion || ref.kind !== owner.kind) return undefined;
  return object.metadata.namespace ? `${object.metadata.namespace}/${ref.name}` : ref.name;
}

export class Controller {
  private readonly options: ControllerOptions;
  private active = 0;

  constructor(options: ControllerOptions) {
    this.options = options;
  }

  /**
   * Runs until `signal` aborts, then lets in-flight reconciles finish (aborted past DRAIN_GRACE_MS)
   * before resolving.
   */
  async run(signal: AbortSignal): Promise<void> {
    const { queue, informers, concurrency, resyncMs, primary } = this.options;
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
    const resync = setInterval(() => {
      for (const key of primary.keys()) queue.add(key);
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
      const key = await queue.get();
      if (key === undefined) return;
      observer?.activeWorkers?.(++this.active);
      try {
        await inSpan(
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
          (span) => this.reconcileOne(key, signal, span),
        );
      } finally {
        observer?.activeWorkers?.(--this.active);
        queue.done(key);
      }
    }
  }

  private async reconcileOne(key: string, signal: AbortSignal, span?: Span): Promise<void> {
    const { queue, reconcile, observer, onError } = this.options;
    const traceId = span?.isRecording() ? span.spanContext().traceId : undefined;
    const started = performance.now();
    let outcome: ReconcileOutcome = 'error';
    try {
      const result = await reconcile(key, signal);
      queue.forget(key);
      const after = result?.requeueAfterMs;
      if (after !== undefined) queue.addAfter(key, after);
      outcome = after === undefined ? 'success' : 'requeue_after';
    } catch (err) {
      onError?.(key, err, queue.retries(key));
      queue.addRateLimited(key);
      // The span records the error; the loop goes on with the next key.
      if (span) recordError(span, err);
    } finally {
      span?.setAttribute('reconcile.result', outcome);
      observer?.reconciled?.(outcome, (performance.now() - started) / 1000, traceId);
    }
  }
}
