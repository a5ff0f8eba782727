// Reconciles one Echo: reads its Deployment from the cache, applies the desired Deployment only
// when the cache shows a difference, writes status only when it changed, and tells the runtime
// what next (done, requeue after, blocked). So an Echo in steady state costs no API call at all.
import { trace } from '@opentelemetry/api';
import type { KubeClient } from '../kube/client.ts';
import { DEPLOYMENTS, resource, type Resource } from '../kube/resource.ts';
import { ApiError, isForbidden, isInvalid, isNamespaceTerminating } from '../kube/errors.ts';
import type { Informer } from '../runtime/cache/informer.ts';
import {
  Result,
  type ReconcileContext,
  type Reconciler,
  type RetrySchedule,
} from '../runtime/controller.ts';
import type { EventRecorder, ObjectReference } from '../runtime/events.ts';
import type { Logger } from '../telemetry/logger.ts';
import { API_VERSION, ECHOES, KIND, type Echo, type EchoStatus } from './api.ts';
import { ProgressPacing } from './progress.ts';
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
  client: Pick<KubeClient, 'request'>;
  /** Told of every write (assume), so the next read reflects it. */
  echoes: Pick<Informer<Echo>, 'assume'>;
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
   * with (default PROGRESS_STATUS_DELAY_MS in progress.ts); outcomes are written at once.
   */
  progressStatusDelayMs?: number;
  log?: Logger;
}

/** An apply the API server refused (invalid, forbidden): each retry is a write, refused again. */
const REFUSED_RETRY: RetrySchedule = { initialMs: 60_000, maxMs: 3600_000 };
/**
 * An Echo whose Deployment name someone else holds: each retry only looks (in the cache, or one GET
 * where the cache cannot hold that Deployment), so the Echo takes the name within minutes of its
 * holder going, which nothing announces when the holder is not labelled as the operator's.
 */
const NAME_HELD_RETRY: RetrySchedule = { initialMs: 5_000, maxMs: 300_000 };

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
  /** The Echo cannot have its Deployment yet: when to look again, and what may end the wait. */
  blocked?: { schedule: RetrySchedule; wakeOn: 'any' | 'primary' };
  /** Thrown once the status says so: a failure for the work queue's backoff and error count. */
  failure?: ApiError;
}

export function echoReconciler(options: EchoReconcilerOptions): Reconciler<Echo> {
  return new EchoReconciler(options);
}

class EchoReconciler implements Reconciler<Echo> {
  private readonly options: EchoReconcilerOptions;
  private readonly now: () => Date;
  private readonly deploymentsApi: Resource<CachedDeployment>;
  private readonly echoesApi: Resource<Echo>;
  private readonly progress: ProgressPacing;

  constructor(options: EchoReconcilerOptions) {
    this.options = options;
    this.now = options.now ?? (() => new Date());
    this.deploymentsApi = resource<CachedDeployment>(options.client, DEPLOYMENTS);
    this.echoesApi = resource<Echo>(options.client, ECHOES);
    this.progress = new ProgressPacing({
      ...(options.progressStatusDelayMs === undefined
        ? {}
        : { delayMs: options.progressStatusDelayMs }),
      ...(options.clock ? { clock: options.clock } : {}),
    });
  }

  async reconcile(echo: Echo, { key, signal }: ReconcileContext): Promise<Result> {
    try {
      return await this.reconcileEcho(key, echo, signal);
    } catch (err) {
      if (!isNamespaceTerminating(err)) throw err;
      // The Echo goes with its namespace; retrying would only be refused again until then.
      this.options.log?.debug({ echo: key }, 'its namespace is being deleted: nothing to do');
      return Result.done();
    }
  }

  deleted(key: string): void {
    this.progress.forget(key);
    this.options.onDesiredReplicas?.(key, undefined);
  }

  private async reconcileEcho(key: string, echo: Echo, signal: AbortSignal): Promise<Result> {
    // Going: the garbage collector removes the Deployment through its owner reference.
    if (echo.metadata.deletionTimestamp) {
      this.deleted(key);
      return Result.done();
    }
    this.options.onDesiredReplicas?.(key, echo.spec.replicas);
    trace.getActiveSpan()?.setAttribute('k8s.object.generation', echo.metadata.generation ?? 0);
    const { observed, blocker, blocked, failure } = await this.reconcileDeployment(
      key,
      echo,
      signal,
    );
    const status = desiredStatus(echo, observed, this.now(), blocker);
    const heldForMs = await this.writeStatus(key, echo, status, signal);
    if (failure !== undefined) throw failure;
    if (blocker && blocked) return Result.blocked(blocker.kind, blocked.schedule, blocked.wakeOn);
    if (heldForMs !== undefined) return Result.requeueAfter(heldForMs);
    return Result.done();
  }

