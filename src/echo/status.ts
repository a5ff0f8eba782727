// Echo + its Deployment as cached → the Echo's status. Pure, like desired.ts.
import { isDeepStrictEqual } from 'node:util';
import type { Condition, Echo, EchoStatus } from './api.ts';
import { selectorString } from './desired.ts';

/** What the status needs of a Deployment; the cache keeps at least this. */
export interface ObservedDeployment {
  metadata: { generation?: number };
  spec?: { replicas?: number };
  status?: {
    observedGeneration?: number;
    replicas?: number;
    readyReplicas?: number;
    availableReplicas?: number;
    updatedReplicas?: number;
    conditions?: { type: string; status: string; reason?: string; message?: string }[];
  };
}

/**
 * Why the operator could not put its Deployment in place, when it could not: the name is taken by
 * a Deployment controlled by someone else, or by one nobody controls that is not labelled as the
 * operator's; the API server refused the apply; or (`Waiting`) another Deployment of the name
 * must go first.
 */
export type Blocker =
  | { kind: 'OwnedByAnother'; owner: string }
  | { kind: 'NameTaken' }
  | { kind: 'ApplyFailed'; message: string }
  | { kind: 'Waiting'; message: string };

export const READY = 'Ready';
export const PROGRESSING = 'Progressing';

/** Ready reasons of the operator's own; with Ready False, any other is the Deployment's failure. */
const REASONS = {
  ready: 'ReplicasReady',
  rollingOut: 'RollingOut',
  pending: 'DeploymentPending',
  ownedByAnother: 'DeploymentOwnedByAnother',
  nameTaken: 'DeploymentNameTaken',
  applyFailed: 'ApplyFailed',
} as const;
/** Ready False for these is the way there, not a failure: no Event. */
const UNDER_WAY: ReadonlySet<string> = new Set([REASONS.rollingOut, REASONS.pending]);

interface Judgement {
  ready: boolean;
  progressing: boolean;
  reason: string;
  message: string;
}

function judgeBlocked(name: string, blocker: Blocker): Judgement {
  switch (blocker.kind) {
    case 'OwnedByAnother':
      return {
        ready: false,
        progressing: false,
        reason: REASONS.ownedByAnother,
        message: `Deployment ${name} is controlled by ${blocker.owner}; the operator leaves it alone`,
      };
    case 'NameTaken':
      return {
        ready: false,
        progressing: false,
        reason: REASONS.nameTaken,
        message:
          `Deployment ${name} exists and is not this Echo's (no controller, no label ` +
          `app.kubernetes.io/managed-by=echo-operator); the operator leaves it alone: delete or ` +
          `rename it and the Echo takes the name`,
      };
    case 'ApplyFailed':
      return {
        ready: false,
        progressing: false,
        reason: REASONS.applyFailed,
        message: blocker.message,
      };
    case 'Waiting':
      return { ready: false, progressing: true, reason: REASONS.pending, message: blocker.message };
  }
}

/**
 * The `Progressing` reason of a ReplicaSet the Deployment controller cannot create (a quota on
 * ReplicaSets, an admission webhook), the same in every supported release (1.33 to 1.37, read in
 * the controller's source and seen by make test-compat).
 */
const REPLICA_SET_REFUSED: ReadonlySet<string> = new Set(['ReplicaSetCreateError']);

/** `Progressing` reasons that say the Deployment is stuck: those, and a rollout past its deadline. */
export const STALLED_REASONS: ReadonlySet<string> = new Set([
  ...REPLICA_SET_REFUSED,
  'ProgressDeadlineExceeded',
]);

/**
 * What keeps the Deployment from its replicas, in its own words: pods it cannot create
 * (`ReplicaFailure`: a quota, a LimitRange, PodSecurity admission), a ReplicaSet it cannot create,
 * or a rollout past its `progressDeadlineSeconds`. Only conditions about the current spec count:
 * an older generation's are stale; but a ReplicaSet refused is reported without moving
 * `observedGeneration` (the controller's sync stops there), and is about the current spec.
 */
function deploymentFailure(
  deployment: ObservedDeployment,
): { reason: string; message: string } | undefined {
  const s = deployment.status;
  const refused = s?.conditions?.find(
    (c) =>
      c.type === 'Progressing' && c.status === 'False' && REPLICA_SET_REFUSED.has(c.reason ?? ''),
  );
  if (refused?.reason) {
    return { reason: refused.reason, message: refused.message ?? 'no ReplicaSet could be created' };
  }
  if ((s?.observedGeneration ?? 0) < (deployment.metadata.generation ?? 0)) return undefined;
  const failed = s?.conditions?.find((c) => c.type === 'ReplicaFailure' && c.status === 'True');
  if (failed) {
    return {
      reason: failed.reason ?? 'ReplicaFailure',
      message: failed.message ?? 'the Deployment cannot create its pods',
    };
  }
  const stalled = s?.conditions?.find(
    (c) => c.type === 'Progressing' && c.reason !== undefined && STALLED_REASONS.has(c.reason),
  );
  if (stalled?.reason) {
    return {
      reason: stalled.reason,
      message: stalled.message ?? 'the Deployment stopped progressing',
    };
  }
  return undefined;
}

