// Reconciles one Echo: reads the Echo and its Deployment from the caches (never a GET), applies
// the desired Deployment only when the cache shows a difference, and writes status only when it
// changed. So an Echo in steady state costs no API call at all, resyncs included.
import { trace } from '@opentelemetry/api';
import type { KubeClient } from '../kube/client.ts';
import { isInvalid, isNamespaceTerminating, isNotFound, type ApiError } from '../kube/errors.ts';
import type { Reconcile, ReconcileResult } from '../runtime/controller.ts';
import type { EventRecorder, ObjectReference } from '../runtime/events.ts';
import type { Informer } from '../runtime/informer.ts';
import type { Logger } from '../telemetry/logger.ts';
import { API_VERSION, KIND, PLURAL, type Echo, type EchoStatus } from './api.ts';
import type { CachedDeployment } from './cache.ts';
import {
  APPLIED_HASH_ANNOTATION,
  FIELD_MANAGER,
  deploymentDrift,
  desiredDeployment,
  type DesiredDeployment,
} from './desired.ts';
import {
  canCoalesce,
  desiredStatus,
  statusChanged,
  statusEvent,
  type Blocker,
  type ObservedDeployment,
} from './status.ts';

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
  /**
   * How long a status that only reports a rollout under way waits for the next change to merge
   * with (default PROGRESS_STATUS_DELAY_MS); outcomes are written at once.
   */
  progressStatusDelayMs?: number;
  log?: Logger;
}

/**
 * A rollout's progress is written at most this often per Echo; one that ends sooner costs a
 * single status write, its outcome.
 */
export const PROGRESS_STATUS_DELAY_MS = 10_000;
/**
 * Progress writes of all Echoes together, per second (past a burst): in a burst of rollouts, where
 * the API server is what everything waits on, their outcomes go first and progress waits.
 */
const PROGRESS_WRITES_PER_SECOND = 1;
const PROGRESS_WRITES_BURST = 10;

