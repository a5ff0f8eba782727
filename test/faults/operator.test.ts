// Faults of the operator process itself, on the shared cluster and scoped to each test's
// namespace: killed (SIGKILL) in the middle of a burst and started again; its ServiceAccount
// deleted under it, so every request is refused 401, then its token file rotated.
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it, type TestContext } from 'node:test';
import { writeKubeconfig } from '../../hack/cluster/cluster.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { ApiError } from '../../src/kube/errors.ts';
import { clusterAddress, clusterKubeconfig, eventually, grantRole } from '../support/kube.ts';
import { informerAttemptsWithin, queueAttemptsWithin } from '../support/backoff.ts';
import { createEchoes, fleetDifferences, listDeployments } from '../support/fleet.ts';
import { OPERATOR_RULES } from '../support/fixtures.ts';
import { startMain, whenReady } from '../support/main-process.ts';
import { scrape } from '../support/metrics.ts';
import { testNamespace, useAdmin } from '../support/namespaces.ts';

describe('operator process faults', () => {
  const admin = useAdmin();
  const namespace = async (t: TestContext, prefix: string): Promise<string> =>
    (await testNamespace(t, admin, prefix)).name;

  it('converges after being killed in the middle of a burst: no Echo without its one Deployment', async (t) => {
    const ns = await namespace(t, 'killed-mid-burst');
    const args = [`--kubeconfig=${clusterKubeconfig()}`, `--namespaces=${ns}`];
    const wanted = new Map(
      Array.from({ length: 200 }, (_, i) => [`echo-${String(i)}`, 1 + (i % 3)]),
    );
    const first = startMain(args);
    await whenReady(first);
    const creating = createEchoes(admin, ns, wanted);
    const made = await eventually(
      'a quarter of the Deployments',
      async () => {
        const n = (await listDeployments(admin, ns)).length;
        return n >= wanted.size / 4 ? n : undefined;
      },
      120_000,
      50,
    );
    first.child.kill('SIGKILL');
    await first.exited;
    await creating;
    const atKill = (await listDeployments(admin, ns)).length;
    assert.ok(atKill < wanted.size, 'killed before the burst was done');

    const restartedAt = Date.now();
    const second = startMain(args);
    try {
      await eventually(
        'every Echo with exactly one Deployment of its own, and nothing else',
        async () => ((await fleetDifferences(admin, ns, wanted)).length === 0 ? true : undefined),
        180_000,
      );
      t.diagnostic(
        `killed with ${String(made)}–${String(atKill)} of ${String(wanted.size)} Deployments; ` +
          `restart → converged: ${String(Date.now() - restartedAt)} ms`,
      );
    } finally {
      second.child.kill('SIGTERM');
    }
    assert.equal(await second.exited, 0);
  });

  it('reports refused credentials, not ready, retrying with backoff; recovers when the token is rotated', async (t) => {
    const ns = await namespace(t, 'revoked');
    const account = 'echo-operator';
    await grantRole(admin, ns, `${ns}/${account}`, OPERATOR_RULES);
    const tokenFile = join(dirname(clusterKubeconfig()), `${ns}.token`);
    const issueToken = async (): Promise<void> => {
      const review = await admin.request<{ status: { token: string } }>({
        method: 'POST',
        path: `/api/v1/namespaces/${ns}/serviceaccounts/${account}/token`,
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: {} },
      });
      await writeFile(tokenFile, review.status.token, { mode: 0o600 });
    };
    await issueToken();
    // A token file, as a pod's projected ServiceAccount token is: the operator reads it again
    // when the API server refuses what it holds.
    const { server, caFile } = clusterAddress();
    const kubeconfig = join(dirname(clusterKubeconfig()), `${ns}.kubeconfig`);
    await writeKubeconfig(kubeconfig, server, caFile, { tokenFile });
    const p = startMain([`--kubeconfig=${kubeconfig}`, `--namespaces=${ns}`]);
    try {
      const port = await whenReady(p);
      await createEchoes(admin, ns, new Map([['before', 1]]));
      await eventually('the first Echo converged', async () =>
        (await fleetDifferences(admin, ns, new Map([['before', 1]]))).length === 0
          ? true
          : undefined,
      );

      // Deleting the ServiceAccount revokes every token issued for it.
      await admin.request({
        method: 'DELETE',
        path: `/api/v1/namespaces/${ns}/serviceaccounts/${account}`,
      });
      const revokedAt = Date.now();
      // The API server caches a token's authentication for 10 s: wait until it refuses this one.
      const probe = KubeClient.fromFile(kubeconfig);
      try {
        await eventually('the token refused', () =>
          probe.request({ path: `/apis/example.com/v1/namespaces/${ns}/echoes` }).then(
            () => undefined,
            (err: unknown) => (err instanceof ApiError && err.code === 401 ? true : undefined),
          ),
        );
      } finally {
        await probe.close();
      }
      // Its open watches were authenticated when they started and still deliver: the operator
      // learns of this Echo, and every write it tries is refused.
      await createEchoes(admin, ns, new Map([['during', 2]]));
      const readyz = async (): Promise<string> =>
        (await fetch(`http://127.0.0.1:${String(port)}/readyz`)).text();
      await eventually('readiness failing on refused credentials', async () =>
        (await readyz()).includes('[-]credentials-accepted failed') ? true : undefined,
      );
      await eventually('a log line naming the 401', () =>
        Promise.resolve(p.stdout().includes('401 Unauthorized') ? true : undefined),
      );
      // A measuring window: the refusals are counted over a stretch long enough for a hot loop to
      // show (hundreds a second) and bounded by what the retry limits allow in that stretch.
      await sleep(8000);
      const refused = (await scrape(port)).total(
        'echo_operator_kubernetes_requests_total',
        (l) => l.code === '401',
      );
      // Every refusal came after the revocation: the window runs from there to the scrape.
      const windowMs = Date.now() - revokedAt;
      // Each attempt is refused twice (the client reloads its token once and tries again): the
      // reconciles of both Echoes as the work queue's backoff lets them start, and the informers'
      // lists and watches, should they reopen, as theirs does.
      const bound = 2 * (queueAttemptsWithin(windowMs, 2) + 2 * informerAttemptsWithin(windowMs));
      t.diagnostic(
        `${String(refused)} requests refused 401 in ${(windowMs / 1000).toFixed(1)} s (bound ${String(bound)})`,
      );
      assert.ok(refused >= 2, 'the writes were refused');
      assert.ok(refused <= bound, `${String(refused)} refusals > ${String(bound)}`);
      assert.equal(p.child.exitCode, null, 'still running');

      const rotatedAt = Date.now();
      // The same name again (a new uid): its RoleBinding, which names it, applies once more.
      await admin.request({
        method: 'POST',
        path: `/api/v1/namespaces/${ns}/serviceaccounts`,
        body: { metadata: { name: account } },
      });
      await issueToken();
      await eventually(
        'the Echo created while refused, converged with the rotated token',
        async () =>
          (
            await fleetDifferences(
              admin,
              ns,
              new Map([
                ['before', 1],
                ['during', 2],
              ]),
            )
          ).length === 0
            ? true
            : undefined,
        120_000,
      );
      await eventually('ready again', async () =>
        (await readyz()).includes('[-]') ? undefined : true,
      );
      t.diagnostic(`token rotated → converged and ready: ${String(Date.now() - rotatedAt)} ms`);
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);
  });
});
