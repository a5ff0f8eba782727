// Reconciles one Echo: reads the Echo and its Deployment from the caches (never a GET), applies
// the desired Deployment only when the cache shows a difference, and writes status only when it
// changed. So an Echo in steady state costs no API call at all, resyncs included.
import { trace } from '@opentelemetry/api';
import type { KubeClient } from '../kube/client.ts';
import {
  ApiError,
  isForbidden,
  isInvalid,
  isNamespaceTerminating,
  isNotFound,
} from '../kube/errors.ts';
import type { Reconcile, ReconcileResult } from '../runtime/controller.ts';
import type { EventRecorder, ObjectReference } from '../runtime/events.ts';
import type { Informer } from '../runtime/cache/informer.ts';
import type { Logger } from '../telemetry/logger.ts';
import { API_VERSION, KIND, PLURAL, type Echo, type EchoStatus } from './api.ts';
import type { CachedDeployment } from './projection.ts';
import {
  APPLIED_HASH_ANNOTATION,
  FIELD_MANAGER,
  deploymentDrift,
  desiredDeployment,
  ownerReference,
  type DesiredDeployment,
} from './desired.ts';
import { ownership } from './ownership.ts';
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
  /** The time written into conditions. */
  now?: () => Date;
  /** Milliseconds on a clock that never steps (default performance.now): every wait is timed on it. */
  clock?: () => number;
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

/** A retry schedule: the first delay, doubling to the last. */
interface RetrySchedule {
  initialMs: number;
  maxMs: number;
}

/** An apply the API server refused (invalid, forbidden): each retry is a write, refused again. */
const REFUSED_RETRY: RetrySchedule = { initialMs: 60_000, maxMs: 3600_000 };
/**
 * An Echo whose Deployment name someone else holds: each retry only looks (in the cache, or one GET
 * where the cache cannot hold that Deployment), so the Echo takes the name within minutes of its
 * holder going, which nothing announces when the holder is not labelled as the operator's.
 */
const NAME_HELD_RETRY: RetrySchedule = { initialMs: 5_000, maxMs: 300_000 };

const deploymentsPath = (namespace: string): string =>
  `/apis/apps/v1/namespaces/${namespace}/deployments`;

function reference(echo: Echo): ObjectReference {
  const { name, namespace, uid, resourceVersion } = echo.metadata;
  return { apiVersion: API_VERSION, kind: KIND, name, namespace, uid, resourceVersion };
}

function hasCause(err: ApiError, fieldPrefix: string): boolean {
  return err.causes.some((c) => c.field?.startsWith(fieldPrefix));
}

/** The apply was refused because the Deployment's selector, which is immutable, differs. */
const immutableSelector = (err: unknown): boolean =>
  isInvalid(err) &&
  (hasCause(err, 'spec.selector') || hasCause(err, 'spec.template.metadata.labels'));

/**
 * Why the API server refused a write in a way retrying soon cannot fix (invalid, forbidden by RBAC
 * or admission, held by another controller), or undefined for what the work queue's backoff should
 * retry: no answer, a conflict, throttling, a server error, a namespace going away.
 */
function refusal(err: unknown): Blocker | undefined {
  // A namespace going away is for echoReconciler's catch.
  if (isNamespaceTerminating(err) || !(err instanceof ApiError)) return undefined;
  if (hasCause(err, 'metadata.ownerReferences')) {
    const cause = err.causes.find((c) => c.field?.startsWith('metadata.ownerReferences'));
    return { kind: 'OwnedByAnother', owner: cause?.message ?? 'another controller' };
  }
  const retriable = err.code === 404 || err.code === 409 || err.code === 429 || err.code >= 500;
  if (retriable || err.code < 400) return undefined;
  return { kind: 'ApplyFailed', message: err.status.message ?? err.message };
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
  /** Thrown once the status says so: a failure for the work queue's backoff and error count. */
  failure?: ApiError;
}