/** Tokens for progress writes: taken when there is one, never owed. */
class ProgressBudget {
  private tokens = PROGRESS_WRITES_BURST;
  private last = performance.now();

  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(
      PROGRESS_WRITES_BURST,
      this.tokens + ((now - this.last) / 1000) * PROGRESS_WRITES_PER_SECOND,
    );
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

const BLOCKED_RETRY_MS = 60_000;
const BLOCKED_RETRY_MAX_MS = 3600_000;

const deploymentsPath = (namespace: string): string =>
  `/apis/apps/v1/namespaces/${namespace}/deployments`;

function reference(echo: Echo): ObjectReference {
  const { name, namespace, uid, resourceVersion } = echo.metadata;
  return { apiVersion: API_VERSION, kind: KIND, name, namespace, uid, resourceVersion };
}

function hasCause(err: ApiError, fieldPrefix: string): boolean {
  return err.causes.some((c) => c.field?.startsWith(fieldPrefix));
}

/**
 * Why an apply was refused in a way retrying cannot fix (held by another controller, or invalid),
 * or undefined when an immutable field is in the way, which a delete and create again fixes.
 */
function refusal(err: ApiError): Blocker | undefined {
  if (hasCause(err, 'metadata.ownerReferences')) {
    const cause = err.causes.find((c) => c.field?.startsWith('metadata.ownerReferences'));
    return { kind: 'OwnedByAnother', owner: cause?.message ?? 'another controller' };
  }
  if (!hasCause(err, 'spec.selector') && !hasCause(err, 'spec.template.metadata.labels')) {
    return { kind: 'ApplyFailed', message: err.message };
  }
  return undefined;
}

/**
 * The Event an apply deserves: only what neither the Echo's status nor the Deployment's own Events
 * tell. A Deployment created or changed after the Echo changed is the user's own doing; one put
 * back after someone else changed a field the operator owns (the hash of what the operator last
 * applied still matches the Echo) is news: the note names the field.
 */
export function applyEvent(
  cached: CachedDeployment | undefined,
  desired: DesiredDeployment,
  drift: string,
): { reason: string; note: string } | undefined {
  const appliedHash = cached?.metadata.annotations?.[APPLIED_HASH_ANNOTATION];
  if (appliedHash !== desired.metadata.annotations[APPLIED_HASH_ANNOTATION]) return undefined;
  return {
    reason: 'DeploymentReverted',
    note: `Deployment ${desired.metadata.name}: ${drift} was changed by someone else; put back as the Echo says`,
  };
}

/** Where an Echo's Deployment stands after a reconcile's Deployment step. */
interface DeploymentOutcome {
  observed: ObservedDeployment | undefined;
  blocker?: Blocker;
  requeueAfterMs?: number;
}

/** An Echo whose Deployment the API server refused, and when to try again. */
interface BlockedEcho {
  generation: number;
  blocker: Blocker;
  retryAt: number;
  delayMs: number;
}

export function echoReconciler(options: EchoReconcilerOptions): Reconcile {
  const reconciler = new EchoReconciler(options);
  return async (key, signal) => {
    try {
      return await reconciler.reconcile(key, signal);
    } catch (err) {
      if (!isNamespaceTerminating(err)) throw err;
      // The Echo goes with its namespace; retrying would only be refused again until then.
      options.log?.debug({ echo: key }, 'its namespace is being deleted: nothing to do');
      return undefined;
    }
  };
}

class EchoReconciler {
  private readonly options: EchoReconcilerOptions;
  private readonly now: () => Date;
  /**
   * Echoes whose Deployment the API server refused (held by another controller, or invalid). They
   * are retried on a backoff of their own (1 minute doubling to 1 hour), not on every event or
   * resync: a refused write is still a write.
   */
  private readonly blocked = new Map<string, BlockedEcho>();
  /** Echoes whose status reports a rollout the cache has moved past: since when, in ms. */
  private readonly heldSince = new Map<string, number>();
  private readonly progressBudget = new ProgressBudget();
  /**
   * Each Echo object a reconcile found nothing to do for (no write, no requeue), with the
   * resourceVersion of the Deployment it compared. A resync replays the caches: an Echo whose Echo
   * and Deployment are still those objects would be decided the same way again, so it is skipped.
   * Any change replaces one of the two objects (the caches never change one in place), and a write
   * of this reconciler's own replaces them too. Weak: an Echo object replaced drops out.
   */
  private readonly settled = new WeakMap<Echo, string>();

  constructor(options: EchoReconcilerOptions) {
    this.options = options;
    this.now = options.now ?? (() => new Date());
  }

  async reconcile(key: string, signal: AbortSignal): Promise<ReconcileResult | undefined> {
    const echo = this.options.echoes.get(key);
    // Gone or going: the garbage collector removes the Deployment through its owner reference.
    if (!echo || echo.metadata.deletionTimestamp) {
      this.blocked.delete(key);
      this.heldSince.delete(key);
      this.options.onDesiredReplicas?.(key, undefined);
      return undefined;
    }
    const compared = this.options.deployments.get(key)?.metadata.resourceVersion;
    if (compared !== undefined && this.settled.get(echo) === compared) return undefined;
    this.options.onDesiredReplicas?.(key, echo.spec.replicas);
    const generation = echo.metadata.generation ?? 0;
    trace.getActiveSpan()?.setAttribute('k8s.object.generation', generation);
    const { observed, blocker, requeueAfterMs } = await this.reconcileDeployment(
      key,
      echo,
      generation,
      signal,
    );
    if (blocker) this.recordBlocker(echo, blocker);
    const status = desiredStatus(echo, observed, this.now(), blocker);
    const heldForMs = await this.writeStatus(key, echo, status, signal);
    const after = Math.min(requeueAfterMs ?? Infinity, heldForMs ?? Infinity);
    if (after !== Infinity) return { requeueAfterMs: after };
    if (compared !== undefined && !blocker) this.settled.set(echo, compared);
    return undefined;
  }