function judge(
  echo: Echo,
  deployment: ObservedDeployment | undefined,
  blocker: Blocker | undefined,
): Judgement {
  const name = echo.metadata.name;
  if (blocker) return judgeBlocked(name, blocker);
  if (!deployment) {
    return {
      ready: false,
      progressing: true,
      reason: REASONS.pending,
      message: `Deployment ${name} is being created`,
    };
  }
  const want = echo.spec.replicas;
  const s = deployment.status ?? {};
  const ready = s.readyReplicas ?? 0;
  const updated = s.updatedReplicas ?? 0;
  const total = s.replicas ?? 0;
  const observed = (s.observedGeneration ?? 0) >= (deployment.metadata.generation ?? 0);
  const counts = `${String(ready)}/${String(want)} replicas ready, ${String(updated)} updated`;
  if (
    observed &&
    deployment.spec?.replicas === want &&
    total === want &&
    updated === want &&
    ready === want
  ) {
    return { ready: true, progressing: false, reason: REASONS.ready, message: counts };
  }
  const failure = deploymentFailure(deployment);
  if (failure) {
    return {
      ready: false,
      progressing: false,
      reason: failure.reason,
      message: `${counts}: ${failure.message}`,
    };
  }
  return { ready: false, progressing: true, reason: REASONS.rollingOut, message: counts };
}

/**
 * Sets a condition the way meta.SetStatusCondition does: lastTransitionTime moves only when the
 * status changes; reason, message and observedGeneration always follow.
 */
export function setCondition(
  conditions: readonly Condition[],
  next: Omit<Condition, 'lastTransitionTime'>,
  now: string,
): Condition[] {
  const existing = conditions.find((c) => c.type === next.type);
  const lastTransitionTime = existing?.status === next.status ? existing.lastTransitionTime : now;
  const updated: Condition = { ...next, lastTransitionTime };
  return existing
    ? conditions.map((c) => (c.type === next.type ? updated : c))
    : [...conditions, updated];
}

/** The status the Echo should have now. */
export function desiredStatus(
  echo: Echo,
  deployment: ObservedDeployment | undefined,
  now: Date,
  blocker?: Blocker,
): EchoStatus {
  const verdict = judge(echo, deployment, blocker);
  const generation = echo.metadata.generation ?? 0;
  const time = now.toISOString().replace(/\.\d{3}Z$/, 'Z');
  let conditions = echo.status?.conditions ?? [];
  conditions = setCondition(
    conditions,
    {
      type: READY,
      status: verdict.ready ? 'True' : 'False',
      reason: verdict.reason,
      message: verdict.message,
      observedGeneration: generation,
    },
    time,
  );
  conditions = setCondition(
    conditions,
    {
      type: PROGRESSING,
      status: verdict.progressing ? 'True' : 'False',
      reason: verdict.progressing ? verdict.reason : verdict.ready ? 'Complete' : verdict.reason,
      message: verdict.message,
      observedGeneration: generation,
    },
    time,
  );
  const s = deployment?.status ?? {};
  return {
    observedGeneration: generation,
    replicas: s.replicas ?? 0,
    readyReplicas: s.readyReplicas ?? 0,
    availableReplicas: s.availableReplicas ?? 0,
    updatedReplicas: s.updatedReplicas ?? 0,
    selector: selectorString(echo),
    conditions,
  };
}

/** True when writing `next` would change what the Echo already says. */
export function statusChanged(current: EchoStatus | undefined, next: EchoStatus): boolean {
  return !isDeepStrictEqual(current ?? {}, next);
}

function conditionStatus(status: EchoStatus | undefined, type: string): string | undefined {
  return status?.conditions?.find((c) => c.type === type)?.status;
}

/**
 * Whether writing `next` over the Echo's status can wait to be merged with a later change: `next`
 * only reports a rollout under way, and the status says as much or nothing a user would act on:
 * nothing yet, a rollout under way, Ready for an older generation (`observedGeneration` marks it
 * stale), or Ready while every replica it wants still is (surplus pods going away after a hand
 * edit put back). A rollout that ends within the wait then costs one status write, its outcome.
 * Never for an outcome (Ready, a failure) nor for undoing one (pods lost, a failure cleared): a
 * user or `kubectl wait` sees those at once.
 */
export function canCoalesce(echo: Echo, next: EchoStatus): boolean {
  const current = echo.status;
  if (conditionStatus(next, PROGRESSING) !== 'True') return false;
  if (!current?.conditions?.length) return true;
  if (conditionStatus(current, PROGRESSING) === 'True') return true;
  if (conditionStatus(current, READY) !== 'True') return false;
  return (
    (current.observedGeneration ?? 0) < (echo.metadata.generation ?? 0) ||
    (next.readyReplicas ?? 0) >= echo.spec.replicas
  );
}

/** An Event to record about a change of status. */
export interface StatusEvent {
  type: 'Warning' | 'Normal';
  reason: string;
  note: string;
}

function failureOf(status: EchoStatus | undefined): Condition | undefined {
  const ready = status?.conditions?.find((c) => c.type === READY);
  return ready?.status === 'False' && !UNDER_WAY.has(ready.reason) ? ready : undefined;
}

/**
 * The Event that going from `current` to `next` deserves: a Warning when a failure (the
 * Deployment's, or the operator's own: a name taken, an apply refused)
 * appears (or another takes its place), a Normal one when it clears; nothing while it stays, so
 * a failure is told once, not at every reconcile, and not again by a restarted operator.
 */
export function statusEvent(
  current: EchoStatus | undefined,
  next: EchoStatus,
): StatusEvent | undefined {
  const was = failureOf(current);
  const now = failureOf(next);
  if (now && now.reason !== was?.reason) {
    return { type: 'Warning', reason: now.reason, note: now.message };
  }
  if (was && !now) {
    const ready = next.conditions?.find((c) => c.type === READY);
    return {
      type: 'Normal',
      reason: 'Recovered',
      note: `${was.reason} cleared: ${ready?.message ?? ''}`,
    };
  }
  return undefined;
}
