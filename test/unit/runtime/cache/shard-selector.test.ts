// An informer narrowed to some buckets (KEP-5866's sharded list and watch): its shardSelector goes
// with every list page, WatchList and watch, and what a server that ignores it sends more
// (`keep` says no) is dropped: from list pages, from a WatchList's initial events, from watch events.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubeObject, WatchEvent } from '../../../../src/kube/object.ts';
import { Informer } from '../../../../src/runtime/cache/informer.ts';
import { fakeClient } from '../../../support/fake-client.ts';

const SELECTOR = "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')";

/** `in-*` objects are the shard's, `out-*` ones another's: their uid is their name. */
const pod = (name: string, rv: string): KubeObject => ({
  metadata: { name, namespace: 'ns', uid: name, resourceVersion: rv },
});
const keep = (o: KubeObject): boolean => o.metadata.uid?.startsWith('in-') ?? false;

const initialEventsEnd = (rv: string): WatchEvent<KubeObject> => ({
  type: 'BOOKMARK',
  object: {
    metadata: {
      name: '',
      resourceVersion: rv,
      annotations: { 'k8s.io/initial-events-end': 'true' },
    },
  },
});

/** Runs an informer of the shard over `client` until the script ends; its keys and events. */
async function run(client: ReturnType<typeof fakeClient>['client'], stop: AbortController) {
  const informer = new Informer<KubeObject>({
    name: 'echoes',
    client,
    path: '/echoes',
    shardSelector: SELECTOR,
    keep,
    pageSize: 2,
  });
  const events: string[] = [];
  informer.onEvent((e) => events.push(`${e.type} ${e.object.metadata.name}`));
  await informer.run(stop.signal);
  return { keys: informer.keys().sort(), events };
}

describe('Informer with a shardSelector', () => {
  it('sends it with each list page and the watch, and holds only what keep says of them', async () => {
    const stop = new AbortController();
    const { client, calls } = fakeClient<KubeObject>({
      lists: [[pod('in-a', '1'), pod('out-b', '1')]],
      watches: [
        [
          { type: 'ADDED', object: pod('in-c', '5') },
          { type: 'ADDED', object: pod('out-d', '6') },
          { type: 'MODIFIED', object: pod('out-b', '7') },
          { type: 'MODIFIED', object: pod('in-a', '8') },
          { type: 'DELETED', object: pod('out-b', '9') },
        ],
      ],
      stop,
    });
    const { keys, events } = await run(client, stop);
    assert.deepEqual(
      calls.map((c) => [c.kind, c.query.shardSelector]),
      [
        ['list', SELECTOR],
        ['watch', SELECTOR],
        ['watch', SELECTOR],
      ],
    );
    assert.equal(calls[2]?.query.resourceVersion, '9', 'resumed after the events dropped too');
    assert.deepEqual(keys, ['ns/in-a', 'ns/in-c']);
    assert.deepEqual(events, ['add in-a', 'add in-c', 'update in-a']);
  });

  it('sends it with the WatchList, and holds only what keep says of the initial events and after', async () => {
    const stop = new AbortController();
    const { client, calls } = fakeClient<KubeObject>({
      watchList: true,
      watches: [
        [
          { type: 'ADDED', object: pod('in-a', '3') },
          { type: 'ADDED', object: pod('out-b', '4') },
          initialEventsEnd('9'),
          { type: 'ADDED', object: pod('out-c', '10') },
          { type: 'MODIFIED', object: pod('in-a', '11') },
        ],
      ],
      stop,
    });
    const { keys, events } = await run(client, stop);
    assert.deepEqual(
      calls.map((c) => [c.kind, Boolean(c.query.sendInitialEvents), c.query.shardSelector]),
      [
        ['watch', true, SELECTOR],
        ['watch', false, SELECTOR],
      ],
    );
    assert.deepEqual(keys, ['ns/in-a']);
    assert.deepEqual(events, ['add in-a', 'update in-a']);
  });

  it('drops what keep says no to across list pages', async () => {
    const stop = new AbortController();
    const pages = [
      { items: [pod('out-a', '1'), pod('in-b', '1')], continue: 'next' },
      { items: [pod('in-c', '1'), pod('out-d', '1')], continue: '' },
    ];
    const queries: Record<string, unknown>[] = [];
    const { client } = fakeClient<KubeObject>({ stop });
    const paged = {
      ...client,
      request: <R>(opts: { query?: Record<string, unknown> }): Promise<R> => {
        queries.push(opts.query ?? {});
        const page = pages.shift();
        return Promise.resolve({
          metadata: { resourceVersion: '20', continue: page?.continue },
          items: page?.items ?? [],
        } as R);
      },
    };
    const { keys } = await run(paged, stop);
    assert.deepEqual(
      queries.map((q) => [q.continue, q.shardSelector]),
      [
        [undefined, SELECTOR],
        ['next', SELECTOR],
      ],
    );
    assert.deepEqual(keys, ['ns/in-b', 'ns/in-c']);
  });
});