/** An Echo that cannot have its Deployment yet, and when to look again. */
interface BlockedEcho {
  /** The Echo object's uid and generation: a new Echo of the name, or a new spec, looks at once. */
  uid: string;
  generation: number;
  blocker: Blocker;
  /** When to look again, on the reconciler's clock. */
  retryAt: number;
  delayMs: number;
  /**
   * The cached Deployment's resourceVersion the blocker was judged on, when a change of it (the
   * holder gone, say) should end the wait at once; undefined to wait for retryAt whatever happens.
   */
  judgedOn?: string | null;
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
  private readonly clock: () => number;
  /**
   * Echoes that cannot have their Deployment yet: another holds the name, or the API server
   * refused the apply. Each is looked at again on a schedule of its own, not on every event or
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
    this.clock = options.clock ?? (() => performance.now());
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
    const { observed, blocker, requeueAfterMs, failure } = await this.reconcileDeployment(
      key,
      echo,
      generation,
      signal,
    );
    const status = desiredStatus(echo, observed, this.now(), blocker);
    const heldForMs = await this.writeStatus(key, echo, status, signal);
    if (failure !== undefined) throw failure;
    const after = Math.min(requeueAfterMs ?? Infinity, heldForMs ?? Infinity);
    if (after !== Infinity) return { requeueAfterMs: after };
    if (compared !== undefined && !blocker) this.settled.set(echo, compared);
    return undefined;
  }

  /**
   * Puts the Echo's Deployment in place when the cache shows a difference, but only one that is
   * the Echo's: its own (by controller uid), an orphan labelled as the operator's, or none at all,
   * which the cache alone cannot prove (it holds only labelled Deployments), so it is read first.
   */
  private async reconcileDeployment(
    key: string,
    echo: Echo,
    generation: number,
    signal: AbortSignal,
  ): Promise<DeploymentOutcome> {
    const cached = this.options.deployments.get(key);
    const known = this.blocked.get(key);
    if (known && (known.uid !== echo.metadata.uid || known.generation !== generation)) {
      this.blocked.delete(key);
    } else if (known && this.stillBlocked(known, cached)) {
      return {
        observed: ownership(echo, cached).kind === 'ours' ? cached : undefined,
        blocker: known.blocker,
        requeueAfterMs: Math.max(0, known.retryAt - this.clock()),
      };
    }
    const found = cached ?? (await this.read(echo, signal));
    const owner = ownership(echo, found);
    const { name } = echo.metadata;
    switch (owner.kind) {
      case 'terminating':
        return this.block(
          key,
          echo,
          NAME_HELD_RETRY,
          {
            kind: 'Waiting',
            message: `Deployment ${name} is being deleted; the Echo's is created once it is gone`,
          },
          { cached },
        );
      case 'previous':
        return this.block(
          key,
          echo,
          NAME_HELD_RETRY,
          {
            kind: 'Waiting',
            message: `Deployment ${name} belongs to a deleted Echo of the same name (uid ${owner.uid}); the garbage collector deletes it, then the Echo's is created`,
          },
          { cached },
        );
      case 'foreign':
        return this.block(
          key,
          echo,
          NAME_HELD_RETRY,
          owner.controller
            ? { kind: 'OwnedByAnother', owner: owner.controller }
            : { kind: 'NameTaken' },
          { cached },
        );
    }
    const desired = desiredDeployment(echo);
    const drift = deploymentDrift(desired, found);
    const observed = owner.kind === 'ours' ? found : undefined;
    if (drift === undefined) {
      this.blocked.delete(key);
      return { observed };
    }
    this.options.log?.debug({ echo: key, drift, owner: owner.kind }, 'applying the Deployment');
    try {
      const written = await this.putDeployment(echo, desired, found, owner.kind, drift, signal);
      this.blocked.delete(key);
      return { observed: written };
    } catch (err) {
      const blocker = refusal(err);
      if (!blocker) throw err;
      // Forbidden (RBAC, an admission plugin or webhook) is the installation's to fix, and may be
      // any minute: it fails the reconcile, counted and retried on the work queue's backoff.
      if (isForbidden(err)) return { observed, blocker, failure: err };
      return this.block(key, echo, REFUSED_RETRY, blocker, { observed });
    }
  }

  /** Whether `known` still holds: its time has not come and what it was judged on is unchanged. */
  private stillBlocked(known: BlockedEcho, cached: CachedDeployment | undefined): boolean {
    if (this.clock() >= known.retryAt) return false;
    return (
      known.judgedOn === undefined || known.judgedOn === (cached?.metadata.resourceVersion ?? null)
    );
  }

  /**
   * Records that the Echo cannot have its Deployment yet, and when to look again: the same blocker
   * again waits twice as long. With `cached` given, a change of that cache entry (the holder gone)
   * ends the wait at once.
   */
  private block(
    key: string,
    echo: Echo,
    schedule: RetrySchedule,
    blocker: Blocker,
    options: {
      cached?: CachedDeployment | undefined;
      observed?: ObservedDeployment | undefined;
    } = {},
  ): DeploymentOutcome {
    const known = this.blocked.get(key);
    const delayMs =
      known?.blocker.kind === blocker.kind
        ? Math.min(known.delayMs * 2, schedule.maxMs)
        : schedule.initialMs;
    this.blocked.set(key, {
      uid: echo.metadata.uid,
      generation: echo.metadata.generation ?? 0,
      blocker,
      retryAt: this.clock() + delayMs,
      delayMs,
      ...('cached' in options
        ? { judgedOn: options.cached?.metadata.resourceVersion ?? null }
        : {}),
    });
    return { observed: options.observed, blocker, requeueAfterMs: delayMs };
  }

