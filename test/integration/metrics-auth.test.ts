// The secure metrics port against the local control plane: a Manager running as a ServiceAccount
// allowed to create TokenReviews and SubjectAccessReviews serves /metrics over TLS to a token whose
// ServiceAccount is bound to `get` on /metrics (as the chart's metrics-reader ClusterRole grants),
// and answers 401 without a token or with a forged one, 403 to a ServiceAccount without the
// binding; the probes' port serves no /metrics. Decisions are cached, so scrapes after the first
// cost no request; reviews are no writes. An operator refused the reviews, or cut off from the API
// server, answers 500 or 503 with a plain message and goes on serving.
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePorts } from '../../hack/cluster/process.ts';
import { writeKubeconfig } from '../../hack/cluster/cluster.ts';
import { loadConnection } from '../../src/kube/kubeconfig/kubeconfig.ts';
import { Manager } from '../../src/runtime/manager.ts';
import { createLoggers } from '../../src/telemetry/logger.ts';
import {
  clusterAddress,
  clusterKubeconfig,
  serviceAccountKubeconfig,
  serviceAccountToken,
} from '../support/kube.ts';
import { getMetrics, promtoolCheck, scrape, type MetricsTarget } from '../support/metrics.ts';
import { useNamespace } from '../support/namespaces.ts';

const TOKEN_REVIEWS = 'tokenreviews.authentication.k8s.io';
const ACCESS_REVIEWS = 'subjectaccessreviews.authorization.k8s.io';

