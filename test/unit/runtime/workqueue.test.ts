import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate } from 'node:timers/promises';
import { ExponentialBackoff, TokenBucket } from '../../../src/runtime/backoff.ts';
import { WorkQueue } from '../../../src/runtime/workqueue.ts';

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
