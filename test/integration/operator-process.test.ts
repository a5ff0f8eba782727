// The operator as users run it, a process (`node src/main.ts`), on a cluster of its own so the
// test can take the CRD away and restart the API server: plain-language failures at startup,
// readiness, convergence after every watch is cut, and a graceful exit on SIGTERM.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalCluster, writeKubeconfig } from '../../hack/cluster/cluster.ts';
import type { Echo } from '../../src/echo/api.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { eventually, proxiedCluster, serviceAccountKubeconfig } from '../support/kube.ts';
import { promtoolCheck, scrape } from '../support/metrics.ts';
import { isReady } from '../support/fixtures.ts';
import { echoManifest } from '../support/echo.ts';
import { installCrd } from '../../hack/cluster/crd.ts';
import { startOperator } from '../support/operator.ts';
import { logsPort, startMain, whenReady } from '../support/main-process.ts';
import { freePorts } from '../../hack/cluster/process.ts';
import { DEFAULT_BACKOFF, retryDelay } from '../../src/runtime/backoff.ts';
import { WatchSilentError } from '../../src/runtime/cache/watchdog.ts';

/** The operator's "waiting: the Echo CRD …" log lines: when, and the wait it decided on. */
function crdWaits(stdout: string): { at: number; retryInSeconds: number }[] {
  return stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { time: string; msg: string; retryInSeconds: number })
    .filter((entry) => entry.msg.startsWith('waiting: the Echo CRD'))
    .map((entry) => ({ at: Date.parse(entry.time), retryInSeconds: entry.retryInSeconds }));
}

