// Traces and logs of the operator process, read back from a real trace backend (Jaeger, built from
// Go modules): a span per reconcile with the Echo's namespace, name and generation, a child span per
// API call, errors recorded on both; JSON log lines that carry the reconcile's trace id and never
// the bearer token. The operator runs as a ServiceAccount that may not write Deployments in one of
// its two namespaces, so every run holds a success and a failure.
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import type { Echo } from '../../src/echo/api.ts';
import { loadConnection } from '../../src/kube/kubeconfig/kubeconfig.ts';
import { isReady } from '../support/fixtures.ts';
import { echoManifest } from '../support/echo.ts';
import { startJaeger, tag, type Jaeger, type JaegerSpan } from '../../hack/cluster/jaeger.ts';
import {
  eventually,
  grantRole,
  serviceAccountKubeconfig,
  type PolicyRule,
} from '../support/kube.ts';
import { startMain, whenReady } from '../support/main-process.ts';
import { scrape, type Sample } from '../support/metrics.ts';
import { testNamespace, useAdmin } from '../support/namespaces.ts';

const READ_ECHOES: PolicyRule[] = [
  { apiGroups: ['example.com'], resources: ['echoes'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['example.com'], resources: ['echoes/status'], verbs: ['patch'] },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
];
const DEPLOYMENTS_READ: PolicyRule = {
  apiGroups: ['apps'],
  resources: ['deployments'],
  // get: a Deployment the cache does not hold is read before one is created.
  verbs: ['get', 'list', 'watch'],
};
const DEPLOYMENTS_WRITE: PolicyRule[] = [
  {
    apiGroups: ['apps'],
    resources: ['deployments'],
    // Server-side apply of an object that does not exist yet is a create.
    verbs: ['create', 'patch', 'delete'],
  },
  // An owner reference with blockOwnerDeletion, under OwnerReferencesPermissionEnforcement.
  { apiGroups: ['example.com'], resources: ['echoes/finalizers'], verbs: ['update'] },
];

const APPLY_DEPLOYMENT = 'PATCH /apis/apps/v1/namespaces/{namespace}/deployments/{name}';

interface LogLine {
  msg: string;
  echo?: string;
  trace_id?: string;
  span_id?: string;
}

/** The reconcile spans of one Echo, each with its children, from every trace Jaeger holds. */
async function reconcilesOf(
  jaeger: Jaeger,
  namespace: string,
  name: string,
): Promise<{ reconcile: JaegerSpan; children: JaegerSpan[] }[]> {
  const traces = await jaeger.traces('echo-operator', 'reconcile');
  return traces.flatMap((spans) =>
    spans
      .filter(
        (s) =>
          s.operationName === 'reconcile' &&
          tag(s, 'k8s.namespace.name') === namespace &&
          tag(s, 'k8s.object.name') === name,
      )
      .map((reconcile) => ({
        reconcile,
        children: spans.filter((c) =>
          c.references.some((r) => r.refType === 'CHILD_OF' && r.spanID === reconcile.spanID),
        ),
      })),
  );
}

describe('tracing and logs', () => {
  const admin = useAdmin();
  let jaeger: Jaeger;

  before(async () => {
    jaeger = await startJaeger();
  });

  after(async () => {
    await jaeger.stop();
  });

  /** Two namespaces for a ServiceAccount: in `allowed` it may write Deployments, in `denied` not. */
  const setUp = async (t: TestContext, prefix: string) => {
    const allowed = await testNamespace(t, admin, prefix);
    const denied = await testNamespace(t, admin, `${prefix}-denied`);
    const account = `${allowed.name}/operator`;
    await grantRole(admin, allowed.name, account, [
      ...READ_ECHOES,
      DEPLOYMENTS_READ,
      ...DEPLOYMENTS_WRITE,
    ]);
    await grantRole(admin, denied.name, account, [...READ_ECHOES, DEPLOYMENTS_READ]);
    const kubeconfig = await serviceAccountKubeconfig(admin, allowed.name, 'operator');
    const { headers } = await loadConnection({ path: kubeconfig }).credentials();
    const token = headers.authorization?.replace(/^Bearer /, '');
    assert.ok(token, 'the ServiceAccount kubeconfig holds a token');
    return {
      allowed: allowed.name,
      denied: denied.name,
      kubeconfig,
      token,
    };
  };

  const createEcho = (namespace: string, name: string, replicas: number): Promise<unknown> =>
    admin.request({
      method: 'POST',
      path: `/apis/example.com/v1/namespaces/${namespace}/echoes`,
      body: echoManifest({ name, replicas }),
    });

  it('sends a span per reconcile with its API calls as children over OTLP/gRPC, and logs its trace id', async (t) => {
    const env = await setUp(t, 'traced');
    const p = startMain([
      `--kubeconfig=${env.kubeconfig}`,
      `--namespaces=${env.allowed},${env.denied}`,
      `--otlp-endpoint=${jaeger.grpcEndpoint}`,
      '--otlp-protocol=grpc',
      '--trace-sample-ratio=1',
      '--log-filter=info',
    ]);
    let buckets: Sample[];
    try {
      const port = await whenReady(p);
      await createEcho(env.allowed, 'traced', 2);
      await createEcho(env.denied, 'refused', 1);
      await eventually('the allowed Echo to be Ready', async () => {
        const echo = await admin.request<Echo>({
          path: `/apis/example.com/v1/namespaces/${env.allowed}/echoes/traced`,
        });
        return isReady(echo, 2) ? true : undefined;
      });
      await eventually('a refused reconcile to be logged', () =>
        Promise.resolve(p.stdout().includes('reconcile failed') ? true : undefined),
      );
      const metrics = await scrape(port, 'application/openmetrics-text; version=1.0.0');
      buckets = metrics.samples.filter(
        (s) => s.name === 'controller_runtime_reconcile_time_seconds_bucket',
      );
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);

    // Spans still batched at SIGTERM were flushed before exit, so they are all in Jaeger now.
    const allowed = await reconcilesOf(jaeger, env.allowed, 'traced');
    const applied = allowed.find((r) =>
      r.children.some((c) => c.operationName === APPLY_DEPLOYMENT),
    );
    assert.ok(
      applied,
      `a reconcile of traced applied its Deployment; got ${String(allowed.length)} reconciles`,
    );
    assert.equal(tag(applied.reconcile, 'k8s.object.generation'), 1);
    assert.equal(tag(applied.reconcile, 'controller.name'), 'echo');
    // A new Echo's first status waits for its rollout's result: the applying reconcile requeues,
    // and a later one writes Ready.
    assert.equal(tag(applied.reconcile, 'reconcile.result'), 'requeue_after');
    assert.ok(
      allowed.some((r) => tag(r.reconcile, 'reconcile.result') === 'success'),
      'a later reconcile of traced succeeded',
    );
    const apply = applied.children.find((c) => c.operationName === APPLY_DEPLOYMENT)!;
    assert.equal(tag(apply, 'http.response.status_code'), 201, 'created');
    assert.equal(tag(apply, 'k8s.api.verb'), 'apply');
    assert.equal(tag(apply, 'k8s.api.resource'), 'deployments.apps');
    assert.ok(
      allowed.some((r) =>
        r.children.some((c) => c.operationName.endsWith('/echoes/{name}/status')),
      ),
      'the status write is a child span too',
    );

    const refused = await reconcilesOf(jaeger, env.denied, 'refused');
    const failed = refused.find((r) => tag(r.reconcile, 'reconcile.result') === 'error');
    assert.ok(failed, 'the refused reconcile is traced');
    assert.equal(
      tag(failed.reconcile, 'error'),
      true,
      'the error is recorded on the reconcile span',
    );
    const forbidden = failed.children.find((c) => c.operationName === APPLY_DEPLOYMENT);
    assert.equal(forbidden && tag(forbidden, 'http.response.status_code'), 403);
    assert.equal(forbidden && tag(forbidden, 'error'), true);

    // The reconcile duration histogram links to traces the backend holds (OpenMetrics exemplars).
    const exemplarTraces = buckets.flatMap((b) => b.exemplar?.labels.trace_id ?? []);
    assert.ok(exemplarTraces.length > 0, 'reconcile duration buckets carry exemplars');
    const known = new Set(
      (await jaeger.traces('echo-operator', 'reconcile')).flatMap((t) => t.map((s) => s.traceID)),
    );
    for (const id of exemplarTraces) assert.ok(known.has(id), `exemplar trace ${id} is in Jaeger`);

    // Every stdout line is a JSON log entry; the reconcile's lines carry its trace id.
    const lines = p
      .stdout()
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as LogLine);
    const appliedLine = lines.find(
      (l) => l.msg === 'Deployment applied' && l.echo === `${env.allowed}/traced`,
    );
    assert.equal(appliedLine?.trace_id, applied.reconcile.traceID);
    assert.equal(appliedLine.span_id, applied.reconcile.spanID);
    const failedLines = lines.filter(
      (l) => l.msg.startsWith('reconcile failed') && l.echo === `${env.denied}/refused`,
    );
    assert.ok(failedLines.length > 0);
    const tracedFailures = new Set(refused.map((r) => r.reconcile.traceID));
    for (const l of failedLines) assert.ok(l.trace_id && tracedFailures.has(l.trace_id));
    assert.ok(!p.output().includes(env.token), 'the bearer token never appears in the output');
  });

  it('sends spans over OTLP/HTTP as well', async (t) => {
    const env = await setUp(t, 'traced-http');
    const p = startMain([
      `--kubeconfig=${env.kubeconfig}`,
      `--namespaces=${env.allowed}`,
      `--otlp-endpoint=${jaeger.httpEndpoint}`,
      '--otlp-protocol=http/json',
      '--trace-sample-ratio=1',
    ]);
    try {
      await whenReady(p);
      await createEcho(env.allowed, 'over-http', 1);
      await eventually('a traced reconcile applying the Deployment', async () => {
        const found = await reconcilesOf(jaeger, env.allowed, 'over-http');
        return found.some((r) => r.children.some((c) => c.operationName === APPLY_DEPLOYMENT))
          ? true
          : undefined;
      });
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);
  });

  it('logs no trace ids and sends nothing when tracing is off', async (t) => {
    const env = await setUp(t, 'untraced');
    // The OpenTelemetry SDK's own variables point at this Jaeger: were tracing on by mistake
    // (an SDK started without --otlp-endpoint), its spans would land where the test looks.
    const p = startMain([`--kubeconfig=${env.kubeconfig}`, `--namespaces=${env.allowed}`], {
      OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.httpEndpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_TRACES_SAMPLER: 'always_on',
    });
    try {
      await whenReady(p);
      await createEcho(env.allowed, 'plain', 1);
      await eventually('the Deployment to be applied', () =>
        Promise.resolve(p.stdout().includes('Deployment applied') ? true : undefined),
      );
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);
    assert.doesNotMatch(p.stdout(), /trace_id/);
    // Spans are flushed before exit (see above), so any sent would be in Jaeger by now.
    assert.deepEqual(await reconcilesOf(jaeger, env.allowed, 'plain'), []);
  });
});
