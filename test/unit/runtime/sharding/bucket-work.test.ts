// What a bucket is on a sharded replica, with fake informer groups and a fake controller: it joins
// the caches once all its groups are synced, then its keys are replayed; handed over, it leaves
// the caches at once, its reconciles are waited for, then its informers stop; lost, nothing is
// waited for; one stopped before it synced never joins.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setImmediate } from 'node:timers/promises';
import type { KubeObject } from '../../../../src/kube/object.ts';
import { BucketWork, type BucketController } from '../../../../src/runtime/sharding/bucket-work.ts';
import { ShardedCache } from '../../../../src/runtime/sharding/sharded-cache.ts';
import { FakeGroup } from '../../../support/fake-group.ts';

const object = (name: string): KubeObject => ({ metadata: { name, namespace: 'ns' } });

/** Lets promise chains run to their end without waiting on a timer. */
async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await setImmediate();
}

/** Whether `promise` has settled, after the chains that can run have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(
    () => (done = true),
    () => (done = true),
  );
  await flush();
  return done;
}

/**
 * One controller caching two resources by bucket: `echoes` (primary: bucket b's group holds
 * echo-b-1 and echo-b-2) and `deployments`. Its idle() waits until the test calls `idle.resolve`.
 */
function harness() {
  const log: string[] = [];
  const groups = new Map<string, FakeGroup>();
  const replays: string[][] = [];
  const idleCalls: string[][] = [];
  let idle = Promise.withResolvers<undefined>();
  const cacheOf = (resource: 'echoes' | 'deployments') => ({
    cache: new ShardedCache<KubeObject>(resource, () => undefined),
    groupFor: (bucket: number) => {
      const objects =
        resource === 'echoes' ? [object(`echo-${bucket}-1`), object(`echo-${bucket}-2`)] : [];
      const group = new FakeGroup(`${resource} ${bucket}`, objects, log);
      groups.set(`${resource} ${bucket}`, group);
      return group.group;
    },
  });
  const caches = [cacheOf('echoes'), cacheOf('deployments')];
  const controller: BucketController = {
    caches,
    replay: (keys) => {
      replays.push([...keys].sort());
    },
    idle: async (keys) => {
      idleCalls.push([...keys].sort());
      log.push('idle called');
      await idle.promise;
      log.push('idle');
    },
  };
  const errors: unknown[] = [];
  const work = new BucketWork([controller], (_bucket, err) => errors.push(err));
  const group = (name: string): FakeGroup => {
    const g = groups.get(name);
    assert.ok(g, `no group ${name}`);
    return g;
  };
  /** The buckets each cache reads. */
  const inCaches = () => caches.map((c) => c.cache.buckets.sort((a, b) => a - b));
  /** Starts `bucket` and syncs its groups. */
  const joined = async (bucket: number) => {
    work.start(bucket);
    group(`echoes ${bucket}`).sync();
    group(`deployments ${bucket}`).sync();
    await flush();
    assert.ok(
      inCaches().every((buckets) => buckets.includes(bucket)),
      `${bucket} joined`,
    );
  };
  return {
    work,
    caches,
    group,
    inCaches,
    joined,
    replays,
    idleCalls,
    log,
    errors,
    idle: {
      resolve: () => {
        idle.resolve(undefined);
      },
      reset: () => {
        idle = Promise.withResolvers<undefined>();
      },
    },
  };
}

describe('BucketWork', { timeout: 20_000 }, () => {
  it('adds a bucket to the caches once all its groups are synced, then replays its keys', async () => {
    const h = harness();
    h.work.start(3);
    h.work.start(3); // started once
    assert.deepEqual(h.work.filling, [3]);
    h.group('echoes 3').sync();
    await flush();
    assert.deepEqual(h.inCaches(), [[], []], 'the deployments are not synced yet');
    assert.deepEqual(h.replays, []);
    assert.deepEqual(h.work.filling, [3]);
    h.group('deployments 3').sync();
    await flush();
    assert.deepEqual(h.inCaches(), [[3], [3]]);
    assert.equal(h.caches[0]?.cache.part(3), h.group('echoes 3').group);
    assert.equal(h.caches[1]?.cache.part(3), h.group('deployments 3').group);
    assert.deepEqual(h.work.filling, []);
    assert.deepEqual(h.replays, [['ns/echo-3-1', 'ns/echo-3-2']], 'the primary keys');
    assert.deepEqual([...h.work.objects()], [[3, 2]]);
    await h.work.stopAll();
  });

  it('hands a bucket over: out of the caches at once, informers stopped once idle, resolved after', async () => {
    const h = harness();
    await h.joined(3);
    await h.joined(4);
    h.replays.length = 0;
    const stopping = h.work.stop(3, true);
    assert.deepEqual(h.inCaches(), [[4], [4]], 'out of the caches before anything is awaited');
    assert.deepEqual([...h.work.objects()], [[4, 2]]);
    assert.equal(await settled(stopping), false, 'waits for the controller');
    assert.deepEqual(h.idleCalls, [['ns/echo-3-1', 'ns/echo-3-2']]);
    assert.equal(h.group('echoes 3').aborted, false, 'informers run while reconciles drain');
    assert.equal(h.group('deployments 3').aborted, false);
    assert.deepEqual(h.replays, []);
    h.idle.resolve();
    await stopping;
    assert.deepEqual(h.log, [
      'idle called',
      'idle',
      'echoes 3 aborted',
      'deployments 3 aborted',
      'echoes 3 returned',
      'deployments 3 returned',
    ]);
    assert.ok(h.group('echoes 3').returned && h.group('deployments 3').returned);
    assert.deepEqual(h.replays, [['ns/echo-3-1', 'ns/echo-3-2']], 'its keys, to be forgotten');
    assert.equal(h.group('echoes 4').aborted, false, 'the other bucket runs on');
    await h.work.stopAll();
  });

  it('stops a bucket lost without waiting for the controller', async () => {
    const h = harness();
    await h.joined(3);
    const stopping = h.work.stop(3, false);
    assert.deepEqual(h.inCaches(), [[], []]);
    assert.equal(await settled(stopping), true, 'idle() never resolves here');
    assert.deepEqual(h.idleCalls, []);
    assert.ok(h.group('echoes 3').returned && h.group('deployments 3').returned);
  });

  it('never adds a bucket lost before it synced', async () => {
    const h = harness();
    h.work.start(3);
    await h.work.stop(3, false);
    h.group('echoes 3').sync();
    h.group('deployments 3').sync();
    await flush();
    assert.deepEqual(h.inCaches(), [[], []]);
    assert.deepEqual(h.work.filling, []);
    assert.deepEqual([...h.work.objects()], []);
    assert.deepEqual(h.replays, [['ns/echo-3-1', 'ns/echo-3-2']], 'only the stop’s replay');
  });

  it('never adds a bucket handed over before it synced, though it syncs while reconciles drain', async () => {
    const h = harness();
    h.work.start(3);
    const stopping = h.work.stop(3, true);
    await flush();
    // The groups sync while stop() waits for the controller's reconciles.
    h.group('echoes 3').sync();
    h.group('deployments 3').sync();
    await flush();
    assert.deepEqual(h.inCaches(), [[], []], 'joined after it was handed over');
    assert.deepEqual(h.replays, [], 'its keys replayed for reconciles');
    h.idle.resolve();
    await stopping;
    assert.deepEqual(h.inCaches(), [[], []], 'left in the caches, its informers stopped');
    assert.deepEqual([...h.work.objects()], []);
  });
});