  /**
   * Puts the Echo's Deployment in place when the cache shows a difference, but only one that is
   * the Echo's: its own (by controller uid), an orphan labelled as the operator's, or none at all,
   * which the cache alone cannot prove (it holds only labelled Deployments), so it is read first.
   * A name held by another Deployment blocks the Echo: the runtime looks again on NAME_HELD_RETRY,
   * or at once when a Deployment of its name changes in the cache (the holder gone).
   */
  private async reconcileDeployment(
    key: string,
    echo: Echo,
    signal: AbortSignal,
  ): Promise<DeploymentOutcome> {
    const cached = this.options.deployments.get(key);
    const found = cached ?? (await this.read(echo, signal));
    const owner = ownership(echo, found);
    const { name } = echo.metadata;
    const nameHeld = (blocker: Blocker): DeploymentOutcome => ({
      observed: undefined,
      blocker,
      blocked: { schedule: NAME_HELD_RETRY, wakeOn: 'any' },
    });
    switch (owner.kind) {
      case 'terminating':
        return nameHeld({
          kind: 'Waiting',
          message: `Deployment ${name} is being deleted; the Echo's is created once it is gone`,
        });
      case 'previous':
        return nameHeld({
          kind: 'Waiting',
          message: `Deployment ${name} belongs to a deleted Echo of the same name (uid ${owner.uid}); the garbage collector deletes it, then the Echo's is created`,
        });
      case 'foreign':
        return nameHeld(
          owner.controller
            ? { kind: 'OwnedByAnother', owner: owner.controller }
            : { kind: 'NameTaken' },
        );
    }
    const desired = desiredDeployment(echo);
    const drift = deploymentDrift(desired, found);
    const observed = owner.kind === 'ours' ? found : undefined;
    if (drift === undefined) return { observed };
    this.options.log?.debug({ echo: key, drift, owner: owner.kind }, 'applying the Deployment');
    try {
      return {
        observed: await this.putDeployment(echo, desired, found, owner.kind, drift, signal),
      };
    } catch (err) {
      const blocker = refusal(err);
      if (!blocker) throw err;
      // Forbidden (RBAC, an admission plugin or webhook) is the installation's to fix, and may be
      // any minute: it fails the reconcile, counted and retried on the work queue's backoff.
      if (isForbidden(err)) return { observed, blocker, failure: err };
      // Each retry is a write, refused again until the Echo changes: only its change ends the wait.
      return { observed, blocker, blocked: { schedule: REFUSED_RETRY, wakeOn: 'primary' } };
    }
  }

  /** The Deployment of the Echo's name as the API server has it, or undefined if there is none. */
  private async read(echo: Echo, signal: AbortSignal): Promise<CachedDeployment | undefined> {
    const { name, namespace } = echo.metadata;
    return this.deploymentsApi.namespace(namespace).find(name, { signal });
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
    const written = await this.deploymentsApi
      .namespace(namespace)
      .apply(uid ? { ...desired, metadata: { ...desired.metadata, uid } } : desired, {
        fieldManager: FIELD_MANAGER,
        force: uid !== undefined,
        signal,
      });
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
    const { recorder, log } = this.options;
    const { name, namespace } = echo.metadata;
    const deployments = this.deploymentsApi.namespace(namespace);
    const uid = found.metadata.uid;
    if (orphan) {
      // As the Deployment controller adopts a ReplicaSet: the uid in the patch is a precondition.
      const claim = { metadata: { uid, ownerReferences: [ownerReference(echo)] } };
      await deployments.patch(name, 'strategic', claim, { signal });
    }
    await deployments.delete(name, {
      ...(uid ? { uid } : {}),
      propagationPolicy: 'Background',
      signal,
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
      this.progress.forget(key);
      return undefined;
    }
    if (canCoalesce(echo, status)) {
      const heldForMs = this.progress.hold(key);
      if (heldForMs !== undefined) return heldForMs;
    }
    this.progress.forget(key);
    const { name, namespace } = echo.metadata;
    const written = await this.echoesApi
      .namespace(namespace)
      .applyStatus(
        { apiVersion: API_VERSION, kind: KIND, metadata: { name, namespace }, status },
        { fieldManager: FIELD_MANAGER, signal },
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
