// Runs the operator in the test process against the shared cluster, scoped to the test's own
// namespaces, with its request counters at hand.
import { KubeClient, type ClientOptions } from '../../src/kube/client.ts';
import { RequestCounts } from '../../src/kube/request-counts.ts';
import {
  echoController,
  type EchoController,
  type EchoControllerOptions,
} from '../../src/echo/controller.ts';
import { createLoggers } from '../../src/telemetry/logger.ts';
import { clusterKubeconfig } from './kube.ts';

export interface RunningOperator {
  operator: EchoController;
  counts: RequestCounts;
  client: KubeClient;
  stop(): Promise<void>;
}

export async function startOperator(
  namespaces: string[],
  overrides: Partial<EchoControllerOptions> = {},
  kubeconfig = clusterKubeconfig(),
  clientOptions: ClientOptions = {},
): Promise<RunningOperator> {
  const counts = new RequestCounts();
  const client = KubeClient.fromFile(kubeconfig, {
    ...clientOptions,
    onResponse: counts.record,
  });
  const loggers = createLoggers(process.env.ECHO_TEST_LOG ?? 'warn', process.stderr);
  const operator = echoController({
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
  await Promise.race([operator.caches.echoes.whenSynced(), running]);
  await operator.caches.deployments.whenSynced();
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
