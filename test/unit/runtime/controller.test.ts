// The runtime Controller's contract with a reconciler, with a fake reconciler and a real WorkQueue:
// one worker per key; a Result of done settles the key (resyncs skip it until an event touches it),
// requeue comes back after its delay, blocked after a delay that doubles while the same reason
// recurs (capped), woken only by the events it awaits; a failure is retried on the queue's backoff;
// a key gone from the primary cache is handed to `deleted`; nothing is queued before `run`; a replay
// is queued at low priority, an event at normal, and a requeue keeps its key's priority; a reconcile
// past its deadline frees its worker, and its key is retried, never while the call still runs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import type { KubeObject } from '../../../src/kube/object.ts';
import {
  Controller,
  ReconcileTimeoutError,
  Result,
  type ControllerObserver,
  type ReconcileContext,
  type ReconcileOutcome,
  type RetrySchedule,
} from '../../../src/runtime/controller.ts';
import { Priority, WorkQueue } from '../../../src/runtime/workqueue.ts';

/**
 * A real WorkQueue that also records the delays it was asked for, the keys rate-limited, and the
 * priority of every add.
 */
class RecordingQueue extends WorkQueue {
  readonly delays: [string, number][] = [];
  readonly rateLimited: string[] = [];
  /** `key priority` of each add, delayed or rate-limited ones included (as asked, not as run). */
  readonly priorities: string[] = [];
  private retrying = false;

  override add(key: string, priority?: Priority): void {
    this.priorities.push(`add ${key} ${String(priority ?? Priority.normal)}`);
    super.add(key, priority);
  }

  override addAfter(key: string, ms: number, priority?: Priority): void {
    this.delays.push([key, ms]);
    if (!this.retrying) this.priorities.push(`after ${key} ${String(priority ?? Priority.normal)}`);
    super.addAfter(key, ms, priority);
  }

  override addRateLimited(key: string, priority?: Priority): void {
    this.rateLimited.push(key);
    this.priorities.push(`retry ${key} ${String(priority ?? Priority.normal)}`);
    this.retrying = true;
    super.addRateLimited(key, priority);
    this.retrying = false;
  }
}

/** Lets the workers take what is queued and finish what they can without waiting on a timer. */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await setImmediate();
}