  /**
   * Applies the Deployment when the cache shows a difference, unless it is not the Echo's to
   * change (another controller holds it, or the refusal of an earlier try is still backing off).
   */
  private async reconcileDeployment(
    key: string,
    echo: Echo,
    generation: number,
    signal: AbortSignal,
  ): Promise<DeploymentOutcome> {
    const cached = this.options.deployments.get(key);
    const known = this.blocked.get(key);
    if (known && known.generation !== generation) this.blocked.delete(key);
    const owner = cached?.metadata.ownerReferences?.find((r) => r.controller === true);
    if (known?.generation === generation && Date.now() < known.retryAt) {
      return {
        observed: cached,
        blocker: known.blocker,
        requeueAfterMs: known.retryAt - Date.now(),
      };
    }
    if (owner && owner.uid !== echo.metadata.uid) {
      // The Deployment of an earlier Echo of the same name: wait for the garbage collector;
      // its delete event brings this Echo back.
      if (owner.kind === KIND && owner.apiVersion === API_VERSION) return { observed: undefined };
      return {
        observed: cached,
        blocker: { kind: 'OwnedByAnother', owner: `${owner.kind} ${owner.name}` },
      };
    }
    const desired = desiredDeployment(echo);
    const drift = deploymentDrift(desired, cached);
    if (drift === undefined) return { observed: cached };
    this.options.log?.debug({ echo: key, drift }, 'applying the Deployment');
    const outcome = await this.putDeployment(echo, desired, cached, drift, signal);
    const observed = outcome.observed ?? cached;
    if (!outcome.blocker) {
      this.blocked.delete(key);
      return { observed };
    }
    const delayMs = Math.min((known?.delayMs ?? BLOCKED_RETRY_MS / 2) * 2, BLOCKED_RETRY_MAX_MS);
    this.blocked.set(key, {
      generation,
      blocker: outcome.blocker,
      retryAt: Date.now() + delayMs,
      delayMs,
    });
    return { observed, blocker: outcome.blocker, requeueAfterMs: delayMs };
  }

  /** Applies `desired` over `basedOn` (the cached Deployment's resourceVersion, if any). */
  private async apply(
    desired: DesiredDeployment,
    basedOn: string | undefined,
    signal: AbortSignal,
  ): Promise<CachedDeployment> {
    const written = await this.options.client.apply<CachedDeployment>(
      `${deploymentsPath(desired.metadata.namespace)}/${desired.metadata.name}`,
      desired,
      FIELD_MANAGER,
      signal,
    );
    this.options.deployments.assume(written, basedOn);
    return written;
  }

  /**
   * Applies the desired Deployment. An immutable field in the way (a Deployment adopted from
   * elsewhere) means delete and create again; a refusal the operator cannot fix by retrying (held
   * by another controller, or invalid) comes back as a blocker. Other failures throw, for backoff.
   */
  private async putDeployment(
    echo: Echo,
    desired: DesiredDeployment,
    cached: CachedDeployment | undefined,
    drift: string,
    signal: AbortSignal,
  ): Promise<{ observed?: CachedDeployment; blocker?: Blocker }> {
    const { recorder, log } = this.options;
    const { name, namespace } = echo.metadata;
    const key = `${namespace}/${name}`;
    try {
      const observed = await this.apply(desired, cached?.metadata.resourceVersion, signal);
      // The server found nothing to change (a difference the comparison cannot tell from one it
      // makes itself): not worth an Event.
      if (observed.metadata.resourceVersion === cached?.metadata.resourceVersion) {
        log?.debug({ echo: key }, 'Deployment applied, unchanged');
        return { observed };
      }
      log?.info(
        { echo: key, replicas: echo.spec.replicas, drift },
        cached ? 'Deployment updated' : 'Deployment applied',
      );
      const event = applyEvent(cached, desired, drift);
      if (event) recorder.record(reference(echo), 'Normal', event.reason, 'Apply', event.note);
      return { observed };
    } catch (err) {
      if (!isInvalid(err)) throw err;
      const blocker = refusal(err);
      if (blocker) return { blocker };
    }
    return { observed: await this.recreate(echo, desired, cached, signal) };
  }