  /** The Deployment of the Echo's name as the API server has it, or undefined if there is none. */
  private async read(echo: Echo, signal: AbortSignal): Promise<CachedDeployment | undefined> {
    const { name, namespace } = echo.metadata;
    try {
      return await this.options.client.request<CachedDeployment>({
        path: `${deploymentsPath(namespace)}/${name}`,
        signal,
      });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /**
   * Applies `desired`. A new Deployment is applied without force: if another appeared since it was
   * read, the apply conflicts instead of taking it over. Over the Echo's own (or an orphan it
   * adopts) the apply is forced, with the uid as a precondition: a Deployment replaced meanwhile
   * is not written to. An immutable field in the way means delete and create again.
   */
  private async putDeployment(
    echo: Echo,
    desired: DesiredDeployment,
    found: CachedDeployment | undefined,
    owner: 'absent' | 'ours' | 'orphan',
    drift: string,
    signal: AbortSignal,
  ): Promise<CachedDeployment> {
    const { recorder, log } = this.options;
    const key = `${echo.metadata.namespace}/${echo.metadata.name}`;
    let written: CachedDeployment;
    try {
      written = await this.apply(desired, found, signal);
    } catch (err) {
      if (!found || !immutableSelector(err)) throw err;
      return this.recreate(echo, desired, found, owner === 'orphan', signal);
    }
    // The server found nothing to change (a difference the comparison cannot tell from one it
    // makes itself): not worth an Event.
    if (written.metadata.resourceVersion === found?.metadata.resourceVersion) {
      log?.debug({ echo: key }, 'Deployment applied, unchanged');
      return written;
    }
    const action = {
      absent: 'Deployment applied',
      ours: 'Deployment updated',
      orphan: 'Deployment adopted',
    }[owner];
    log?.info({ echo: key, replicas: echo.spec.replicas, drift }, action);
    const event = owner === 'ours' ? applyEvent(found, desired, drift) : undefined;
    if (event) recorder.record(reference(echo), 'Normal', event.reason, 'Apply', event.note);
    return written;
  }

  /**
   * Applies `desired` over `found` (forced, on that uid only) or as a new Deployment (not forced),
   * and tells the cache: `basedOn` is what the cache held, which a Deployment read is not.
   */
  private async apply(
    desired: DesiredDeployment,
    found: CachedDeployment | undefined,
    signal: AbortSignal,
  ): Promise<CachedDeployment> {
    const { namespace, name } = desired.metadata;
    const uid = found?.metadata.uid;
    const written = await this.options.client.apply<CachedDeployment>(
      `${deploymentsPath(namespace)}/${name}`,
      uid ? { ...desired, metadata: { ...desired.metadata, uid } } : desired,
      FIELD_MANAGER,
      { signal, force: uid !== undefined },
    );
    const cached = this.options.deployments.get(`${namespace}/${name}`);
    this.options.deployments.assume(written, cached?.metadata.resourceVersion);
    return written;
  }

  /**
   * Deletes the Echo's Deployment (by uid: never another of the same name) and creates it again.
   * An orphan is claimed first, so that what is deleted is the Echo's by its owner reference.
   */
  private async recreate(
    echo: Echo,
    desired: DesiredDeployment,
    found: CachedDeployment,
    orphan: boolean,
    signal: AbortSignal,
  ): Promise<CachedDeployment> {
    const { client, recorder, log } = this.options;
    const { name, namespace } = echo.metadata;
    const path = `${deploymentsPath(namespace)}/${name}`;
    const uid = found.metadata.uid;
    if (orphan) {
      // As the Deployment controller adopts a ReplicaSet: the uid in the patch is a precondition.
      await client.request({
        method: 'PATCH',
        path,
        contentType: 'application/strategic-merge-patch+json',
        body: { metadata: { uid, ownerReferences: [ownerReference(echo)] } },
        signal,
      });
    }
    await client
      .request({
        method: 'DELETE',
        path,
        body: { propagationPolicy: 'Background', preconditions: { uid } },
        signal,
      })
      .catch((e: unknown) => {
        if (!isNotFound(e)) throw e;
      });
    this.options.onRecreate?.();
    const written = await this.apply(desired, undefined, signal);
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
    return written;
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
    const now = this.clock();
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
      { signal },
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
