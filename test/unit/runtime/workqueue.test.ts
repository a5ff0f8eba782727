import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate } from 'node:timers/promises';
import { ExponentialBackoff, TokenBucket } from '../../../src/runtime/backoff.ts';
import { DEFAULT_AGING_MS, Priority, WorkQueue } from '../../../src/runtime/workqueue.ts';

/**
 * Lets every promise callback queued so far run. The queue hands a key to a waiting worker, and
 * resolves a shutdown, synchronously inside add() and done(): past this, one that did not happen
 * will not.
 */
const settled = (): Promise<void> => setImmediate();

describe('WorkQueue', () => {
  it('holds a waiting key once however often it is added', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    q.add('a');
    assert.equal(q.length, 2);
    assert.equal(await q.get(), 'a');
    assert.equal(await q.get(), 'b');
    assert.equal(q.length, 0);
  });

  it('never hands a key to two workers, and runs it again if it was added while processing', async () => {
    const q = new WorkQueue();
    q.add('a');
    const first = await q.get();
    q.add('a'); // changed while a worker holds it
    assert.equal(q.length, 0, 'not available to a second worker while processing');
    let second: string | undefined;
    void q.get().then((k) => (second = k));
    await settled();
    assert.equal(second, undefined);
    q.done(first ?? '');
    await settled();
    assert.equal(second, 'a', 'runs again after done');
  });

  it('wakes a waiting worker when a key arrives', async () => {
    const q = new WorkQueue();
    const next = q.get();
    q.add('x');
    assert.equal(await next, 'x');
  });

  it('keeps the earliest of several delayed adds', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const q = new WorkQueue();
    q.addAfter('k', 10_000);
    q.addAfter('k', 20);
    q.addAfter('k', 5_000);
    t.mock.timers.tick(19);
    assert.equal(q.length, 0, 'not before the earliest delay');
    t.mock.timers.tick(1);
    assert.equal(await q.get(), 'k');
    q.done('k');
    t.mock.timers.tick(10_000);
    assert.equal(q.length, 0, 'the later delayed adds were dropped');
  });

  it('keeps the earliest delayed add when the wall clock steps between them', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const real = Date.now.bind(Date);
    let step = 0;
    t.mock.method(Date, 'now', () => real() + step);
    const q = new WorkQueue();
    q.addAfter('ahead', 10_000);
    step = 60_000;
    q.addAfter('ahead', 20);
    q.addAfter('behind', 20);
    step = 0;
    q.addAfter('behind', 10_000);
    t.mock.timers.tick(20);
    assert.equal(q.length, 2, 'both due after 20 ms');
  });

  it('backs off exponentially per key and resets on forget', async () => {
    const q = new WorkQueue(new ExponentialBackoff(10, 1000));
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      q.addRateLimited('k');
      const k = await q.get();
      delays.push(performance.now() - t0);
      q.done(k ?? '');
    }
    assert.equal(q.retries('k'), 3);
    // 10, 20, 40 ms: each at least its nominal delay, and growing.
    const [first = 0, second = 0, third = 0] = delays;
    assert.ok(first >= 9 && second >= 19 && third >= 39, delays.join(','));
    q.forget('k');
    assert.equal(q.retries('k'), 0);
  });

  it('shutdown wakes idle workers and waits for in-flight work', async () => {
    const q = new WorkQueue();
    q.add('busy');
    const busy = await q.get();
    const idle = q.get();
    let stopped = false;
    const stopping = q.shutDown().then(() => (stopped = true));
    assert.equal(await idle, undefined);
    await settled();
    assert.equal(stopped, false, 'still waiting for the in-flight key');
    q.add('late');
    q.done(busy ?? '');
    await stopping;
    assert.equal(stopped, true);
    assert.equal(await q.get(), undefined, 'nothing handed out after shutdown');
  });

  it('reports adds, waits, work and retries', async () => {
    const seen = { added: 0, started: 0, finished: 0, retried: 0 };
    const q = new WorkQueue(new ExponentialBackoff(1, 10), {
      added: () => seen.added++,
      started: () => seen.started++,
      finished: () => seen.finished++,
      retried: () => seen.retried++,
    });
    q.add('a');
    q.add('a');
    q.done((await q.get()) ?? '');
    q.addRateLimited('a');
    q.done((await q.get()) ?? '');
    assert.deepEqual(seen, { added: 2, started: 2, finished: 2, retried: 1 });
  });
});

