// Reconciles one Echo: reads the Echo and its Deployment from the caches (never a GET), applies
// the desired Deployment only when the cache shows a difference, and writes status only when it
// changed. So an Echo in steady state costs no API call at all, resyncs included.
import { trace } from '@opentelemetry/api';
import type { KubeClient } from '../kube/client.ts';
import { isInvalid, isNamespaceTerminating, isNotFound, type ApiError } from '../kube/errors.ts';
import type { Reconcile } from '../runtime/controller.ts';
import type { EventRecorder, ObjectReference } from '../runtime/events.ts';
import type { Informer, KubeObject } from '../runtime/informer.ts';
import type { Logger } from '../telemetry/logger.ts';
import { API_VERSION, KIND, PLURAL, type Echo } from './api.ts';
import {
  APPLIED_HASH_ANNOTATION,
  FIELD_MANAGER,
  deploymentDrift,
  desiredDeployment,
  type DesiredDeployment,
} from './desired.ts';
import {
  desiredStatus,
  statusChanged,
  statusEvent,
  type Blocker,
  type ObservedDeployment,
} from './status.ts';

/** What the Deployment cache keeps of each Deployment: what desired.ts compares and status.ts reads. */
export type CachedDeployment = KubeObject & ObservedDeployment & { spec?: Record<string, unknown> };

export interface EchoReconcilerOptions {
  client: KubeClient;
  /** Read for every decision; told of every write (assume), so the next read reflects it. */
  echoes: Pick<Informer<Echo>, 'get' | 'assume'>;
  deployments: Pick<Informer<CachedDeployment>, 'get' | 'assume'>;
  recorder: EventRecorder;
  now?: () => Date;
  /** Counts delete-and-recreate fallbacks (an immutable field changed). */
  onRecreate?: () => void;
  /** Told each Echo's spec.replicas as it is reconciled, and undefined once it is gone. */
  onDesiredReplicas?: (key: string, replicas: number | undefined) => void;
  log?: Logger;
}

const BLOCKED_RETRY_MS = 60_000;
const BLOCKED_RETRY_MAX_MS = 3600_000;

const deploymentsPath = (namespace: string): string =>
  `/apis/apps/v1/namespaces/${namespace}/deployments`;

/** Keeps only what the reconciler reads of a Deployment, so the cache stays small. */
export function trimDeployment(d: CachedDeployment): CachedDeployment {
  const m = d.metadata;
  const hash = m.annotations?.[APPLIED_HASH_ANNOTATION];
  const status = d.status;
  return {
    metadata: {
      name: m.name,
      ...(m.namespace ? { namespace: m.namespace } : {}),
      ...(m.uid ? { uid: m.uid } : {}),
      ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.generation !== undefined ? { generation: m.generation } : {}),
      ...(m.labels ? { labels: m.labels } : {}),
      ...(hash ? { annotations: { [APPLIED_HASH_ANNOTATION]: hash } } : {}),
      ...(m.ownerReferences ? { ownerReferences: m.ownerReferences } : {}),
    },
    ...(d.spec ? { spec: d.spec } : {}),
    ...(status
      ? {
          status: {
            ...status,
            ...(status.conditions
              ? {
                  conditions: status.conditions.map(({ type, status, reason, message }) => ({
                    type,
                    status,
                    ...(reason ? { reason } : {}),
                    ...(message ? { message } : {}),
                  })),
                }
              : {}),
          },
        }
      : {}),
  };
}

/** Keeps only what the reconciler reads of an Echo: annotations (last-applied copies) go. */
export function trimEcho(e: Echo): Echo {
  const m = e.metadata;
  return {
    apiVersion: e.apiVersion,
    kind: e.kind,
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      ...(m.generation !== undefined ? { generation: m.generation } : {}),
      ...(m.labels ? { labels: m.labels } : {}),
      ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
    spec: e.spec,
    ...(e.status ? { status: e.status } : {}),
  };
}