  /** Deletes the Deployment (only the one cached, by uid) and applies it again. */
  private async recreate(
    echo: Echo,
    desired: DesiredDeployment,
    cached: CachedDeployment | undefined,
    signal: AbortSignal,
  ): Promise<CachedDeployment> {
    const { client, recorder, log } = this.options;
    const { name, namespace } = echo.metadata;
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
    this.options.onRecreate?.();
    const observed = await this.apply(desired, cached?.metadata.resourceVersion, signal);
    log?.info(
      { echo: `${namespace}/${name}` },
      'Deployment recreated: an immutable field differed',
    );
    recorder.record(
      reference(echo),
      'Normal',
      'DeploymentRecreated',
      'Recreate',
      `Deployment ${name} had an immutable field the Echo does not match; deleted and created again`,
    );
    return observed;
  }

  private recordBlocker(echo: Echo, blocker: Blocker): void {
    this.options.recorder.record(
      reference(echo),
      'Warning',
      blocker.kind === 'OwnedByAnother' ? 'DeploymentOwnedByAnother' : 'ApplyFailed',
      'Reconcile',
      blocker.kind === 'OwnedByAnother'
        ? `Deployment ${echo.metadata.name} is controlled by ${blocker.owner}; not touching it`
        : blocker.message,
    );
  }

  /**
   * How much longer the progress of `key` waits, or undefined to write it now: once it has waited
   * the delay and the budget has a token. Without one it comes back once the budget could have
   * served every Echo holding progress: with thousands of rollouts under way, coming back after
   * the delay alone cost hundreds of reconciles a second that could write nothing (5000 Echoes:
   * 360 000 in one scale burst). A Deployment event brings it back sooner, and the outcome is
   * written at once whatever the budget.
   */
  private holdProgress(key: string): number | undefined {
    const delayMs = this.options.progressStatusDelayMs ?? PROGRESS_STATUS_DELAY_MS;
    const now = Date.now();
    const since = this.heldSince.get(key) ?? now;
    const left = since + delayMs - now;
    if (left <= 0 && this.progressBudget.take()) return undefined;
    this.heldSince.set(key, left > 0 ? since : now);
    if (left > 0) return left;
    return Math.max(delayMs, (this.heldSince.size * 1000) / PROGRESS_WRITES_PER_SECOND);
  }

  /**
   * Writes the status when it changed, at once for an outcome; a rollout's progress waits until
   * it has been held for the delay (returned: how much longer, to reconcile again then).
   */
  private async writeStatus(
    key: string,
    echo: Echo,
    status: EchoStatus,
    signal: AbortSignal,
  ): Promise<number | undefined> {
    if (!statusChanged(echo.status, status)) {
      this.heldSince.delete(key);
      return undefined;
    }
    if (canCoalesce(echo, status)) {
      const heldForMs = this.holdProgress(key);
      if (heldForMs !== undefined) return heldForMs;
    }
    this.heldSince.delete(key);
    const { name, namespace } = echo.metadata;
    const written = await this.options.client.apply<Echo>(
      `/apis/${API_VERSION}/namespaces/${namespace}/${PLURAL}/${name}/status`,
      { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, status },
      FIELD_MANAGER,
      signal,
    );
    this.options.echoes.assume(written, echo.metadata.resourceVersion);
    const event = statusEvent(echo.status, status);
    if (event) {
      const { type, reason, note } = event;
      this.options.recorder.record(reference(echo), type, reason, 'Reconcile', note);
    }
    return undefined;
  }
}
