// The Echo controller, declared: it reconciles Echoes and owns the Deployments they control. The
// runtime's builder does the wiring (informers, work queue, leader gating, resync, Events).
import { isDeepStrictEqual } from 'node:util';
import { newController, type ManagedController, type RuntimeOptions } from '../runtime/builder.ts';
import { API_VERSION, GROUP, KIND, PLURAL, type Echo } from './api.ts';
import { trimDeployment, trimEcho, type CachedDeployment } from './projection.ts';
import { MANAGED_BY_SELECTOR } from './desired.ts';
import { decodeDeployment } from './deployment-protobuf.ts';
import { echoReconciler } from './reconciler.ts';

export const CONTROLLER_NAME = 'echo';

const ECHOES = { apiVersion: API_VERSION, kind: KIND, plural: PLURAL } as const;
const DEPLOYMENTS = { apiVersion: 'apps/v1', kind: 'Deployment', plural: 'deployments' } as const;

export interface EchoControllerOptions extends RuntimeOptions {
  /** Counts delete-and-recreate fallbacks (an immutable field changed). */
  onRecreate?: () => void;
  /** Told each Echo's spec.replicas as it is reconciled, and undefined once it is gone. */
  onDesiredReplicas?: (key: string, replicas: number | undefined) => void;
  /** How long a rollout's progress waits to be written (echoReconciler's option). */
  progressStatusDelayMs?: number;
}

export type EchoController = ManagedController<{ echoes: Echo; deployments: CachedDeployment }>;

export function echoController(options: EchoControllerOptions): EchoController {
  const { onRecreate, onDesiredReplicas, progressStatusDelayMs } = options;
  return newController(
    { name: CONTROLLER_NAME, reportingController: `${GROUP}/echo-operator` },
    options,
  )
    .for(ECHOES, { transform: trimEcho, changed: echoChanged, notServed: crdMissing })
    .owns(DEPLOYMENTS, {
      labelSelector: MANAGED_BY_SELECTOR,
      transform: trimDeployment,
      protobuf: decodeDeployment,
    })
    .complete(({ caches, recorder }) =>
      echoReconciler({
        client: options.client,
        echoes: caches.echoes,
        deployments: caches.deployments,
        recorder,
        log: options.log('reconciler'),
        ...(onRecreate ? { onRecreate } : {}),
        ...(onDesiredReplicas ? { onDesiredReplicas } : {}),
        ...(progressStatusDelayMs === undefined ? {} : { progressStatusDelayMs }),
      }),
    );
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
    'kubectl apply -f charts/echo-operator/crds/'
  );
}
