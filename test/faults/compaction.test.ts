// The operator misses changes while it is stopped, and etcd compacts the history it would resume
// from: its watches must come back with 410 Gone, the informers relist, and the relist must
// bring every change (a new Echo, a new replica count, a deleted Deployment) without a write for
// the Echoes that did not change. The Deployment watch is in protobuf: its 410 arrives as a
// protobuf ERROR event, which must be read as the Status it is, not as bytes it cannot decode.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster } from '../../hack/cluster/cluster.ts';
import { installCrd } from '../../hack/cluster/crd.ts';
import type { Echo } from '../../src/echo/api.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { isWriteVerb } from '../../src/kube/request-info.ts';
import type { FaultProxy } from '../support/fault-proxy.ts';
import { echoManifest } from '../support/echo.ts';
import {
  converged,
  createEchoes,
  deploymentsPath,
  echoesPath,
  listDeployments,
} from '../support/fleet.ts';
import { createNamespace, eventually, proxiedCluster } from '../support/kube.ts';
import { startMain, whenReady } from '../support/main-process.ts';
import { scrape, type Scrape } from '../support/metrics.ts';

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** The operator's writes by `verb resource`, from its request counter. */
function writes(m: Scrape): Map<string, number> {
  const counts = new Map<string, number>();
  for (const s of m.samples) {
    if (s.name !== 'echo_operator_kubernetes_requests_total' || !isWriteVerb(s.labels.verb ?? ''))
      continue;
    const key = `${s.labels.verb ?? ''} ${s.labels.resource ?? ''}`;
    counts.set(key, (counts.get(key) ?? 0) + s.value);
  }
  return counts;
}

/** Whether the operator has nothing queued and no reconcile running. */
function idle(m: Scrape): boolean {
  return (
    m.total('workqueue_depth', (labels) => labels.name === 'echo') === 0 &&
    m.value('controller_runtime_active_workers', { controller: 'echo' }) === 0
  );
}

/**
 * The operator's metrics once it is idle (nothing queued, no reconcile running) at both ends of
 * two seconds without a write: late status updates have landed. The two seconds are a measuring
 * window for the quiet; the idle work queue is what says no write is still on its way.
 */
function settled(port: number): Promise<Scrape> {
  return eventually('the operator to stop writing', async () => {
    const first = await scrape(port);
    await sleep(2000);
    const second = await scrape(port);
    return idle(first) &&
      idle(second) &&
      JSON.stringify([...writes(first)]) === JSON.stringify([...writes(second)])
      ? second
      : undefined;
  });
}

/** Each Echo's resourceVersion: it moves with every write that changes the Echo, status included. */
async function echoVersions(admin: KubeClient, ns: string): Promise<Map<string, string>> {
  const list = await admin.request<{ items: Echo[] }>({ path: echoesPath(ns) });
  return new Map(list.items.map((e) => [e.metadata.name, e.metadata.resourceVersion]));
}

/** The log lines that name `informer`, for a failure message. */
function logOf(stdout: string, informer: string): string {
  return stdout
    .split('\n')
    .filter((line) => line.includes(`"informer":"${informer}"`) || line.includes(`${informer}: `))
    .join('\n');
}

