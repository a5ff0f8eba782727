// How the informers start against the real API server: with WatchList (a watch that sends the
// initial state) where it serves it, else, after its refusal, with a list in pages, as client-go
// does. The compatibility suite (make test-compat) runs this on the oldest supported release
// (1.33, WatchList off by default: the fallback runs) and on the newest (WatchList served).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Informer } from '../../src/runtime/cache/informer.ts';
import type { KubeObject } from '../../src/kube/object.ts';
import { eventually, servesWatchList } from '../support/kube.ts';
import { testNamespace, useAdmin } from '../support/namespaces.ts';

describe('informer start on this API server', () => {
  const admin = useAdmin();

  it('syncs every object, by WatchList if served, else in pages, then watches', async (t) => {
    const watchList = await servesWatchList(admin);
    t.diagnostic(`the API server ${watchList ? 'serves' : 'refuses'} WatchList`);
    const ns = await testNamespace(t, admin, 'watch-list');
    const createConfigMap = (name: string) =>
      admin.request({
        method: 'POST',
        path: `/api/v1/namespaces/${ns.name}/configmaps`,
        body: { metadata: { name } },
      });
    // Five objects in pages of two: a paginated start needs three pages.
    for (let i = 0; i < 5; i++) await createConfigMap(`cm-${String(i)}`);
    const refused: unknown[] = [];
    const informer = new Informer<KubeObject>({
      name: 'configmaps',
      client: admin,
      path: `/api/v1/namespaces/${ns.name}/configmaps`,
      pageSize: 2,
      observer: { watchListRefused: (err) => refused.push(err) },
    });
    const controller = new AbortController();
    const running = informer.run(controller.signal);
    try {
      await informer.whenSynced();
      const names = informer.keys().filter((k) => k.includes('/cm-'));
      assert.equal(names.length, 5, `every ConfigMap in the cache: ${names.join(', ')}`);
      assert.equal(
        refused.length,
        watchList ? 0 : 1,
        watchList ? 'WatchList served, not refused' : 'WatchList refused once, then listed',
      );
      // The watch that follows either start sees what changes after it.
      await createConfigMap('after-sync');
      await eventually('the ConfigMap created after the sync in the cache', () =>
        Promise.resolve(informer.get(`${ns.name}/after-sync`) ? true : undefined),
      );
    } finally {
      controller.abort();
      await running;
    }
  });
});
