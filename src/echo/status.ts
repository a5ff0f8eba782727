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

/** Why the operator could not put its Deployment in place, when it could not. */
export type Blocker =
  { kind: 'OwnedByAnother'; owner: string } | { kind: 'ApplyFailed'; message: string };

export const READY = 'Ready';
export const PROGRESSING = 'Progressing';

interface Judgement {
  ready: boolean;
  progressing: boolean;
  reason: string;
  message: string;
}

function judge(
  echo: Echo,
  deployment: ObservedDeployment | undefined,
  blocker: Blocker | undefined,
): Judgement {
  const name = echo.metadata.name;
  if (blocker?.kind === 'OwnedByAnother') {
    return {
      ready: false,
      progressing: false,
      reason: 'DeploymentOwnedByAnother',
      message: `Deployment ${name} is controlled by ${blocker.owner}; the operator leaves it alone`,
    };
  }
  if (blocker?.kind === 'ApplyFailed') {
    return { ready: false, progressing: false, reason: 'ApplyFailed', message: blocker.message };
  }
  if (!deployment) {
    return {
      ready: false,
      progressing: true,
      reason: 'DeploymentPending',
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
  const stalled = s.conditions?.find(
    (c) => c.type === 'Progressing' && c.reason === 'ProgressDeadlineExceeded',
  );
  if (stalled) {
    return {
      ready: false,
      progressing: false,
      reason: 'ProgressDeadlineExceeded',
      message: `${counts}: ${stalled.message ?? 'the Deployment stopped progressing'}`,
    };
  }
  if (
    observed &&
    deployment.spec?.replicas === want &&
    total === want &&
    updated === want &&
    ready === want
  ) {
    return { ready: true, progressing: false, reason: 'ReplicasReady', message: counts };
  }
  return { ready: false, progressing: true, reason: 'RollingOut', message: counts };
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
