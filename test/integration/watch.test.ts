// The informer's watches against the real API server, through an HTTP/2 proxy that faults one
// stream while the connection stays healthy (PINGs answered, every other request forwarded):
// a watch that goes silent is aborted by our watchdog and resumed; a watch answered 200 and
// closed at once is backed off from, not reopened in a loop.
import assert from 'node:assert/strict';
import { dirname } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeClient } from '../../src/kube/client.ts';
import { DEFAULT_BACKOFF, retryDelay } from '../../src/runtime/backoff.ts';
import { Informer } from '../../src/runtime/cache/informer.ts';
import type { KubeObject } from '../../src/kube/object.ts';
import { ShortWatchError, WatchSilentError } from '../../src/runtime/cache/watchdog.ts';
import { informerAttemptsWithin } from '../support/backoff.ts';
import { clusterAddress, clusterKubeconfig, eventually } from '../support/kube.ts';
import { startStreamProxy, type StreamProxy } from '../support/stream-proxy.ts';
import { useAdmin, testNamespace } from '../support/namespaces.ts';

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** The watches of the ConfigMaps of `ns` (a path with its query). */
const watchOf =
  (ns: string) =>
  (path: string): boolean =>
    path.startsWith(`/api/v1/namespaces/${ns}/configmaps?`) && path.includes('watch=true');