/** Posts to etcd's JSON gateway (gRPC over HTTP). */
async function etcd<T>(etcdUrl: string, path: string, body: unknown): Promise<T> {
  const res = await fetch(`${etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`etcd ${path}: ${String(res.status)} ${await res.text()}`);
  return (await res.json()) as T;
}

describe('etcd compaction while the operator is stopped', () => {
  let cluster: LocalCluster;
  let admin: KubeClient;
  let proxy: FaultProxy;
  let viaProxy: string;

  before(async () => {
    // Without the watch cache, a watch resumed from a resourceVersion goes to etcd, which refuses
    // a compacted revision: 410 Gone. Any cluster does the same once its watch cache (a window of
    // recent events) has rolled past the client's resourceVersion; here it takes one compaction.
    cluster = await LocalCluster.start({ apiserverArgs: ['--watch-cache=false'] });
    admin = KubeClient.fromFile(cluster.kubeconfig);
    await installCrd(admin);
    ({ proxy, kubeconfig: viaProxy } = await proxiedCluster(cluster));
  });

  after(async () => {
    await proxy.close();
    await admin.close();
    await cluster.stop();
  });

  it('relists after 410 Gone, catches every missed change, and rewrites nothing else', async (t) => {
    const ns = (await createNamespace(admin, 'compaction')).name;
    const wanted = new Map<string, number>(
      Array.from({ length: 40 }, (_, i) => [`fleet-${String(i)}`, 1 + (i % 2)] as const),
    );
    const p = startMain([`--kubeconfig=${viaProxy}`, `--namespaces=${ns}`]);
    const pid = p.child.pid;
    assert.ok(pid);
    try {
      const port = await whenReady(p);
      await createEchoes(admin, ns, wanted);
      await converged(admin, ns, wanted);
      const before = await settled(port);

      const replaced = (await listDeployments(admin, ns)).find((d) => d.metadata.name === 'fleet-2')
        ?.metadata.uid;
      assert.ok(replaced);
      const versionsBefore = await echoVersions(admin, ns);
      const changed = ['late', 'fleet-1', 'fleet-2'];

      process.kill(pid, 'SIGSTOP');
      let resumed: number;
      try {
        // Nothing sent from now on reaches the operator: what it learns of the changes below, it
        // learns from a relist.
        assert.ok(proxy.silenceOpenConnections() >= 1, 'the operator is connected');
        // Three changes the operator must not miss.
        await admin.request({
          method: 'POST',
          path: echoesPath(ns),
          body: echoManifest({ name: 'late', replicas: 2 }),
        });
        wanted.set('late', 2);
        await admin.request({
          method: 'PATCH',
          path: `${echoesPath(ns)}/fleet-1`,
          body: { spec: { replicas: 3 } },
          contentType: 'application/merge-patch+json',
        });
        wanted.set('fleet-1', 3);
        await admin.request({ method: 'DELETE', path: `${deploymentsPath(ns)}/fleet-2` });
        // And writes it does not watch, so the compacted revision is well past its last one.
        for (let i = 0; i < 20; i++) {
          await admin.request({
            method: 'POST',
            path: `/api/v1/namespaces/${ns}/configmaps`,
            body: { metadata: { name: `unrelated-${String(i)}` } },
          });
        }
        const { header } = await etcd<{ header: { revision: string } }>(
          cluster.state.etcdUrl,
          '/v3/kv/range',
          { key: Buffer.from('\0').toString('base64') },
        );
        await etcd(cluster.state.etcdUrl, '/v3/kv/compaction', {
          revision: header.revision,
          physical: true,
        });
        // Cut, so the operator has to resume its watches from its last resourceVersion, now
        // compacted away.
        proxy.resetOpenConnections();
        t.diagnostic(`compacted etcd at revision ${header.revision}`);
      } finally {
        process.kill(pid, 'SIGCONT');
        resumed = performance.now();
      }

      // What the relist must bring: every Echo with its one Deployment, at its replicas.
      await converged(admin, ns, wanted, { ready: false });
      const recreated = (await listDeployments(admin, ns)).find(
        (d) => d.metadata.name === 'fleet-2',
      );
      assert.notEqual(recreated?.metadata.uid, replaced, 'fleet-2 has a new Deployment');
      const caughtUp = performance.now();
      t.diagnostic(`recovery (SIGCONT → 3 changes applied) ${seconds(caughtUp - resumed)}`);
      // fleet-2 is reconciled on its Deployment's events while the Echo cache may still hold its
      // status from before the stop, or not yet our last status write: a status decided from
      // that stale view (Ready False, RollingOut) must not stay until the resync.
      await converged(admin, ns, wanted, { timeoutMs: 15_000 });
      t.diagnostic(`SIGCONT → every Echo Ready ${seconds(performance.now() - resumed)}`);
      // Only the three changed Echoes may have cost writes.
      const after = await settled(port);
      const made = new Map(
        [...writes(after)].map(([k, v]) => [k, v - (writes(before).get(k) ?? 0)] as const),
      );
      t.diagnostic(`writes during the catch-up: ${JSON.stringify(Object.fromEntries(made))}`);

      const grew = (metric: string, informer: string): number =>
        after.value(metric, { informer }) - before.value(metric, { informer });
      for (const informer of ['echoes', 'deployments']) {
        assert.ok(
          grew('echo_operator_informer_relists_total', informer) >= 1,
          `${informer}: resumed from a compacted revision, got 410, relisted`,
        );
      }
      assert.match(p.stdout(), /watch failed, retrying/, 'the reset cut the watches');
      for (const informer of ['echoes', 'deployments'])
        assert.match(p.stdout(), new RegExp(`"informer":"${informer}".*410 Gone\\): relisting`));
      // The protobuf 410 is a relist, at once: no fall back to JSON, and no failure (which would
      // fail /readyz and back off) beyond the cut itself.
      assert.doesNotMatch(p.stdout(), /could not decode the API server's protobuf/);
      assert.equal(
        grew('echo_operator_informer_failures_total', 'deployments'),
        1,
        `deployments: the cut was the only failure\n${logOf(p.stdout(), 'deployments')}`,
      );
      assert.ok((await fetch(`http://127.0.0.1:${String(port)}/readyz`)).ok, '/readyz passes');
      /** When the first log line about the Deployment informer matching `pattern` was written. */
      const loggedAt = (pattern: RegExp): number => {
        const lines = logOf(p.stdout(), 'deployments').split('\n');
        const line = lines.find((l) => pattern.test(l)) ?? '{}';
        return Date.parse((JSON.parse(line) as { time?: string }).time ?? '');
      };
      t.diagnostic(
        `deployments: cut → relisting ${seconds(loggedAt(/relisting/) - loggedAt(/watch failed/))} ` +
          '(the backoff after the cut; none after the 410)',
      );
      assert.equal(made.get('apply deployments.apps'), 3, 'one apply per changed Echo');
      // Status follows each changed Deployment's rollout, pod by pod: a few writes per changed
      // Echo. None went to the others: their resourceVersions did not move.
      const statusWrites = made.get('apply echoes.example.com/status') ?? 0;
      assert.ok(statusWrites <= 3 * 6, `${String(statusWrites)} status writes for 3 changes`);
      const versionsAfter = await echoVersions(admin, ns);
      const rewritten = [...versionsBefore].filter(
        ([name, version]) => versionsAfter.get(name) !== version && !changed.includes(name),
      );
      assert.deepEqual(rewritten, [], 'no unchanged Echo was written');
      assert.ok(
        (made.get('create events.events.k8s.io') ?? 0) <= 3,
        'an Event per changed Deployment',
      );
      assert.equal(p.child.exitCode, null);
    } finally {
      p.child.kill('SIGCONT');
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);
  });
});
