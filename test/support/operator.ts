// Runs the operator in the test process against the shared cluster, scoped to the test's own
// namespaces, with its request counters at hand.
import { echoCrd } from '../../src/echo/api.ts';
import { KubeClient, type ClientOptions } from '../../src/kube/client.ts';
import { RequestCounts } from '../../src/kube/request-counts.ts';
import { EchoOperator, type OperatorOptions } from '../../src/operator.ts';
import { createLoggers } from '../../src/telemetry/logger.ts';
import { clusterKubeconfig, eventually } from './kube.ts';

/** Installs (or updates) the Echo CRD and waits until the API serves it. */
export async function installCrd(admin: KubeClient): Promise<void> {
  await admin.apply(
    '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/echoes.example.com',
    echoCrd(),
    'echo-tests',
  );
  await eventually('the Echo CRD to be established', async () => {
    const crd = await admin.request<{
      status?: { conditions?: { type: string; status: string }[] };
    }>({
      path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/echoes.example.com',
    });
    return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')
      ? true
      : undefined;
  });
}

export interface RunningOperator {
  operator: EchoOperator;
  counts: RequestCounts;
  client: KubeClient;
  stop(): Promise<void>;
}

export async function startOperator(
  namespaces: string[],
  overrides: Partial<OperatorOptions> = {},
  kubeconfig = clusterKubeconfig(),
  clientOptions: ClientOptions = {},
): Promise<RunningOperator> {
  const counts = new RequestCounts();
  const client = await KubeClient.fromFile(kubeconfig, {
    ...clientOptions,
    onResponse: counts.record,
  });
  const loggers = createLoggers(process.env.ECHO_TEST_LOG ?? 'warn', 'text', process.stderr);
  const operator = new EchoOperator({
    client,
    namespaces,
    concurrency: 4,
    resyncMs: 10 * 60_000,
    instance: 'test',
    log: loggers.module,
    ...overrides,
  });
  const stop = new AbortController();
  const running = operator.run(stop.signal);
  await Promise.race([operator.echoes.whenSynced(), running]);
  await operator.deployments.whenSynced();
  return {
    operator,
    counts,
    client,
    stop: async () => {
      stop.abort();
      await running;
      await client.close();
    },
  };
}
