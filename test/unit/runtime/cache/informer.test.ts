// The informer's bookkeeping, with list and watch scripted in memory: what a relist tells the
// handlers, the owner index, resuming from the last resourceVersion, and a relist on 410 Gone.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { WatchEvent } from '../../../../src/kube/object.ts';
import { ApiError } from '../../../../src/kube/errors.ts';
import { ProtobufError } from '../../../../src/kube/protobuf/protobuf.ts';
import { DEFAULT_BACKOFF, retryDelay } from '../../../../src/runtime/backoff.ts';
import { Informer, type InformerEvent } from '../../../../src/runtime/cache/informer.ts';
import type { KubeObject } from '../../../../src/kube/object.ts';
import { ShortWatchError, WatchSilentError } from '../../../../src/runtime/cache/watchdog.ts';
import { fakeClient, watchListRefusal, type WatchStep } from '../../../support/fake-client.ts';

interface Pod extends KubeObject {
  spec?: { n: number };
}

const pod = (
  name: string,
  rv: string,
  owner?: string,
  extra: Record<string, unknown> = {},
): Pod => ({
  metadata: {
    name,
    namespace: 'ns',
    resourceVersion: rv,
    ...(owner
      ? {
          ownerReferences: [
            { apiVersion: 'v1', kind: 'Owner', name: owner, uid: owner, controller: true },
          ],
        }
      : {}),
    ...extra,
  },
});

/** A client whose list answers and watch streams are given in order; it refuses WatchList. */
const scripted = (lists: Pod[][], watches: WatchStep<Pod>[][], stop: AbortController) =>
  fakeClient({ lists, watches, stop });

const gone = () =>
  new ApiError(410, { reason: 'Expired', message: 'too old resource version' }, 'watch', '/pods');