describe('informer watches through a proxy that faults one stream', () => {
  const admin = useAdmin();
  let proxy: StreamProxy;
  let client: KubeClient;

  before(async () => {
    const clusterDir = process.env.ECHO_TEST_CLUSTER_DIR ?? dirname(clusterKubeconfig());
    proxy = await startStreamProxy(clusterDir, clusterAddress().server);
    client = KubeClient.fromFile(proxy.kubeconfig);
  });

  after(async () => {
    await client.close();
    await proxy.close();
  });

  /** A ConfigMaps informer of `ns` through the proxy, running until the test's end. */
  function configMaps(
    ns: string,
    idleTimeoutMs: number,
    failures: unknown[],
  ): { informer: Informer<KubeObject>; stop: () => Promise<void> } {
    const informer = new Informer<KubeObject>({
      name: 'configmaps',
      client,
      path: `/api/v1/namespaces/${ns}/configmaps`,
      idleTimeoutMs,
      observer: { failed: (err) => failures.push(err) },
    });
    const controller = new AbortController();
    const running = informer.run(controller.signal);
    return {
      informer,
      stop: async () => {
        controller.abort();
        await running;
      },
    };
  }

  const createConfigMap = (ns: string, name: string) =>
    admin.request({
      method: 'POST',
      path: `/api/v1/namespaces/${ns}/configmaps`,
      body: { metadata: { name } },
    });

  it('aborts a silent watch at its limit, resumes it, and sees a change made after', async (t) => {
    const ns = (await testNamespace(t, admin, 'silent-watch')).name;
    const limitMs = 3000;
    const failures: unknown[] = [];
    await createConfigMap(ns, 'heartbeat');
    const { informer, stop } = configMaps(ns, limitMs, failures);
    // A change every half second keeps the healthy watch well inside its limit: the only silence
    // is the one the proxy makes.
    const beating = new AbortController();
    const heartbeat = (async () => {
      for (let n = 0; !beating.signal.aborted; n++) {
        await admin
          .request({
            method: 'PATCH',
            path: `/api/v1/namespaces/${ns}/configmaps/heartbeat`,
            body: { data: { n: String(n) } },
            contentType: 'application/merge-patch+json',
          })
          .catch(() => undefined);
        await sleep(500, undefined, { signal: beating.signal }).catch(() => undefined);
      }
    })();
    try {
      await informer.whenSynced();
      await eventually('the heartbeat in the cache', () =>
        Promise.resolve(informer.get(`${ns}/heartbeat`) ? true : undefined),
      );
      const watches = () => proxy.requests.filter((r) => watchOf(ns)(r.path));
      const before = watches().length;
      const silencedAt = performance.now();
      assert.equal(proxy.silence(watchOf(ns)), 1, 'one watch open, silenced');

      // While it is silent past its limit, the informer names it (what /readyz reports).
      const reported = await eventually(
        'the silent watch reported',
        () => Promise.resolve(informer.silentWatch()),
        30_000,
        50,
      );
      assert.match(reported, /^configmaps watch silent for \d+\.\d s \(\/api\/v1\/namespaces\//);
      const reopened = await eventually(
        'the watch reopened',
        () => Promise.resolve(watches()[before]),
        30_000,
        50,
      );
      const reopenedAfter = reopened.at - silencedAt;
      // Resumed from where it was, not relisted: a plain watch from a resourceVersion.
      assert.match(reopened.path, /[?&]resourceVersion=\d+/);
      assert.doesNotMatch(reopened.path, /sendInitialEvents/);
      const silent = failures.find((err) => err instanceof WatchSilentError);
      assert.ok(silent, `the silence was a failure: ${failures.map(String).join('; ')}`);
      assert.match(silent.message, /^configmaps: watch silent for \d+\.\d s: reopening$/);
      assert.ok(silent.silentMs >= limitMs, `aborted after ${seconds(silent.silentMs)} of silence`);
      // At the limit, then the informer's first backoff; a second limit's worth of slack for a
      // loaded machine. Undici's timers are off for watches: without the watchdog it never reopens.
      const bound = 2 * limitMs + retryDelay(DEFAULT_BACKOFF, 0, 1);
      assert.ok(reopenedAfter <= bound, `reopened ${seconds(reopenedAfter)} after the silence`);

      await createConfigMap(ns, 'after-silence');
      const createdAt = performance.now();
      const seenAt = await eventually(
        'the ConfigMap created after the silence in the cache',
        () => Promise.resolve(informer.get(`${ns}/after-silence`) ? performance.now() : undefined),
        30_000,
        20,
      );
      assert.equal(informer.silentWatch(), undefined, 'no watch silent any more');
      t.diagnostic(
        `limit ${seconds(limitMs)}: silence reported, watch reopened ${seconds(reopenedAfter)} after it (aborted at ${seconds(silent.silentMs)} of silence); a change made then seen in ${seconds(seenAt - createdAt)}`,
      );
    } finally {
      beating.abort();
      await heartbeat;
      await stop();
    }
  });

  it('backs off from watches answered 200 and closed at once, then recovers', async (t) => {
    const ns = (await testNamespace(t, admin, 'short-watch')).name;
    const failures: unknown[] = [];
    const { informer, stop } = configMaps(ns, 150_000, failures);
    try {
      await informer.whenSynced();
      proxy.answerEmpty(watchOf(ns));
      const cutAt = performance.now();
      assert.equal(proxy.endOpen(watchOf(ns)), 1, 'the open watch ended cleanly');
      const shortWatches = () => proxy.requests.filter((r) => r.at >= cutAt && watchOf(ns)(r.path));
      // The first is reopened at once (the watch before it was a healthy one); then each waits.
      const wanted = 5;
      const seen = await eventually(
        `${String(wanted)} watches answered at once`,
        () => Promise.resolve(shortWatches().length >= wanted ? shortWatches() : undefined),
        60_000,
        20,
      );
      const first = seen[0];
      const last = seen.at(-1);
      assert.ok(first && last);
      const window = last.at - first.at;
      const bound = informerAttemptsWithin(window);
      assert.ok(
        seen.length <= bound,
        `${String(seen.length)} watches in ${seconds(window)}: the backoff allows ${String(bound)}`,
      );
      assert.ok(
        failures.filter((err) => err instanceof ShortWatchError).length >= seen.length - 1,
        `each short watch was a failure: ${failures.map(String).join('; ')}`,
      );

      proxy.answerEmpty(undefined);
      const healedAt = performance.now();
      await createConfigMap(ns, 'after-recovery');
      const seenAt = await eventually(
        'the ConfigMap created after the proxy healed in the cache',
        () => Promise.resolve(informer.get(`${ns}/after-recovery`) ? performance.now() : undefined),
        60_000,
        20,
      );
      t.diagnostic(
        `${String(seen.length)} short watches over ${seconds(window)} (backoff bound ${String(bound)}); after the proxy healed, a new ConfigMap seen in ${seconds(seenAt - healedAt)}`,
      );
    } finally {
      proxy.answerEmpty(undefined);
      await stop();
    }
  });
});