describe('operator process', () => {
  let cluster: LocalCluster;
  let admin: KubeClient;

  before(async () => {
    cluster = await LocalCluster.start();
    admin = KubeClient.fromFile(cluster.kubeconfig);
  });

  after(async () => {
    await admin.close();
    await cluster.stop();
  });

  /** The CRD installed, and a fresh namespace for one test. */
  const withCrdAndNamespace = async (ns: string): Promise<string> => {
    await installCrd(admin);
    await admin.request({
      method: 'POST',
      path: '/api/v1/namespaces',
      body: { metadata: { name: ns } },
    });
    return ns;
  };

  it('waits for a missing CRD, not ready and without a crash loop; recovers when installed; survives its deletion', async (t) => {
    const p = startMain([`--kubeconfig=${cluster.kubeconfig}`]);
    try {
      const port = await logsPort(p);
      await eventually('the plain message', () =>
        Promise.resolve(
          p.output().includes('waiting: the Echo CRD (echoes.example.com) is not installed')
            ? true
            : undefined,
        ),
      );
      const probe = async (path: string): Promise<number> =>
        (await fetch(`http://127.0.0.1:${String(port)}${path}`)).status;
      assert.equal(await probe('/readyz'), 503, 'not ready without the CRD');
      assert.equal(await probe('/livez'), 200, 'alive: nothing a restart would fix');
      const tries = await eventually(
        'three tries at the CRD',
        () => {
          const logged = crdWaits(p.stdout());
          return Promise.resolve(logged.length >= 3 ? logged : undefined);
        },
        30_000,
      );
      assert.equal(p.child.exitCode, null, 'waits instead of exiting into a crash loop');
      // The backoff, from the waits the operator decided on (load does not move them): retry n
      // waits 0.8 s·2ⁿ stretched by a jitter of up to as much again (logged to the 0.1 s).
      for (const [retry, { retryInSeconds }] of tries.entries()) {
        const low = retryDelay(DEFAULT_BACKOFF, retry, 0) / 1000 - 0.05;
        const high = retryDelay(DEFAULT_BACKOFF, retry, 1) / 1000 + 0.05;
        assert.ok(
          retryInSeconds >= low && retryInSeconds <= high,
          `retry ${String(retry)} waits ${String(retryInSeconds)} s, not within ${String(low)}–${String(high)} s`,
        );
      }
      // And each try did wait so long: the next came no sooner (load only makes it later).
      for (const [retry, next] of tries.slice(1).entries()) {
        const previous = tries[retry]!;
        assert.ok(
          next.at - previous.at >= previous.retryInSeconds * 1000 - 50,
          `try ${String(retry + 1)} came ${String(next.at - previous.at)} ms after the one before, which was to wait ${String(previous.retryInSeconds)} s`,
        );
      }

      const installedAt = Date.now();
      await withCrdAndNamespace('crd-comes-and-goes');
      await whenReady(p);
      t.diagnostic(`ready ${String(Date.now() - installedAt)} ms after the CRD was installed`);
      const echoes = '/apis/example.com/v1/namespaces/crd-comes-and-goes/echoes';
      await admin.request({
        method: 'POST',
        path: echoes,
        body: echoManifest({ name: 'first', replicas: 1 }),
      });
      await eventually('the first Echo Ready', async () =>
        isReady(await admin.request<Echo>({ path: `${echoes}/first` }), 1) ? true : undefined,
      );

      // Deleting a CRD deletes its objects (and the garbage collector their Deployments): the
      // operator must say what happened, stay up, and carry on when the CRD is back.
      const crdPath = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/echoes.example.com';
      await admin.request({ method: 'DELETE', path: crdPath });
      await eventually('the CRD gone', () =>
        admin.request({ path: crdPath }).then(
          () => undefined,
          () => true,
        ),
      );
      await eventually('a plain message about the deleted CRD', () =>
        Promise.resolve(
          /"level":"error".*the Echo CRD \(echoes\.example\.com\) is not installed/.test(p.stdout())
            ? true
            : undefined,
        ),
      );
      await eventually('readiness failing while the CRD is gone', async () =>
        (await probe('/readyz')) === 503 ? true : undefined,
      );
      assert.equal(p.child.exitCode, null, 'still running with the CRD gone');

      const reinstalledAt = Date.now();
      await installCrd(admin);
      await admin.request({
        method: 'POST',
        path: echoes,
        body: echoManifest({ name: 'second', replicas: 2 }),
      });
      await eventually(
        'an Echo created after the CRD came back Ready',
        async () =>
          isReady(await admin.request<Echo>({ path: `${echoes}/second` }), 2) ? true : undefined,
        90_000,
      );
      await whenReady(p);
      t.diagnostic(
        `converged ${String(Date.now() - reinstalledAt)} ms after the CRD was reinstalled`,
      );
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);
  });

  it('waits, not ready, while its credentials are refused, and never logs them', async () => {
    const bad = join(cluster.state.dir, 'bad-token.kubeconfig');
    await writeKubeconfig(bad, cluster.state.server, cluster.caCert, { token: 'not-a-real-token' });
    const p = startMain([`--kubeconfig=${bad}`]);
    try {
      const port = await logsPort(p);
      await eventually('the plain message', () =>
        Promise.resolve(
          /waiting: .* rejected the operator's credentials \(401 Unauthorized\)/.test(p.output())
            ? true
            : undefined,
        ),
      );
      const readyz = await fetch(`http://127.0.0.1:${String(port)}/readyz`);
      assert.equal(readyz.status, 503);
      assert.match(await readyz.text(), /\[-\]credentials-accepted failed/);
      assert.doesNotMatch(p.output(), /not-a-real-token/, 'the token is never logged');
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0, 'a stop while waiting is a clean stop');
  });

  it('waits with a plain message while the API server is unreachable', async () => {
    const [closed = 0] = await freePorts(1);
    const nowhere = join(cluster.state.dir, 'nowhere.kubeconfig');
    await writeKubeconfig(
      nowhere,
      `https://127.0.0.1:${String(closed)}`,
      cluster.caCert,
      cluster.adminCert,
    );
    const p = startMain([`--kubeconfig=${nowhere}`]);
    try {
      await logsPort(p);
      await eventually('the plain message', () =>
        Promise.resolve(
          new RegExp(
            `waiting: cannot reach the API server at https://127.0.0.1:${String(closed)}: .*ECONNREFUSED`,
          ).test(p.output())
            ? true
            : undefined,
        ),
      );
      assert.equal(p.child.exitCode, null);
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);
  });

  it('exits 1 with a plain message for a malformed kubeconfig', async () => {
    const broken = join(cluster.state.dir, 'broken.kubeconfig');
    await writeFile(broken, 'apiVersion: v1\nclusters: [this is not: a kubeconfig\n');
    const p = startMain([`--kubeconfig=${broken}`]);
    assert.equal(await p.exited, 1);
    assert.ok(p.output().includes(broken), 'the message names the file');
    assert.doesNotMatch(p.output(), /at .*\.ts:\d+/, 'a message, not a stack trace');
  });

  it('exits 2 on a bad flag, before touching the cluster', async () => {
    const p = startMain(['--log-format=xml']);
    assert.equal(await p.exited, 2);
    assert.match(p.output(), /--log-format must be text or json/);
  });

  it('gets ready, converges after the API server restarts, and stops cleanly on SIGTERM', async () => {
    const ns = await withCrdAndNamespace('restart');
    const p = startMain([`--kubeconfig=${cluster.kubeconfig}`, `--namespaces=${ns}`]);
    try {
      const port = await whenReady(p);
      assert.equal((await fetch(`http://127.0.0.1:${String(port)}/nope`)).status, 404);

      const echoes = `/apis/example.com/v1/namespaces/${ns}/echoes`;
      const create = (name: string, replicas: number): Promise<unknown> =>
        admin.request({ method: 'POST', path: echoes, body: echoManifest({ name, replicas }) });
      const ready = (name: string, replicas: number): Promise<true> =>
        eventually(
          `${name} Ready with ${String(replicas)}`,
          async () =>
            isReady(await admin.request<Echo>({ path: `${echoes}/${name}` }), replicas)
              ? true
              : undefined,
          90_000,
        );

      await create('before', 1);
      await ready('before', 1);
      const metrics = await scrape(port);
      promtoolCheck(metrics.body);
      const openMetrics = await scrape(port, 'application/openmetrics-text; version=1.0.0');
      assert.match(openMetrics.contentType, /^application\/openmetrics-text/);
      assert.ok(
        openMetrics.value('controller_runtime_reconcile_total', { result: 'success' }) >= 1,
      );
      assert.ok(
        metrics.value('controller_runtime_reconcile_total', {
          controller: 'echo',
          result: 'success',
        }) >= 1,
      );
      assert.equal(
        metrics.value('echo_operator_echo_desired_replicas', { namespace: ns, name: 'before' }),
        1,
      );
      assert.equal(metrics.value('echo_operator_ready'), 1);
      assert.equal(metrics.value('echo_operator_informer_objects', { informer: 'echoes' }), 1);
      assert.ok(
        metrics.value('echo_operator_kubernetes_requests_total', {
          verb: 'apply',
          resource: 'deployments.apps',
          path: '/apis/apps/v1/namespaces/{namespace}/deployments/{name}',
          code: '201', // an apply that creates
        }) >= 1,
      );

      // Every watch breaks; nothing is learnt while the server is away.
      await cluster.restart('kube-apiserver');

      await create('after', 2);
      await admin.request({
        method: 'PATCH',
        path: `${echoes}/before`,
        body: { spec: { replicas: 3 } },
        contentType: 'application/merge-patch+json',
      });
      await ready('after', 2);
      await ready('before', 3);
      assert.equal(p.child.exitCode, null, 'still running: a lost watch is retried, not fatal');
      assert.match(p.output(), /watch failed, retrying/, 'the restart did cut the watches');
      const after = await scrape(port);
      assert.ok(
        after.value('echo_operator_informer_watches_total', { informer: 'echoes' }) >= 2,
        'watches reopened',
      );
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);
    assert.match(p.output(), /"msg":"stopped"/);
  });

  it('counts failed reconciles and their retries when a write is forbidden', async () => {
    const ns = await withCrdAndNamespace('forbidden');
    // Everything the operator needs except writing Deployments.
    await admin.request({
      method: 'POST',
      path: `/api/v1/namespaces/${ns}/serviceaccounts`,
      body: { metadata: { name: 'no-deployments' } },
    });
    await admin.request({
      method: 'POST',
      path: '/apis/rbac.authorization.k8s.io/v1/clusterroles',
      body: {
        metadata: { name: 'echo-without-deployment-writes' },
        rules: [
          { apiGroups: ['example.com'], resources: ['echoes'], verbs: ['get', 'list', 'watch'] },
          { apiGroups: ['example.com'], resources: ['echoes/status'], verbs: ['patch'] },
          { apiGroups: ['apps'], resources: ['deployments'], verbs: ['get', 'list', 'watch'] },
          { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
        ],
      },
    });
    await admin.request({
      method: 'POST',
      path: '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
      body: {
        metadata: { name: 'echo-without-deployment-writes' },
        roleRef: {
          apiGroup: 'rbac.authorization.k8s.io',
          kind: 'ClusterRole',
          name: 'echo-without-deployment-writes',
        },
        subjects: [{ kind: 'ServiceAccount', name: 'no-deployments', namespace: ns }],
      },
    });
    const kubeconfig = await serviceAccountKubeconfig(
      admin,
      ns,
      'no-deployments',
      cluster.kubeconfig,
    );
    const p = startMain([`--kubeconfig=${kubeconfig}`, `--namespaces=${ns}`]);
    try {
      const port = await whenReady(p);
      await admin.request({
        method: 'POST',
        path: `/apis/example.com/v1/namespaces/${ns}/echoes`,
        body: echoManifest({ name: 'denied', replicas: 1 }),
      });
      const metrics = await eventually('two failed reconciles', async () => {
        const m = await scrape(port);
        return m.value('controller_runtime_reconcile_errors_total', { controller: 'echo' }) >= 2
          ? m
          : undefined;
      });
      promtoolCheck(metrics.body);
      assert.ok(
        metrics.value('workqueue_retries_total', { name: 'echo', controller: 'echo' }) >= 2,
      );
      assert.ok(
        metrics.value('controller_runtime_reconcile_total', {
          controller: 'echo',
          result: 'error',
        }) >= 2,
      );
      assert.ok(
        metrics.value('echo_operator_kubernetes_requests_total', {
          verb: 'apply',
          resource: 'deployments.apps',
          code: '403',
        }) >= 2,
      );
      assert.equal(p.child.exitCode, null, 'a forbidden write is retried with backoff, not fatal');
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);
  });

  it('notices watches that go silent, and catches up', async () => {
    const ns = await withCrdAndNamespace('silent');
    const { proxy, kubeconfig: viaProxy } = await proxiedCluster(cluster);
    const failures: unknown[] = [];
    const op = await startOperator(
      [ns],
      { idleTimeoutMs: 3000, informerObserver: () => ({ failed: (err) => failures.push(err) }) },
      viaProxy,
      // The watchdog notices the silent watches (at 3 s); the PING health check, which finds
      // the dead connection (a PING unanswered when the next is due), moves them to a new one.
      { requestTimeoutMs: 3000, pingIntervalMs: 4000 },
    );
    /** Watches of `resource` the API server answered (200): each was open from then on. */
    const opened = (resource: string): number =>
      op.counts
        .all()
        .filter((c) => c.verb === 'watch' && c.resource === resource && c.code === 200)
        .reduce((n, c) => n + c.count, 0);
    const watchesOpen = (times: number) => (): Promise<true | undefined> =>
      Promise.resolve(
        opened('echoes.example.com') >= times && opened('deployments.apps') >= times
          ? true
          : undefined,
      );
    try {
      // Silenced only once both watches are open, so it is open watches that go quiet.
      await eventually('both watches open', watchesOpen(1));
      const silenced = proxy.silenceOpenConnections();
      // Lists, both watches and every write share one HTTP/2 connection, as client-go does.
      assert.equal(silenced, 1, 'one connection for every request');
      // Created behind the silenced watches' back: the operator can only learn of it by reconnecting.
      await admin.request({
        method: 'POST',
        path: `/apis/example.com/v1/namespaces/${ns}/echoes`,
        body: echoManifest({ name: 'unseen', replicas: 1 }),
      });
      await eventually('both watches open again after the silence', watchesOpen(2));
      assert.ok(
        failures.some((err) => err instanceof WatchSilentError),
        `the silent watches timed out: ${failures.map(String).join('; ')}`,
      );
      await eventually(
        'the Deployment of an Echo created while the watches were silent',
        async () => {
          const d = await admin.request<{ spec: { replicas: number } }>({
            path: `/apis/apps/v1/namespaces/${ns}/deployments/unseen`,
          });
          return d.spec.replicas === 1 ? true : undefined;
        },
      );
    } finally {
      await op.stop();
      await proxy.close();
    }
  });
});