describe('Informer', () => {
  it('lists, watches from the list resourceVersion, and resumes from the last one seen', async () => {
    const stop = new AbortController();
    const { client, calls } = scripted(
      [[pod('a', '1')]],
      [
        [
          { type: 'ADDED', object: pod('b', '5') },
          { type: 'BOOKMARK', object: pod('', '9') },
        ],
        [{ type: 'MODIFIED', object: pod('a', '12') }],
      ],
      stop,
    );
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      labelSelector: 'x=y',
    });
    await informer.run(stop.signal);
    assert.deepEqual(
      calls.map((c) => [c.kind, c.query.resourceVersion, c.query.labelSelector]),
      [
        ['list', undefined, 'x=y'],
        ['watch', '100', 'x=y'],
        ['watch', '9', 'x=y'], // the bookmark moved it on
        ['watch', '12', 'x=y'],
      ],
    );
    assert.equal(calls[1]?.query.allowWatchBookmarks, true);
    assert.ok(Number(calls[1].query.timeoutSeconds) >= 290);
    assert.deepEqual(informer.keys().sort(), ['ns/a', 'ns/b']);
    assert.equal(informer.get('ns/a')?.metadata.resourceVersion, '12');
    assert.ok(informer.synced);
  });

  it('relists on 410 Gone and tells handlers what vanished meanwhile', async () => {
    const stop = new AbortController();
    const { client, calls } = scripted(
      [
        [pod('a', '1'), pod('b', '1')],
        [pod('b', '7'), pod('c', '7')],
      ],
      [[gone()]],
      stop,
    );
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      backoff: { initialMs: 1, maxMs: 2, resetAfterMs: 10 },
    });
    const events: string[] = [];
    informer.onEvent((e: InformerEvent<Pod>) => events.push(`${e.type} ${e.object.metadata.name}`));
    await informer.run(stop.signal);
    assert.deepEqual(
      calls.map((c) => c.kind),
      ['list', 'watch', 'list', 'watch'],
    );
    assert.deepEqual(events, ['add a', 'add b', 'delete a', 'update b', 'add c']);
    assert.deepEqual(informer.keys().sort(), ['ns/b', 'ns/c']);
  });

  it('relists at once after a 410, and backs off from one that follows it within resetAfterMs', async () => {
    const stop = new AbortController();
    const { client, calls } = scripted([], [[gone()], [gone()], [gone()]], stop);
    const failures: unknown[] = [];
    let relists = 0;
    const initialMs = 200;
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      backoff: { initialMs, maxMs: 1000, resetAfterMs: 60_000 },
      observer: { failed: (err) => failures.push(err), relisted: () => relists++ },
    });
    await informer.run(stop.signal);
    const lists = calls.filter((c) => c.kind === 'list').map((c) => c.at);
    const waits = lists.slice(1).map((at, i) => Math.round(at - (lists[i] ?? 0)));
    assert.equal(waits.length, 3, `${String(relists)} relists`);
    assert.ok(
      waits[0]! < initialMs,
      `the first 410 relisted at once, not after ${String(waits[0])} ms`,
    );
    assert.ok(waits[1]! >= initialMs, `the second waited ${String(waits[1])} ms`);
    assert.ok(waits[2]! >= 2 * initialMs, `the third waited ${String(waits[2])} ms`);
    assert.deepEqual(failures, [], 'a 410 is no failure');
    assert.ok(informer.connected);
  });

  it('relists at once after a 410 that follows a healthy spell of resetAfterMs', async () => {
    const stop = new AbortController();
    const { client, calls } = scripted([], [[gone()], [150, gone()]], stop);
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      backoff: { initialMs: 1000, maxMs: 1000, resetAfterMs: 100 },
    });
    await informer.run(stop.signal);
    const [, second, third] = calls.filter((c) => c.kind === 'list').map((c) => c.at);
    assert.ok(third! - second! < 1000, 'no backoff after 150 ms of health');
  });

  it('backs off and resumes the watch after a failure, without relisting', async () => {
    const stop = new AbortController();
    const { client, calls } = scripted(
      [[pod('a', '1')]],
      [[new Error('socket hang up')], [{ type: 'BOOKMARK', object: pod('', '101') }]],
      stop,
    );
    const errors: string[] = [];
    const connectedAtError: boolean[] = [];
    const informer: Informer<Pod> = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      backoff: { initialMs: 1, maxMs: 2, resetAfterMs: 10 },
      onError: (m) => {
        errors.push(m);
        connectedAtError.push(informer.connected);
      },
    });
    await informer.run(stop.signal);
    assert.deepEqual(
      calls.map((c) => c.kind),
      ['list', 'watch', 'watch', 'watch'],
    );
    assert.deepEqual(errors, ['pods: watch failed, retrying']);
    assert.deepEqual(connectedAtError, [false], 'a failed watch makes the informer disconnected');
    assert.ok(informer.connected, 'the next watch that opened made it connected again');
  });

  it('decodes watched objects with its protobuf decoder, and watches in JSON once one fails', async () => {
    const stop = new AbortController();
    const { client, calls } = scripted(
      [[pod('a', '1')]],
      [
        [
          ({ protobuf }) => {
            assert.ok(protobuf, 'the first watch asks for protobuf');
            return { type: 'MODIFIED', object: protobuf(Buffer.from('a 2')) };
          },
          new ProtobufError('wire type 7 not supported'),
        ],
        [{ type: 'MODIFIED', object: pod('a', '3') }],
      ],
      stop,
    );
    const cachedWhenDecoding: (string | undefined)[] = [];
    let refused = 0;
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      backoff: { initialMs: 1, maxMs: 2, resetAfterMs: 10 },
      protobuf: (raw, cached) => {
        const [name = '', rv = ''] = raw.toString().split(' ');
        cachedWhenDecoding.push(cached(`ns/${name}`)?.metadata.resourceVersion);
        return pod(name, rv);
      },
      observer: { protobufRefused: () => refused++ },
    });
    await informer.run(stop.signal);
    assert.deepEqual(
      calls.filter((c) => c.kind === 'watch').map((c) => c.protobuf),
      [true, false, false],
      'protobuf, then JSON from the failure on',
    );
    assert.deepEqual(cachedWhenDecoding, ['1'], 'the decoder is given the cached object');
    assert.equal(refused, 1);
    assert.equal(informer.get('ns/a')?.metadata.resourceVersion, '3');
  });

  it('strips managedFields, applies the transform and keeps an owner index', async () => {
    const stop = new AbortController();
    const { client } = scripted(
      [
        [
          pod('a', '1', 'o1', { managedFields: [{ manager: 'x' }] }),
          pod('b', '1', 'o1'),
          pod('c', '1', 'o2'),
        ],
      ],
      [[{ type: 'DELETED', object: pod('b', '2', 'o1') }]],
      stop,
    );
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      transform: (p) => ({ ...p, spec: { n: 1 } }),
      indexers: { owner: (p) => (p.metadata.ownerReferences ?? []).map((r) => r.uid) },
    });
    await informer.run(stop.signal);
    assert.equal('managedFields' in (informer.get('ns/a')?.metadata ?? {}), false);
    assert.deepEqual(informer.get('ns/a')?.spec, { n: 1 });
    assert.deepEqual(
      informer.byIndex('owner', 'o1').map((p) => p.metadata.name),
      ['a'],
    );
    assert.deepEqual(
      informer.byIndex('owner', 'o2').map((p) => p.metadata.name),
      ['c'],
    );
  });

  it('gives the transform the object it replaces in the cache', async () => {
    const stop = new AbortController();
    const { client } = scripted(
      [[pod('a', '1')]],
      [[{ type: 'MODIFIED', object: pod('a', '2') }]],
      stop,
    );
    const seen: (string | undefined)[] = [];
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      transform: (p, cached) => {
        seen.push(cached?.metadata.resourceVersion);
        return p;
      },
    });
    await informer.run(stop.signal);
    assert.deepEqual(seen, [undefined, '1']);
  });

  it('survives a handler that throws', async () => {
    const stop = new AbortController();
    const { client } = scripted([[pod('a', '1')]], [], stop);
    const errors: string[] = [];
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      onError: (m) => errors.push(m),
    });
    informer.onEvent(() => {
      throw new Error('boom');
    });
    await informer.run(stop.signal);
    assert.deepEqual(errors, ['pods: event handler failed']);
    assert.equal(informer.size, 1);
  });

  it('reads a write it is told of until the watch brings the next event for that object, flagged when it is that write', async () => {
    const stop = new AbortController();
    const { client } = scripted(
      [[pod('a', '1'), pod('b', '2')]],
      [
        [
          { type: 'MODIFIED', object: pod('b', '3') },
          { type: 'ADDED', object: pod('c', '4') },
          { type: 'MODIFIED', object: pod('a', '7') },
          { type: 'DELETED', object: pod('c', '8') },
        ],
      ],
      stop,
    );
    const informer = new Informer<Pod>({ name: 'pods', client, path: '/pods' });
    const rv = (name: string): string =>
      informer.get(`ns/${name}`)?.metadata.resourceVersion ?? '-';
    const seen: string[] = [];
    informer.onEvent((e) => {
      if (e.type === 'add' && e.object.metadata.name === 'b') {
        // Writes returned after the list: a (read at 1), b (read at a version the cache has
        // moved past: the watch was faster), and a new c.
        informer.assume(pod('a', '5', undefined, { managedFields: [{ manager: 'x' }] }), '1');
        informer.assume(pod('b', '6'), '0');
        informer.assume(pod('c', '4'), undefined);
        assert.ok(!('managedFields' in (informer.get('ns/a')?.metadata ?? {})), 'prepared');
      }
      const own = e.ownWrite ? ' (own write)' : '';
      seen.push(
        `${e.type} ${e.object.metadata.name}${own}: a@${rv('a')} b@${rv('b')} c@${rv('c')}`,
      );
    });
    await informer.run(stop.signal);
    assert.deepEqual(seen, [
      'add a: a@1 b@2 c@-',
      'add b: a@5 b@2 c@4',
      'update b: a@5 b@3 c@4',
      'add c (own write): a@5 b@3 c@4',
      'update a: a@7 b@3 c@4',
      'delete c: a@7 b@3 c@-',
    ]);
    assert.deepEqual(informer.keys().sort(), ['ns/a', 'ns/b'], 'assumed objects are not listed');
  });

  it('forgets on a relist the writes the list has seen: an object deleted meanwhile is not read', async () => {
    const stop = new AbortController();
    // The list at 100, then the relist after a 410 at 101, without c: it was deleted meanwhile.
    const { client } = scripted([[pod('a', '1')], [pod('a', '9')]], [[gone()]], stop);
    const informer = new Informer<Pod>({ name: 'pods', client, path: '/pods' });
    informer.onEvent((e) => {
      if (e.type !== 'add') return;
      // c created by our write at 4, before the relist's 101; d at 500, after it.
      informer.assume(pod('c', '4'), undefined);
      informer.assume(pod('d', '500'), undefined);
    });
    await informer.run(stop.signal);
    assert.equal(informer.get('ns/c'), undefined, 'c, deleted, is not read from our write');
    assert.equal(informer.get('ns/d')?.metadata.resourceVersion, '500', 'd is yet to come');
    assert.equal(informer.get('ns/a')?.metadata.resourceVersion, '9');
  });

  it('keeps a replacement assumed through the delete of the object it replaced', async () => {
    const stop = new AbortController();
    const { client } = scripted(
      [[pod('a', '1', undefined, { uid: 'first' })]],
      [
        [
          { type: 'DELETED', object: pod('a', '3', undefined, { uid: 'first' }) },
          { type: 'ADDED', object: pod('a', '4', undefined, { uid: 'second' }) },
        ],
      ],
      stop,
    );
    const informer = new Informer<Pod>({ name: 'pods', client, path: '/pods' });
    const seen: string[] = [];
    informer.onEvent((e) => {
      // Deleted and created again by a write that returned the new object at 4.
      if (e.type === 'add' && e.object.metadata.uid === 'first') {
        informer.assume(pod('a', '4', undefined, { uid: 'second' }), '1');
      }
      const own = e.ownWrite ? ' (own write)' : '';
      const read = informer.get('ns/a')?.metadata;
      seen.push(
        `${e.type} ${e.object.metadata.uid ?? ''}${own}: ${read?.uid ?? '-'}@${read?.resourceVersion ?? '-'}`,
      );
    });
    await informer.run(stop.signal);
    assert.deepEqual(seen, [
      'add first: second@4',
      'delete first: second@4',
      'add second (own write): second@4',
    ]);
  });
});

