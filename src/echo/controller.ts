// The Echo controller, declared: it reconciles Echoes and owns the Deployments they control. The
// runtime's Manager builds and runs it (informers, work queue, leader gating, resync, Events).
import { isDeepStrictEqual } from 'node:util';
import { DEPLOYMENTS } from '../kube/resource.ts';
import { newController, type ControllerDeclaration } from '../runtime/builder.ts';
import { ECHOES, GROUP, PLURAL, type Echo } from './api.ts';
import { decodeDeployment } from './deployment-protobuf.ts';
import { MANAGED_BY_SELECTOR } from './desired.ts';
import { echoMetrics } from './metrics.ts';
import { trimDeployment, trimEcho, type CachedDeployment } from './projection.ts';
import { echoReconciler } from './reconciler.ts';

export const CONTROLLER_NAME = 'echo';
export const REPORTING_CONTROLLER = `${GROUP}/echo-operator`;

export interface EchoControllerOptions {
  /** How long a rollout's progress waits to be written (echoReconciler's option). */
  progressStatusDelayMs?: number;
}

// A type, not an interface: the builder's cache map needs its implicit index signature.
// eslint-disable-next-line @typescript-eslint/consistent-type-definitions
export type EchoCaches = { echoes: Echo; deployments: CachedDeployment };

export function echoController(
  options: EchoControllerOptions = {},
): ControllerDeclaration<EchoCaches, Echo> {
  const { progressStatusDelayMs } = options;
  return newController({ name: CONTROLLER_NAME, reportingController: REPORTING_CONTROLLER })
    .for(ECHOES, { transform: trimEcho, changed: echoChanged, notServed: crdMissing })
    .owns(DEPLOYMENTS, {
      labelSelector: MANAGED_BY_SELECTOR,
      transform: trimDeployment,
      protobuf: decodeDeployment,
    })
    .complete(({ caches, client, recorder, log, metrics }) => {
      const series = metrics && echoMetrics(metrics);
      return echoReconciler({
        client,
        echoes: caches.echoes,
        deployments: caches.deployments,
        recorder,
        log: log('reconciler'),
        ...(series ? { onRecreate: series.recreated, onDesiredReplicas: series.desired } : {}),
        ...(progressStatusDelayMs === undefined ? {} : { progressStatusDelayMs }),
      });
    });
}

/**
 * Whether an Echo update needs a reconcile: a change of spec, labels or deletion, or of status
 * (the operator's own status writes arrive flagged `ownWrite` and are dropped before this): a
 * status edited by someone else, or changed while a watch was down, is put right at once.
 */
export function echoChanged(old: Echo, next: Echo): boolean {
  return (
    old.metadata.generation !== next.metadata.generation ||
    old.metadata.deletionTimestamp !== next.metadata.deletionTimestamp ||
    !isDeepStrictEqual(old.metadata.labels ?? {}, next.metadata.labels ?? {}) ||
    !isDeepStrictEqual(old.status ?? {}, next.status ?? {})
  );
}

export function crdMissing(server: string): string {
  return (
    `the Echo CRD (${PLURAL}.${GROUP}) is not installed in ${server}: ` +
    'kubectl apply -f charts/echo-operator/files/crds/'
  );
}
