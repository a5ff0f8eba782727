// Runs the operator in the test process against the shared cluster, scoped to the test's own
// namespaces: a Manager with the Echo controller, as main builds it, with its request counters and
// caches at hand.
import type { ClientOptions, KubeClient } from '../../src/kube/client.ts';
import { loadConnection } from '../../src/kube/kubeconfig/kubeconfig.ts';
import type { RequestCounts } from '../../src/kube/request-counts.ts';
import {
  REPORTING_CONTROLLER,
  echoController,
  type EchoCaches,
  type EchoControllerOptions,
} from '../../src/echo/controller.ts';
import type { ControllerObserver } from '../../src/runtime/controller.ts';
import type { InformerObserver } from '../../src/runtime/cache/informer.ts';
import { Manager, type ManagedController } from '../../src/runtime/manager.ts';
import type { QueueObserver } from '../../src/runtime/workqueue.ts';
import { createLoggers } from '../../src/telemetry/logger.ts';
import { clusterKubeconfig } from './kube.ts';

export interface RunningOperator {
  manager: Manager;
  operator: ManagedController<EchoCaches>;
  counts: RequestCounts;
  client: KubeClient;
  stop(): Promise<void>;
}

export interface OperatorOverrides extends EchoControllerOptions {
  concurrency?: number;
  resyncMs?: number;
  idleTimeoutMs?: number;
  watchTimeoutSeconds?: number;
  queueObserver?: QueueObserver;
  controllerObserver?: ControllerObserver;
  informerObserver?: (informer: string) => InformerObserver;
}

export async function startOperator(
  namespaces: string[],
  overrides: OperatorOverrides = {},
  kubeconfig = clusterKubeconfig(),
  clientOptions: ClientOptions = {},
): Promise<RunningOperator> {
  const { queueObserver, controllerObserver, informerObserver, progressStatusDelayMs } = overrides;
  const loggers = createLoggers(process.env.ECHO_TEST_LOG ?? 'warn', process.stderr);
  const manager = new Manager({
    connection: loadConnection({ path: kubeconfig }),
    client: clientOptions,
    namespaces,
    instance: 'test',
    reportingController: REPORTING_CONTROLLER,
    concurrency: overrides.concurrency ?? 4,
    resyncMs: overrides.resyncMs ?? 10 * 60_000,
    log: loggers.module,
    observers: {
      ...(queueObserver ? { queue: () => queueObserver } : {}),
      ...(controllerObserver ? { controller: () => controllerObserver } : {}),
      ...(informerObserver ? { informer: informerObserver } : {}),
    },
    ...(overrides.idleTimeoutMs ? { idleTimeoutMs: overrides.idleTimeoutMs } : {}),
    ...(overrides.watchTimeoutSeconds
      ? { watchTimeoutSeconds: overrides.watchTimeoutSeconds }
      : {}),
  });
  const operator = manager.add(
    echoController(progressStatusDelayMs === undefined ? {} : { progressStatusDelayMs }),
  );
  const stop = new AbortController();
  const running = manager.run(stop.signal);
  await Promise.race([operator.whenSynced(), running]);
  return {
    manager,
    operator,
    counts: manager.counts,
    client: manager.client,
    stop: async () => {
      stop.abort();
      await running;
    },
  };
}