describe('retryDelay', () => {
  it('doubles from 0.8 s to 30 s, each wait stretched by up to as much again', () => {
    const schedule = (jitter: number): number[] =>
      Array.from({ length: 8 }, (_, retry) => retryDelay(DEFAULT_BACKOFF, retry, jitter));
    assert.deepEqual(schedule(0), [800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000]);
    assert.deepEqual(schedule(0.5), [1200, 2400, 4800, 9600, 19_200, 38_400, 45_000, 45_000]);
    assert.equal(retryDelay(DEFAULT_BACKOFF, 5000, 0), 30_000, 'no overflow after many failures');
  });
});

/** A client serving WatchList; lists answer `lists` in order. */
const watchListServer = (streams: WatchStep<Pod>[][], stop: AbortController, lists: Pod[][] = []) =>
  fakeClient({ lists, watches: streams, stop, watchList: true });

const initialEventsEnd = (rv: string): WatchEvent<Pod> => ({
  type: 'BOOKMARK',
  object: pod('', rv, undefined, { annotations: { 'k8s.io/initial-events-end': 'true' } }),
});

describe('Informer WatchList and watch ends', () => {
  const quick = { initialMs: 1, maxMs: 2, resetAfterMs: 60_000 };

  it('syncs from the initial events at their end bookmark and watches on the same stream', async () => {
    const stop = new AbortController();
    const { client, calls } = watchListServer(
      [
        [
          { type: 'ADDED', object: pod('a', '3') },
          { type: 'ADDED', object: pod('b', '4') },
          initialEventsEnd('9'),
          { type: 'MODIFIED', object: pod('a', '11') },
        ],
        [{ type: 'ADDED', object: pod('c', '12') }],
      ],
      stop,
    );
    const informer = new Informer<Pod>({ name: 'pods', client, path: '/pods' });
    const events: string[] = [];
    informer.onEvent((e) => events.push(`${e.type} ${e.object.metadata.name}`));
    await informer.run(stop.signal);
    assert.deepEqual(calls[0]?.query, {
      allowWatchBookmarks: true,
      timeoutSeconds: calls[0]?.query.timeoutSeconds,
      labelSelector: undefined,
      shardSelector: undefined,
      sendInitialEvents: true,
      resourceVersionMatch: 'NotOlderThan',
    });
    assert.equal(
      calls[1]?.query.resourceVersion,
      '11',
      'the next watch resumes after the last event',
    );
    assert.equal(calls[1].query.sendInitialEvents, undefined);
    assert.deepEqual(events, ['add a', 'add b', 'update a', 'add c']);
    assert.ok(informer.synced);
  });

  it('lists in pages once the server refuses WatchList, and relists so after 410 Gone', async () => {
    const stop = new AbortController();
    const { client, calls } = watchListServer(
      [[watchListRefusal()], [gone()], [{ type: 'BOOKMARK', object: pod('', '60') }]],
      stop,
      [[pod('a', '1')], [pod('b', '2')]],
    );
    const refused: unknown[] = [];
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      backoff: quick,
      observer: { watchListRefused: (err) => refused.push(err) },
    });
    await informer.run(stop.signal);
    assert.deepEqual(
      calls.map((c) =>
        c.kind === 'list' ? 'list' : c.query.sendInitialEvents ? 'watchlist' : 'watch',
      ),
      ['watchlist', 'list', 'watch', 'list', 'watch', 'watch'],
    );
    assert.equal(refused.length, 1);
    assert.deepEqual(informer.keys(), ['ns/b']);
  });

  it('backs off from a watch that ends at once with no event', async () => {
    const stop = new AbortController();
    const { client } = watchListServer([[initialEventsEnd('9')], [], []], stop);
    const failures: unknown[] = [];
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      backoff: quick,
      observer: { failed: (err) => failures.push(err) },
    });
    await informer.run(stop.signal);
    assert.equal(failures.length, 2);
    assert.ok(failures.every((err) => err instanceof ShortWatchError));
  });

  it('reopens a silent watch: a failure once the server has sent bookmarks, else not', async () => {
    const stop = new AbortController();
    const { client, calls } = watchListServer(
      [
        [{ type: 'ADDED', object: pod('a', '3') }, 'hang'],
        [{ type: 'ADDED', object: pod('b', '4') }, initialEventsEnd('9'), 'hang'],
      ],
      stop,
    );
    const failures: unknown[] = [];
    const informer = new Informer<Pod>({
      name: 'pods',
      client,
      path: '/pods',
      idleTimeoutMs: 30,
      backoff: quick,
      observer: { failed: (err) => failures.push(err) },
    });
    await informer.run(stop.signal);
    assert.equal(calls.length, 3);
    assert.equal(calls[1]?.query.sendInitialEvents, true, 'not synced yet: the WatchList again');
    assert.equal(failures.length, 1, `one failure: ${failures.map(String).join('; ')}`);
    assert.ok(failures[0] instanceof WatchSilentError);
    assert.match(failures[0].message, /^pods: watch silent for \d+\.\d s: reopening$/);
    assert.equal(calls[2]?.query.resourceVersion, '9');
  });
});