describe('WorkQueue shutdown (controller-runtime order: nothing handed out once it begins)', () => {
  it('hands out no key after shutdown, not even one that was waiting', async () => {
    const q = new WorkQueue();
    q.add('running');
    q.add('waiting');
    const running = await q.get();
    const stopping = q.shutDown();
    assert.equal(await q.get(), undefined, 'the waiting key is not handed out');
    q.done(running ?? '');
    await stopping;
    assert.equal(await q.get(), undefined);
  });

  it('releases every worker waiting for a key', async () => {
    const q = new WorkQueue();
    const waiting = [q.get(), q.get(), q.get()];
    await q.shutDown();
    assert.deepEqual(await Promise.all(waiting), [undefined, undefined, undefined]);
  });

  it('never puts back an in-flight key that was added again before shutdown', async () => {
    const q = new WorkQueue();
    q.add('a');
    const a = await q.get();
    q.add('a'); // changed while its worker runs: in client-go's queue it would run again
    const stopping = q.shutDown();
    q.done(a ?? '');
    await stopping;
    assert.equal(q.length, 0, 'not queued again');
    assert.equal(await q.get(), undefined, 'not handed to a worker');
  });

  it('ignores adds after shutdown, delayed and rate-limited ones included', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    let retried = 0;
    const q = new WorkQueue(undefined, { retried: () => retried++ });
    q.add('delayed-before');
    q.done((await q.get()) ?? '');
    q.addAfter('delayed-before', 1000);
    await q.shutDown();
    q.add('a');
    q.addAfter('b', 0);
    q.addAfter('c', 10);
    q.addRateLimited('d');
    t.mock.timers.tick(2000);
    assert.equal(q.length, 0);
    assert.equal(await q.get(), undefined);
    assert.equal(q.retries('d'), 0, 'a retry after shutdown takes no backoff step');
    assert.equal(retried, 0, 'nor counts as a retry');
  });
});

/** A queue on a fake monotonic clock, advanced by hand. */
function onFakeClock(agingMs = DEFAULT_AGING_MS) {
  const clock = { now: 0 };
  const q = new WorkQueue(undefined, {}, undefined, { agingMs, now: () => clock.now });
  return { q, clock };
}

/** Takes the next key at once (one is waiting), and marks it done. */
async function next(q: WorkQueue): Promise<{ key: string; priority: Priority }> {
  const item = await q.getWithPriority();
  assert.ok(item, 'a key is waiting');
  q.done(item.key);
  return item;
}