/** Waits (on a timer that keeps the process up: the queue's are unref'd) until `ok` holds. */
async function until(ok: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!ok()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting: ${what}`);
    await sleep(1);
  }
}

const object = (key: string): KubeObject => {
  const [namespace, name] = key.split('/') as [string, string];
  return { metadata: { name, namespace } };
};

type Answer = (key: string, call: number, context: ReconcileContext) => Result | Promise<Result>;

/**
 * A Controller over a primary cache holding `keys`, whose reconciler answers with `answer` (by key
 * and the key's call count, from 1); `deleted` records the keys it is told are gone. The caches are
 * synced when `synced` resolves (at once by default). `start` runs it, `stop` stops it.
 */
function harness(
  options: {
    keys?: string[];
    answer?: Answer;
    concurrency?: number;
    synced?: Promise<void>;
    withDeleted?: boolean;
    reconcileTimeoutMs?: number;
  } = {},
) {
  const objects = new Map((options.keys ?? ['team/a']).map((k) => [k, object(k)]));
  const answer: Answer = options.answer ?? (() => Result.done());
  const queue = new RecordingQueue();
  const calls: string[] = [];
  /** When each reconcile began, on the monotonic clock. */
  const times: number[] = [];
  const deleted: string[] = [];
  const outcomes: ReconcileOutcome[] = [];
  const workers: number[] = [];
  const errors: { key: string; error: unknown; retries: number }[] = [];
  const observer: ControllerObserver = {
    reconciled: (outcome) => outcomes.push(outcome),
    activeWorkers: (count) => workers.push(count),
  };
  const count = (key: string) => calls.filter((k) => k === key).length;
  const controller = new Controller({
    name: 'widgets',
    queue,
    reconciler: {
      reconcile: (o, context) => {
        assert.equal(o, objects.get(context.key), 'the object the cache holds');
        calls.push(context.key);
        times.push(performance.now());
        return Promise.resolve(answer(context.key, count(context.key), context));
      },
      ...(options.withDeleted === false
        ? {}
        : {
            deleted: (key: string, context: ReconcileContext) => {
              assert.equal(context.key, key);
              deleted.push(key);
            },
          }),
    },
    primary: { get: (key) => objects.get(key), keys: () => [...objects.keys()] },
    informers: [{ whenSynced: () => options.synced ?? Promise.resolve() }],
    concurrency: options.concurrency ?? 2,
    resyncMs: 3600_000,
    observer,
    onError: (key, error, retries) => errors.push({ key, error, retries }),
    ...(options.reconcileTimeoutMs === undefined
      ? {}
      : { reconcileTimeoutMs: options.reconcileTimeoutMs }),
  });
  const abort = new AbortController();
  let running: Promise<void> | undefined;
  return {
    controller,
    queue,
    objects,
    calls,
    times,
    count,
    deleted,
    outcomes,
    workers,
    errors,
    start: () => {
      running = controller.run(abort.signal);
    },
    stop: async () => {
      abort.abort();
      await running;
    },
  };
}

const LONG: RetrySchedule = { initialMs: 60_000, maxMs: 3600_000 };

describe('Controller: before it runs', () => {
  it('queues nothing before run has started, nor before the caches are synced', async () => {
    const synced = Promise.withResolvers<undefined>();
    const h = harness({ keys: ['team/a', 'team/b'], synced: synced.promise });
    h.controller.enqueue('team/a', 'primary');
    h.controller.enqueue('team/a', 'related');
    h.controller.resync();
    assert.equal(h.queue.length, 0, 'not yet run');
    h.start();
    await flush();
    h.controller.enqueue('team/a', 'primary');
    assert.equal(h.queue.length, 0, 'caches not synced yet');
    assert.deepEqual(h.calls, []);
    synced.resolve(undefined);
    await until(() => h.calls.length === 2, 'the first replay');
    await flush();
    assert.deepEqual(h.calls.sort(), ['team/a', 'team/b'], 'every cached object, once');
    await h.stop();
  });

  it('returns without reconciling when stopped before the caches are synced', async () => {
    const h = harness({ synced: new Promise<void>(() => undefined) });
    h.start();
    await h.stop();
    assert.deepEqual(h.calls, []);
  });
});

describe('Controller: workers', () => {
  it('hands a key to one worker at a time, and runs it again once for events meanwhile', async () => {
    const release = Promise.withResolvers<undefined>();
    let inFlight = 0;
    let most = 0;
    const h = harness({
      keys: ['team/a', 'team/b'],
      concurrency: 4,
      answer: async (key, call) => {
        if (key !== 'team/a') return Result.done();
        most = Math.max(most, ++inFlight);
        if (call === 1) await release.promise;
        inFlight--;
        return Result.done();
      },
    });
    h.start();
    await until(() => h.count('team/a') === 1 && h.count('team/b') === 1, 'both under way');
    h.controller.enqueue('team/a', 'primary');
    h.controller.enqueue('team/a', 'related');
    h.controller.enqueue('team/a', 'primary');
    await flush();
    assert.equal(h.count('team/a'), 1, 'not handed to a second worker while it runs');
    assert.equal(h.count('team/b'), 1, 'another key ran meanwhile');
    release.resolve(undefined);
    await until(() => h.count('team/a') === 2, 'run again');
    await flush();
    assert.equal(h.count('team/a'), 2, 'once for all the events meanwhile');
    assert.equal(most, 1);
    await h.stop();
  });

  it('tells the observer of each outcome and of the workers busy', async () => {
    const h = harness({
      answer: (_key, call) => {
        if (call === 1) throw new Error('first fails');
        if (call === 2) return Result.requeueAfter(1);
        if (call === 3) return Result.blocked('Held', { initialMs: 1, maxMs: 1 });
        return Result.done();
      },
    });
    h.start();
    await until(() => h.outcomes.length === 4, 'four reconciles');
    assert.deepEqual(h.outcomes, ['error', 'requeue_after', 'requeue_after', 'success']);
    assert.deepEqual(h.workers, [1, 0, 1, 0, 1, 0, 1, 0]);
    await h.stop();
  });
});

describe('Controller: done', () => {
  it('settles a key that is done: a resync skips it, an event of either kind brings it back', async () => {
    const h = harness({ keys: ['team/a'] });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    h.controller.resync();
    await flush();
    assert.equal(h.calls.length, 1, 'settled: the resync skips it');
    h.controller.enqueue('team/a', 'related');
    await until(() => h.calls.length === 2, 'a related event');
    h.controller.resync();
    await flush();
    assert.equal(h.calls.length, 2, 'settled again');
    h.controller.enqueue('team/a', 'primary');
    await until(() => h.calls.length === 3, 'a primary event');
    await h.stop();
  });

  it('re-queues at a resync a key that is not settled', async () => {
    const h = harness({
      keys: ['team/a', 'team/b'],
      answer: (key) => (key === 'team/a' ? Result.requeueAfter(3600_000) : Result.done()),
    });
    h.start();
    await until(() => h.calls.length === 2, 'the first replay');
    h.controller.resync();
    await until(() => h.count('team/a') === 2, 'the resync');
    await flush();
    assert.equal(h.count('team/b'), 1, 'the settled one skipped');
    await h.stop();
  });
});

describe('Controller: requeue', () => {
  it('reconciles again after the delay asked, even if nothing changes', async () => {
    const h = harness({
      answer: (_key, call) => (call === 1 ? Result.requeueAfter(30) : Result.done()),
    });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    await flush();
    assert.deepEqual(h.queue.delays, [['team/a', 30]]);
    await until(() => h.calls.length === 2, 'the requeue');
    assert.ok(h.times[1]! - h.times[0]! >= 28, 'not before the delay');
    assert.deepEqual(h.outcomes, ['requeue_after', 'success']);
    await h.stop();
  });
});

describe('Controller: blocked', () => {
  it('looks again after a delay doubling while the same reason recurs, capped; afresh for another', async () => {
    const schedule = { initialMs: 5, maxMs: 20 };
    const h = harness({
      answer: (_key, call) => {
        if (call <= 5) return Result.blocked('NameTaken', schedule);
        if (call === 6) return Result.blocked('ApplyFailed', schedule);
        if (call === 7) return Result.blocked('NameTaken', schedule);
        return Result.done();
      },
    });
    h.start();
    await until(() => h.calls.length === 8, 'blocked seven times, then done');
    assert.deepEqual(
      h.queue.delays.map(([, ms]) => ms),
      [5, 10, 20, 20, 20, 5, 5],
    );
    assert.deepEqual(h.outcomes, [...Array<string>(7).fill('requeue_after'), 'success']);
    await h.stop();
  });

  it('looks again only after the delay, and no resync brings it sooner', async () => {
    const h = harness({
      answer: (_key, call) =>
        // Long enough that a loaded machine's late timers still resync well inside it.
        call === 1 ? Result.blocked('NameTaken', { initialMs: 600, maxMs: 600 }) : Result.done(),
    });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    h.controller.resync();
    await sleep(20);
    h.controller.resync();
    await flush();
    assert.equal(h.calls.length, 1, 'left alone by resyncs');
    await until(() => h.calls.length === 2, 'the delay');
    assert.ok(h.times[1]! - h.times[0]! >= 590, 'not before the delay');
    await h.stop();
  });

  it("wakes on a primary event only, when that is what it awaits ('primary'); afresh", async () => {
    const h = harness({ answer: () => Result.blocked('ApplyFailed', LONG, 'primary') });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    h.controller.enqueue('team/a', 'related');
    h.controller.resync();
    await flush();
    assert.equal(h.calls.length, 1, 'a related event or a resync cannot lift it');
    h.controller.enqueue('team/a', 'primary');
    await until(() => h.calls.length === 2, 'woken by its own change');
    h.controller.enqueue('team/a', 'primary');
    await until(() => h.calls.length === 3, 'and again');
    assert.deepEqual(
      h.queue.delays.map(([, ms]) => ms),
      [60_000, 60_000, 60_000],
      'a primary event starts the wait afresh',
    );
    await h.stop();
  });

  it("wakes on any event when it awaits 'any': a related one keeps the doubling", async () => {
    const h = harness({ answer: () => Result.blocked('NameTaken', LONG, 'any') });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    h.controller.resync();
    await flush();
    assert.equal(h.calls.length, 1, 'a resync leaves it alone');
    h.controller.enqueue('team/a', 'related');
    await until(() => h.calls.length === 2, 'woken by a related event');
    h.controller.enqueue('team/a', 'related');
    await until(() => h.calls.length === 3, 'and again');
    h.controller.enqueue('team/a', 'primary');
    await until(() => h.calls.length === 4, 'woken by a primary event');
    assert.deepEqual(
      h.queue.delays.map(([, ms]) => ms),
      [60_000, 120_000, 240_000, 60_000],
    );
    await h.stop();
  });

  it('is no longer blocked once done: resyncs skip it as settled, events wake it', async () => {
    const h = harness({
      answer: (_key, call) =>
        call === 1 ? Result.blocked('NameTaken', LONG, 'any') : Result.done(),
    });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    h.controller.enqueue('team/a', 'related');
    await until(() => h.calls.length === 2, 'woken');
    h.controller.resync();
    await flush();
    assert.equal(h.calls.length, 2);
    h.controller.enqueue('team/a', 'related');
    await until(() => h.calls.length === 3, 'an event');
    await h.stop();
  });
});

describe('Controller: failures', () => {
  it('retries a failure on the queue backoff, counted as an error, told with its retries', async () => {
    const boom = new Error('boom');
    const h = harness({
      answer: (_key, call) => {
        if (call <= 2) throw boom;
        return Result.done();
      },
    });
    h.start();
    await until(() => h.calls.length === 3, 'two failures, then done');
    assert.deepEqual(h.queue.rateLimited, ['team/a', 'team/a']);
    assert.deepEqual(h.errors, [
      { key: 'team/a', error: boom, retries: 0 },
      { key: 'team/a', error: boom, retries: 1 },
    ]);
    assert.deepEqual(h.outcomes, ['error', 'error', 'success']);
    assert.equal(h.queue.retries('team/a'), 0, 'the backoff forgotten on success');
    await h.stop();
  });

  it('forgets a blocked wait when a reconcile fails: the doubling starts afresh', async () => {
    const h = harness({
      answer: (_key, call) => {
        if (call === 2) throw new Error('boom');
        return Result.blocked('NameTaken', LONG, 'any');
      },
    });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    h.controller.enqueue('team/a', 'related');
    await until(() => h.calls.length === 3, 'failed, then retried');
    const blockedDelays = h.queue.delays
      .filter(([, ms]) => ms >= LONG.initialMs)
      .map(([, ms]) => ms);
    assert.deepEqual(blockedDelays, [60_000, 60_000]);
    await h.stop();
  });

  it('no longer counts a failed key as settled: a resync re-queues it', async () => {
    let fail = false;
    const h = harness({
      answer: () => {
        if (fail) throw new Error('boom');
        return Result.done();
      },
    });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    fail = true;
    h.controller.enqueue('team/a', 'primary');
    await until(() => h.calls.length >= 2, 'the failure');
    fail = false;
    await until(() => h.outcomes.at(-1) === 'success', 'the retry');
    const calls = h.calls.length;
    h.controller.resync();
    await flush();
    assert.equal(h.calls.length, calls, 'settled again by its success');
    await h.stop();
  });
});

describe('Controller: a key gone from the cache', () => {
  it('calls deleted, not reconcile, and counts it a success', async () => {
    const h = harness({ keys: ['team/a'] });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    h.objects.delete('team/a');
    h.controller.enqueue('team/a', 'primary');
    await until(() => h.deleted.length === 1, 'deleted');
    assert.deepEqual(h.deleted, ['team/a']);
    assert.equal(h.calls.length, 1, 'no reconcile');
    assert.deepEqual(h.outcomes, ['success', 'success']);
    await h.stop();
  });

  it('forgets a blocked wait of a deleted key: one created again is not left alone', async () => {
    const h = harness({
      answer: () => Result.blocked('NameTaken', { initialMs: 20, maxMs: 20 }, 'primary'),
    });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    // Gone from the cache before its event arrives: its retry finds it missing.
    const gone = h.objects.get('team/a')!;
    h.objects.delete('team/a');
    await until(() => h.deleted.length === 1, 'deleted');
    h.objects.set('team/a', gone);
    h.controller.resync();
    await until(() => h.calls.length === 2, 'the resync finds it anew');
    await h.stop();
  });

  it('is done with a deleted key when the reconciler has no deleted hook', async () => {
    const h = harness({ keys: ['team/a'], withDeleted: false });
    h.start();
    await until(() => h.calls.length === 1, 'the first replay');
    h.objects.delete('team/a');
    h.controller.enqueue('team/a', 'primary');
    await until(() => h.outcomes.length === 2, 'handled');
    assert.deepEqual(h.outcomes, ['success', 'success']);
    assert.deepEqual(h.errors, []);
    await h.stop();
  });
});

describe('Controller: priorities', () => {
  it('replays the cache at low priority and queues events at normal: an event goes first', async () => {
    const release = Promise.withResolvers<undefined>();
    const keys = ['team/a', 'team/b', 'team/c', 'team/d'];
    const h = harness({
      keys,
      concurrency: 1,
      answer: async (key, call) => {
        if (key === 'team/a' && call === 1) await release.promise;
        return Result.done();
      },
    });
    h.start();
    await until(() => h.calls.length === 1, 'the replay under way');
    h.controller.enqueue('team/d', 'primary');
    h.controller.enqueue('team/c', 'related');
    release.resolve(undefined);
    await until(() => h.calls.length === 4, 'the replay done');
    assert.deepEqual(h.calls, ['team/a', 'team/d', 'team/c', 'team/b']);
    assert.deepEqual(h.queue.priorities, [
      ...keys.map((k) => `add ${k} ${String(Priority.low)}`),
      `add team/d ${String(Priority.normal)}`,
      `add team/c ${String(Priority.normal)}`,
    ]);
    await h.stop();
  });

  it('keeps the priority of a key it requeues: after a failure, a requeue, a block', async () => {
    const h = harness({
      keys: ['team/a', 'team/b'],
      answer: (_key, call) => {
        if (call === 1) throw new Error('boom');
        if (call === 2) return Result.requeueAfter(1);
        if (call === 3) return Result.blocked('Held', { initialMs: 1, maxMs: 1 });
        return Result.done();
      },
    });
    h.start();
    await until(() => h.count('team/a') === 4, 'the replay, retried and requeued');
    h.controller.enqueue('team/b', 'primary');
    // The event may land while team/b's replay waits out its block: its calls then run 3 → 5.
    await until(() => h.count('team/b') >= 4, 'team/b');
    await until(() => h.count('team/b') >= 5, 'the event, retried and requeued');
    await flush();
    const low = String(Priority.low);
    const requeues = (key: string) =>
      h.queue.priorities.filter((p) => p.split(' ')[1] === key && !p.startsWith('add '));
    assert.deepEqual(requeues('team/a'), [
      `retry team/a ${low}`,
      `after team/a ${low}`,
      `after team/a ${low}`,
    ]);
    // team/b: its replay (low) too was retried and requeued at low; its event's reconcile was done.
    assert.deepEqual(requeues('team/b'), [
      `retry team/b ${low}`,
      `after team/b ${low}`,
      `after team/b ${low}`,
    ]);
    await h.stop();
  });

  it('retries a key queued by an event at normal priority', async () => {
    const h = harness({
      keys: ['team/a'],
      answer: (_key, call) => {
        if (call === 2) throw new Error('boom');
        return Result.done();
      },
    });
    h.start();
    await until(() => h.calls.length === 1, 'the replay');
    h.controller.enqueue('team/a', 'primary');
    await until(() => h.calls.length === 3, 'the event, failed and retried');
    assert.deepEqual(h.queue.priorities.slice(1), [
      `add team/a ${String(Priority.normal)}`,
      `retry team/a ${String(Priority.normal)}`,
      `add team/a ${String(Priority.normal)}`,
    ]);
    await h.stop();
  });
});

describe('Controller: the reconcile deadline', () => {
  it('aborts the signal of a reconcile at its deadline, and retries the key with backoff', async () => {
    let reason: unknown;
    const h = harness({
      reconcileTimeoutMs: 30,
      answer: (_key, call, { signal }) =>
        call === 1
          ? new Promise<Result>((_resolve, reject) => {
              signal.addEventListener('abort', () => {
                reason = signal.reason;
                reject(signal.reason as Error);
              });
            })
          : Result.done(),
    });
    h.start();
    await until(() => h.calls.length === 2, 'cut at the deadline, then retried');
    assert.ok(reason instanceof ReconcileTimeoutError, String(reason));
    assert.ok(h.times[1]! - h.times[0]! >= 28, 'not before the deadline');
    assert.deepEqual(h.queue.rateLimited, ['team/a']);
    assert.equal(h.errors[0]?.error, reason);
    assert.deepEqual(h.outcomes, ['error', 'success']);
    await h.stop();
  });

  it('frees the worker of a reconcile that ignores its signal; the key waits for the call to return', async () => {
    const hung = Promise.withResolvers<Result>();
    let aborted = false;
    const h = harness({
      keys: ['team/a', 'team/b'],
      concurrency: 1,
      reconcileTimeoutMs: 30,
      answer: (key, call, { signal }) => {
        if (key !== 'team/a' || call > 1) return Result.done();
        signal.addEventListener('abort', () => (aborted = true));
        return hung.promise; // ignores the abort
      },
    });
    h.start();
    await until(() => h.count('team/b') === 1, 'the one worker moved on to team/b');
    assert.ok(aborted, 'its signal was aborted');
    assert.deepEqual(h.outcomes, ['error', 'success']);
    assert.ok(h.errors[0]?.error instanceof ReconcileTimeoutError);
    assert.deepEqual(h.workers, [1, 0, 1, 0], 'the worker counted free');
    // The retry is due after 5 ms, but the abandoned call may still write: no second reconcile.
    await sleep(60);
    h.controller.enqueue('team/a', 'primary');
    await flush();
    assert.equal(h.count('team/a'), 1, 'not reconciled again while the call runs');
    hung.resolve(Result.done());
    await until(() => h.count('team/a') === 2, 'reconciled again once the call returned');
    await flush();
    assert.equal(h.count('team/a'), 2, 'once, for the retry and the event together');
    await h.stop();
  });

  it('leaves a reconcile that finishes in time alone', async () => {
    let aborted = false;
    const h = harness({
      reconcileTimeoutMs: 1000,
      answer: async (_key, _call, { signal }) => {
        await sleep(5);
        signal.addEventListener('abort', () => (aborted = true));
        return Result.done();
      },
    });
    h.start();
    await until(() => h.outcomes.length === 1, 'done');
    await h.stop();
    assert.equal(aborted, false);
    assert.deepEqual(h.outcomes, ['success']);
  });
});

describe('Controller: buckets taken and handed over (sharding)', () => {
  it('replays keys at low priority whatever was known of them: settled and blocked alike', async () => {
    const h = harness({
      keys: ['team/a', 'team/b'],
      answer: (key, call) =>
        key === 'team/b' && call === 1 ? Result.blocked('NameTaken', LONG) : Result.done(),
    });
    h.start();
    await until(() => h.calls.length === 2, 'the first replay');
    await flush();
    h.controller.resync();
    await flush();
    assert.equal(h.calls.length, 2, 'a resync skips them: one settled, one blocked');
    const before = h.queue.priorities.length;
    h.controller.replay(['team/a', 'team/b']);
    await until(() => h.count('team/a') === 2 && h.count('team/b') === 2, 'the replay');
    const low = String(Priority.low);
    assert.deepEqual(h.queue.priorities.slice(before), [`add team/a ${low}`, `add team/b ${low}`]);
    await h.stop();
  });

  it('is idle for some keys once no worker holds any of them; other keys do not matter', async () => {
    const release = Promise.withResolvers<undefined>();
    const h = harness({
      keys: ['team/a', 'team/b'],
      answer: async (key) => {
        if (key === 'team/a') await release.promise;
        return Result.done();
      },
    });
    h.start();
    await until(() => h.count('team/a') === 1 && h.outcomes.length === 1, 'b done, a under way');
    let idle = false;
    const waiting = h.controller.idle(new Set(['team/a', 'team/x']), 5).then(() => (idle = true));
    await h.controller.idle(new Set(['team/b', 'team/x']), 5);
    await sleep(50);
    assert.equal(idle, false, 'team/a is still reconciled');
    release.resolve(undefined);
    await waiting;
    assert.deepEqual(h.outcomes, ['success', 'success']);
    await h.stop();
  });

  it('is not idle for a key whose call was abandoned at its deadline until the call returns', async () => {
    const hung = Promise.withResolvers<Result>();
    const h = harness({
      keys: ['team/a'],
      reconcileTimeoutMs: 20,
      answer: (_key, call) => (call === 1 ? hung.promise : Result.done()),
    });
    h.start();
    await until(() => h.outcomes.length === 1, 'abandoned at its deadline');
    assert.deepEqual(h.workers.at(-1), 0, 'no worker is busy');
    let idle = false;
    const waiting = h.controller.idle(new Set(['team/a']), 5).then(() => (idle = true));
    await sleep(60);
    assert.equal(idle, false, 'the call may still write');
    hung.resolve(Result.done());
    await waiting;
    await h.stop();
  });
});

describe('Result', () => {
  it('builds what the loop acts on; a block awaits a primary event by default', () => {
    assert.deepEqual(Result.done(), { kind: 'done' });
    assert.deepEqual(Result.requeueAfter(5), { kind: 'requeue', afterMs: 5 });
    assert.deepEqual(Result.blocked('X', LONG), {
      kind: 'blocked',
      reason: 'X',
      schedule: LONG,
      wakeOn: 'primary',
    });
  });
});