describe('the secure metrics port, authorized by the API server', () => {
  const env = useNamespace('metrics-auth');
  const { admin } = env;
  const rbac = '/apis/rbac.authorization.k8s.io/v1';
  const managers: Manager[] = [];
  let operator: Manager;
  let healthPort: number;
  let metricsPort: number;
  let readerToken: string;
  let strangerToken: string;

  const serviceAccount = (name: string): Promise<unknown> =>
    admin.request({
      method: 'POST',
      path: `/api/v1/namespaces/${env.ns.name}/serviceaccounts`,
      body: { metadata: { name } },
    });

  /** A ClusterRole with `rules` bound to the ServiceAccount `account` of the test's namespace. */
  const clusterGrant = async (account: string, rules: object[]): Promise<void> => {
    const name = `${env.ns.name}-${account}`;
    await admin.request({
      method: 'POST',
      path: `${rbac}/clusterroles`,
      body: { metadata: { name }, rules },
    });
    await admin.request({
      method: 'POST',
      path: `${rbac}/clusterrolebindings`,
      body: {
        metadata: { name },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name },
        subjects: [{ kind: 'ServiceAccount', name: account, namespace: env.ns.name }],
      },
    });
    // Cluster-wide: the namespace's deletion does not take them.
    env.cleanup(async () => {
      for (const kind of ['clusterrolebindings', 'clusterroles'])
        await admin.request({ method: 'DELETE', path: `${rbac}/${kind}/${name}` });
    });
  };

  /** A Manager on `kubeconfig` serving probes and secure metrics on ports of its own, listening. */
  const secureManager = async (kubeconfig: string): Promise<Manager> => {
    const manager = new Manager({
      connection: loadConnection({ path: kubeconfig }),
      namespaces: [env.ns.name],
      instance: hostname(),
      reportingController: 'example.com/metrics-auth-test',
      concurrency: 1,
      resyncMs: 600_000,
      log: createLoggers('silent').module,
      metrics: { prefix: 'echo_operator_' },
      serve: { port: 0, bindAddress: '127.0.0.1', metrics: { port: 0, secure: true } },
    });
    managers.push(manager);
    await manager.listen();
    return manager;
  };

  const secure = (port: number, token?: string): MetricsTarget => ({
    port,
    secure: true,
    ...(token ? { token } : {}),
  });

  const reviews = (manager: Manager, resource: string): number =>
    manager.counts
      .all()
      .filter((c) => c.verb === 'create' && c.resource === resource)
      .reduce((n, c) => n + c.count, 0);

  before(async () => {
    for (const name of ['operator', 'reader', 'stranger', 'unprivileged'])
      await serviceAccount(name);
    await clusterGrant('operator', [
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      {
        apiGroups: ['authorization.k8s.io'],
        resources: ['subjectaccessreviews'],
        verbs: ['create'],
      },
    ]);
    await clusterGrant('reader', [{ nonResourceURLs: ['/metrics'], verbs: ['get'] }]);
    readerToken = await serviceAccountToken(admin, env.ns.name, 'reader');
    strangerToken = await serviceAccountToken(admin, env.ns.name, 'stranger');
    operator = await secureManager(await serviceAccountKubeconfig(admin, env.ns.name, 'operator'));
    healthPort = (await operator.listen()) ?? 0;
    metricsPort = operator.metricsPort ?? 0;
    assert.notEqual(healthPort, metricsPort);
  });

  after(async () => {
    // A Manager run with its signal aborted only closes what it opened.
    for (const manager of managers) await manager.run(AbortSignal.abort());
  });

  it('serves /metrics over TLS to a ServiceAccount allowed get on /metrics', async () => {
    const answer = await getMetrics(secure(metricsPort, readerToken));
    assert.equal(answer.status, 200, answer.body);
    promtoolCheck(answer.body);
    const metrics = await scrape(secure(metricsPort, readerToken));
    assert.ok(metrics.samples.some((s) => s.name === 'echo_operator_kubernetes_requests_total'));
  });

  it('answers 401 without a token or with a forged one, 403 to a ServiceAccount not bound', async () => {
    const anonymous = await getMetrics(secure(metricsPort));
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.body, /needs a bearer token/);
    const forged = await getMetrics(secure(metricsPort, `${readerToken.slice(0, -4)}AAAA`));
    assert.equal(forged.status, 401);
    const stranger = await getMetrics(secure(metricsPort, strangerToken));
    assert.equal(stranger.status, 403);
    assert.equal(
      stranger.body,
      `Forbidden: system:serviceaccount:${env.ns.name}:stranger may not get /metrics (RBAC: nonResourceURLs ["/metrics"], verb get)\n`,
    );
  });

  it('keeps the probes on their own port, plain, and /metrics off it', async () => {
    assert.equal((await fetch(`http://127.0.0.1:${String(healthPort)}/readyz`)).status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${String(healthPort)}/livez`)).status, 200);
    assert.equal((await getMetrics(healthPort)).status, 404);
  });

  it('reviews a token once, not at every scrape, and counts no review as a write', async () => {
    const before = {
      token: reviews(operator, TOKEN_REVIEWS),
      access: reviews(operator, ACCESS_REVIEWS),
    };
    assert.ok(before.token >= 1 && before.access >= 1);
    for (let i = 0; i < 3; i++) await scrape(secure(metricsPort, readerToken));
    assert.deepEqual(
      { token: reviews(operator, TOKEN_REVIEWS), access: reviews(operator, ACCESS_REVIEWS) },
      before,
    );
    assert.equal(operator.counts.writes(), 0);
    const scraped = await scrape(secure(metricsPort, readerToken));
    assert.equal(
      scraped.value('echo_operator_kubernetes_requests_total', {
        verb: 'create',
        resource: TOKEN_REVIEWS,
        code: '201',
      }),
      before.token,
    );
  });

  it('answers 500 naming the missing permission when the operator may not review tokens', async () => {
    const unprivileged = await secureManager(
      await serviceAccountKubeconfig(admin, env.ns.name, 'unprivileged'),
    );
    const port = unprivileged.metricsPort ?? 0;
    const refused = await getMetrics(secure(port, readerToken));
    assert.equal(refused.status, 500);
    assert.equal(
      refused.body,
      "metrics: the API server refused the operator's token review (403 Forbidden): the operator needs create on tokenreviews and subjectaccessreviews\n",
    );
    assert.equal((await getMetrics(secure(port))).status, 401, 'still serving');
  });

  it('answers 503 when the API server cannot be reached, and goes on serving', async () => {
    const [closed] = (await freePorts(1)) as [number];
    const kubeconfig = join(env.kubeconfig, '..', `unreachable-${String(closed)}.kubeconfig`);
    await writeKubeconfig(
      kubeconfig,
      `https://127.0.0.1:${String(closed)}`,
      clusterAddress(clusterKubeconfig()).caFile,
      { token: readerToken },
    );
    const cutOff = await secureManager(kubeconfig);
    const port = cutOff.metricsPort ?? 0;
    const unavailable = await getMetrics(secure(port, readerToken));
    assert.equal(unavailable.status, 503);
    assert.equal(
      unavailable.body,
      'metrics: the API server could not review the token; try again\n',
    );
    assert.equal((await getMetrics(secure(port))).status, 401, 'still serving');
  });
});