describe('WorkQueue priorities', () => {
  it('hands out normal keys before low ones, each in the order they came', async () => {
    const { q } = onFakeClock();
    q.add('low-1', Priority.low);
    q.add('normal-1');
    q.add('low-2', Priority.low);
    q.add('normal-2', Priority.normal);
    const order = [];
    for (let i = 0; i < 4; i++) order.push((await next(q)).key);
    assert.deepEqual(order, ['normal-1', 'normal-2', 'low-1', 'low-2']);
  });

  it('raises a waiting low key to normal on a normal add, and never lowers one', async () => {
    const { q } = onFakeClock();
    q.add('a', Priority.low);
    q.add('b', Priority.low);
    q.add('c');
    q.add('b'); // an event while b waits to be replayed
    q.add('c', Priority.low); // a replay of a key an event queued
    assert.equal(q.length, 3, 'each key held once');
    assert.deepEqual([q.depth(Priority.normal), q.depth(Priority.low)], [2, 1]);
    const order = [];
    for (let i = 0; i < 3; i++) order.push(await next(q));
    assert.deepEqual(order, [
      { key: 'c', priority: Priority.normal },
      { key: 'b', priority: Priority.normal },
      { key: 'a', priority: Priority.low },
    ]);
    assert.equal(q.length, 0, 'the stale low slot of b is not handed out');
  });

  it('runs a key added while it is processed again at the highest priority it was added with', async () => {
    const { q } = onFakeClock();
    q.add('a', Priority.low);
    const a = await q.getWithPriority();
    q.add('a', Priority.low);
    q.add('a');
    q.add('z', Priority.low);
    q.done(a?.key ?? '');
    assert.deepEqual(await next(q), { key: 'a', priority: Priority.normal });
  });

  it('keeps the priority of a delayed or rate-limited add: a requeue keeps its priority', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const { q } = onFakeClock();
    q.addRateLimited('retry', Priority.low);
    q.addAfter('later', 10, Priority.low);
    t.mock.timers.tick(10);
    q.add('event');
    const order = [];
    for (let i = 0; i < 3; i++) order.push(await next(q));
    assert.deepEqual(order, [
      { key: 'event', priority: Priority.normal },
      { key: 'retry', priority: Priority.low },
      { key: 'later', priority: Priority.low },
    ]);
  });

  it(`bounds a low key's wait under a constant stream of normal keys (aging, ${String(DEFAULT_AGING_MS / 1000)} s)`, async () => {
    // One worker, saturated: every 100 ms a normal key arrives and the worker takes one, so a
    // normal key always waits. Without aging (controller-runtime's queue) the low key never runs.
    const { q, clock } = onFakeClock();
    q.add('replayed', Priority.low);
    q.add('event-0');
    let ranAt: number | undefined;
    for (let tick = 1; tick <= 20 * (DEFAULT_AGING_MS / 100) && ranAt === undefined; tick++) {
      clock.now = tick * 100;
      q.add(`event-${String(tick)}`);
      const { key } = await next(q);
      if (key === 'replayed') ranAt = clock.now;
    }
    assert.ok(ranAt !== undefined, 'the low key was starved');
    assert.ok(
      ranAt >= DEFAULT_AGING_MS && ranAt <= DEFAULT_AGING_MS + 100,
      `ran after ${String(ranAt)} ms, not within one handout of the bound`,
    );
  });

  it('lets aged low keys take turns with normal ones, not go before all of them', async () => {
    // A replay of 1000 keys that outlasts the bound must not starve the edits made meanwhile.
    const { q, clock } = onFakeClock(1000);
    for (let i = 0; i < 1000; i++) q.add(`replay-${String(i)}`, Priority.low);
    clock.now = 5000;
    for (let i = 0; i < 10; i++) q.add(`edit-${String(i)}`);
    const first = [];
    for (let i = 0; i < 20; i++) first.push((await next(q)).priority);
    assert.deepEqual(
      first,
      Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? Priority.low : Priority.normal)),
    );
    assert.equal(q.depth(Priority.normal), 0, 'every edit out within 20 handouts');
  });

  it('does not age a low key that has waited less than the bound', async () => {
    const { q, clock } = onFakeClock(1000);
    q.add('replayed', Priority.low);
    clock.now = 999;
    q.add('event');
    assert.equal((await next(q)).key, 'event');
  });

  it('reports the depth and the longest wait of each priority', async () => {
    const { q, clock } = onFakeClock();
    q.add('a', Priority.low);
    clock.now = 2000;
    q.add('b');
    q.add('c', Priority.low);
    clock.now = 5000;
    assert.deepEqual([q.depth(Priority.normal), q.depth(Priority.low)], [1, 2]);
    assert.equal(q.longestWaitSeconds(Priority.low), 5);
    assert.equal(q.longestWaitSeconds(Priority.normal), 3);
    q.add('a'); // raised: it has waited at normal priority from now
    assert.equal(q.longestWaitSeconds(Priority.low), 3, 'c, now the oldest low key');
    assert.equal(q.longestWaitSeconds(Priority.normal), 3);
    for (let i = 0; i < 3; i++) await next(q);
    assert.deepEqual(
      [q.longestWaitSeconds(Priority.normal), q.longestWaitSeconds(Priority.low)],
      [0, 0],
    );
  });

  it('keeps its lanes compact over many keys', async () => {
    const { q } = onFakeClock();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 10_000; i++)
        q.add(`k${String(i)}`, i % 2 ? Priority.low : Priority.normal);
      for (let i = 0; i < 10_000; i += 3) q.add(`k${String(i)}`);
      assert.equal(q.length, 10_000);
      for (let i = 0; i < 10_000; i++) await next(q);
      assert.equal(q.length, 0);
    }
  });
});

describe('ExponentialBackoff', () => {
  it('doubles from the base and stops at the cap', () => {
    const b = new ExponentialBackoff(5, 1000_000);
    const seq = Array.from({ length: 20 }, () => b.next('x'));
    assert.deepEqual(seq.slice(0, 4), [5, 10, 20, 40]);
    assert.equal(seq[19], 1000_000);
    assert.equal(b.next('other'), 5, 'per key');
  });
});

describe('TokenBucket', () => {
  it('lets a burst through, then spaces reservations at its rate, and refills with time', () => {
    let now = 0;
    const bucket = new TokenBucket(10, 100, () => now);
    const first = Array.from({ length: 100 }, () => bucket.reserve());
    assert.deepEqual(new Set(first), new Set([0]), 'the burst of 100 waits for nothing');
    assert.equal(bucket.reserve(), 100);
    assert.equal(bucket.reserve(), 200);
    now = 10_000;
    assert.equal(bucket.reserve(), 0, 'ten seconds refilled the bucket');
  });
});