function reference(echo: Echo): ObjectReference {
  const { name, namespace, uid, resourceVersion } = echo.metadata;
  return { apiVersion: API_VERSION, kind: KIND, name, namespace, uid, resourceVersion };
}

function hasCause(err: ApiError, fieldPrefix: string): boolean {
  return err.causes.some((c) => c.field?.startsWith(fieldPrefix));
}

export function echoReconciler(options: EchoReconcilerOptions): Reconcile {
  const { client, recorder, log } = options;
  const now = options.now ?? (() => new Date());

  /** Applies `desired` over `basedOn` (the cached Deployment's resourceVersion, if any). */
  const apply = async (
    desired: DesiredDeployment,
    basedOn: string | undefined,
    signal: AbortSignal,
  ): Promise<CachedDeployment> => {
    const written = await client.apply<CachedDeployment>(
      `${deploymentsPath(desired.metadata.namespace)}/${desired.metadata.name}`,
      desired,
      FIELD_MANAGER,
      signal,
    );
    options.deployments.assume(written, basedOn);
    return written;
  };

  /**
   * Applies the desired Deployment. An immutable field in the way (a Deployment adopted from
   * elsewhere) means delete and create again; a refusal the operator cannot fix by retrying (held
   * by another controller, or invalid) comes back as a blocker. Other failures throw, for backoff.
   */
  const putDeployment = async (
    echo: Echo,
    desired: DesiredDeployment,
    cached: CachedDeployment | undefined,
    signal: AbortSignal,
  ): Promise<{ observed?: CachedDeployment; blocker?: Blocker }> => {
    const { name, namespace } = echo.metadata;
    const key = `${namespace}/${name}`;
    try {
      const observed = await apply(desired, cached?.metadata.resourceVersion, signal);
      // The server found nothing to change (a difference the comparison cannot tell from one it
      // makes itself): not worth an Event.
      if (observed.metadata.resourceVersion === cached?.metadata.resourceVersion) {
        log?.debug({ echo: key }, 'Deployment applied, unchanged');
        return { observed };
      }
      log?.info(
        { echo: key, replicas: echo.spec.replicas },
        cached ? 'Deployment updated' : 'Deployment applied',
      );
      recorder.record(
        reference(echo),
        'Normal',
        cached ? 'DeploymentUpdated' : 'DeploymentApplied',
        cached ? 'Update' : 'Apply',
        `Deployment ${name} set to ${String(echo.spec.replicas)} replicas`,
      );
      return { observed };
    } catch (err) {
      if (!isInvalid(err)) throw err;
      if (hasCause(err, 'metadata.ownerReferences')) {
        const cause = err.causes.find((c) => c.field?.startsWith('metadata.ownerReferences'));
        return {
          blocker: { kind: 'OwnedByAnother', owner: cause?.message ?? 'another controller' },
        };
      }
      if (!hasCause(err, 'spec.selector') && !hasCause(err, 'spec.template.metadata.labels')) {
        return { blocker: { kind: 'ApplyFailed', message: err.message } };
      }
    }
    await client
      .request({
        method: 'DELETE',
        path: `${deploymentsPath(namespace)}/${name}`,
        body: {
          propagationPolicy: 'Background',
          ...(cached?.metadata.uid ? { preconditions: { uid: cached.metadata.uid } } : {}),
        },
        signal,
      })
      .catch((e: unknown) => {
        if (!isNotFound(e)) throw e;
      });
    options.onRecreate?.();
    const observed = await apply(desired, cached?.metadata.resourceVersion, signal);
    log?.info({ echo: key }, 'Deployment recreated: an immutable field differed');
    recorder.record(
      reference(echo),
      'Normal',
      'DeploymentRecreated',
      'Recreate',
      `Deployment ${name} had an immutable field the Echo does not match; deleted and created again`,
    );
    return { observed };
  };

  /**
   * Echoes whose Deployment the API server refused (held by another controller, or invalid). They
   * are retried on a backoff of their own (1 minute doubling to 1 hour), not on every event or
   * resync: a refused write is still a write.
   */
  const blocked = new Map<
    string,
    { generation: number; blocker: Blocker; retryAt: number; delayMs: number }
  >();

  const reconcileEcho: Reconcile = async (key, signal) => {
    const echo = options.echoes.get(key);
    // Gone or going: the garbage collector removes the Deployment through its owner reference.
    if (!echo || echo.metadata.deletionTimestamp) {
      blocked.delete(key);
      options.onDesiredReplicas?.(key, undefined);
      return undefined;
    }
    options.onDesiredReplicas?.(key, echo.spec.replicas);
    const { name, namespace } = echo.metadata;
    const generation = echo.metadata.generation ?? 0;
    trace.getActiveSpan()?.setAttribute('k8s.object.generation', generation);
    const cached = options.deployments.get(key);
    let observed: ObservedDeployment | undefined = cached;
    let blocker: Blocker | undefined;
    let requeueAfterMs: number | undefined;

    const known = blocked.get(key);
    if (known && known.generation !== generation) blocked.delete(key);
    const owner = cached?.metadata.ownerReferences?.find((r) => r.controller === true);
    if (known?.generation === generation && Date.now() < known.retryAt) {
      blocker = known.blocker;
      requeueAfterMs = known.retryAt - Date.now();
    } else if (owner && owner.uid !== echo.metadata.uid) {
      if (owner.kind === KIND && owner.apiVersion === API_VERSION) {
        // The Deployment of an earlier Echo of the same name: wait for the garbage collector;
        // its delete event brings this Echo back.
        observed = undefined;
      } else {
        blocker = { kind: 'OwnedByAnother', owner: `${owner.kind} ${owner.name}` };
      }
    } else {
      const desired = desiredDeployment(echo);
      const drift = deploymentDrift(desired, cached);
      if (drift !== undefined) {
        log?.debug({ echo: key, drift }, 'applying the Deployment');
        const outcome = await putDeployment(echo, desired, cached, signal);
        observed = outcome.observed ?? observed;
        blocker = outcome.blocker;
        if (blocker) {
          const delayMs = Math.min(
            (known?.delayMs ?? BLOCKED_RETRY_MS / 2) * 2,
            BLOCKED_RETRY_MAX_MS,
          );
          blocked.set(key, { generation, blocker, retryAt: Date.now() + delayMs, delayMs });
          requeueAfterMs = delayMs;
        } else {
          blocked.delete(key);
        }
      }
    }

    if (blocker) {
      recorder.record(
        reference(echo),
        'Warning',
        blocker.kind === 'OwnedByAnother' ? 'DeploymentOwnedByAnother' : 'ApplyFailed',
        'Reconcile',
        blocker.kind === 'OwnedByAnother'
          ? `Deployment ${name} is controlled by ${blocker.owner}; not touching it`
          : blocker.message,
      );
    }

    const status = desiredStatus(echo, observed, now(), blocker);
    if (statusChanged(echo.status, status)) {
      const written = await client.apply<Echo>(
        `/apis/${API_VERSION}/namespaces/${namespace}/${PLURAL}/${name}/status`,
        { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, status },
        FIELD_MANAGER,
        signal,
      );
      options.echoes.assume(written, echo.metadata.resourceVersion);
      const event = statusEvent(echo.status, status);
      if (event) {
        const { type, reason, note } = event;
        recorder.record(reference(echo), type, reason, 'Reconcile', note);
      }
    }
    return requeueAfterMs === undefined ? undefined : { requeueAfterMs };
  };

  return async (key, signal) => {
    try {
      return await reconcileEcho(key, signal);
    } catch (err) {
      if (!isNamespaceTerminating(err)) throw err;
      // The Echo goes with its namespace; retrying would only be refused again until then.
      log?.debug({ echo: key }, 'its namespace is being deleted: nothing to do');
      return undefined;
    }
  };
}
