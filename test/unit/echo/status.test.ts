import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Condition, Echo, EchoStatus } from '../../../src/echo/api.ts';
import {
  canCoalesce,
  desiredStatus,
  setCondition,
  statusChanged,
  statusEvent,
  type ObservedDeployment,
} from '../../../src/echo/status.ts';
import { echo as cachedEcho } from '../../support/echo.ts';

const echo = (replicas = 3, status?: Echo['status']): Echo =>
  cachedEcho({ replicas, uid: 'u', resourceVersion: '1', generation: 4, status });

const deployment = (
  ready: number,
  over: Partial<NonNullable<ObservedDeployment['status']>> = {},
): ObservedDeployment => ({
  metadata: { generation: 2 },
  spec: { replicas: 3 },
  status: {
    observedGeneration: 2,
    replicas: 3,
    updatedReplicas: 3,
    readyReplicas: ready,
    availableReplicas: ready,
    ...over,
  },
});

const t1 = new Date('2026-11-25T10:00:00.123Z');
const t2 = new Date('2026-11-25T11:00:00Z');
const condition = (s: Echo['status'], type: string): Condition | undefined =>
  s?.conditions?.find((c) => c.type === type);

describe('desiredStatus', () => {
  it('is Ready when replicas, updated and ready all match the spec', () => {
    const s = desiredStatus(echo(), deployment(3), t1);
    assert.deepEqual(condition(s, 'Ready'), {
      type: 'Ready',
      status: 'True',
      reason: 'ReplicasReady',
      message: '3/3 replicas ready, 3 updated',
      observedGeneration: 4,
      lastTransitionTime: '2026-11-25T10:00:00Z',
    });
    assert.equal(condition(s, 'Progressing')?.status, 'False');
    assert.equal(condition(s, 'Progressing')?.reason, 'Complete');
    assert.equal(s.observedGeneration, 4, "the Echo's generation, not the Deployment's");
    assert.deepEqual(
      {
        replicas: s.replicas,
        ready: s.readyReplicas,
        available: s.availableReplicas,
        updated: s.updatedReplicas,
      },
      { replicas: 3, ready: 3, available: 3, updated: 3 },
    );
    assert.equal(s.selector, 'app.kubernetes.io/name=echo,app.kubernetes.io/instance=web');
  });

  it('is Progressing while pods are not ready, with counts in the message', () => {
    const s = desiredStatus(echo(), deployment(1), t1);
    assert.equal(condition(s, 'Ready')?.status, 'False');
    assert.equal(condition(s, 'Ready')?.reason, 'RollingOut');
    assert.equal(condition(s, 'Progressing')?.status, 'True');
    assert.match(condition(s, 'Ready')?.message ?? '', /^1\/3 replicas ready/);
  });

  it('is not Ready while the Deployment controller has not seen the latest spec', () => {
    const stale = { ...deployment(3), metadata: { generation: 3 } };
    assert.equal(condition(desiredStatus(echo(), stale, t1), 'Ready')?.status, 'False');
  });

  it('says the Deployment is pending when there is none yet', () => {
    const s = desiredStatus(echo(), undefined, t1);
    assert.equal(condition(s, 'Ready')?.reason, 'DeploymentPending');
    assert.equal(s.readyReplicas, 0);
  });

  it('reports a stalled rollout', () => {
    const stalled = deployment(1, {
      conditions: [
        {
          type: 'Progressing',
          status: 'False',
          reason: 'ProgressDeadlineExceeded',
          message: 'too slow',
        },
      ],
    });
    const s = desiredStatus(echo(), stalled, t1);
    assert.equal(condition(s, 'Progressing')?.status, 'False');
    assert.equal(condition(s, 'Progressing')?.reason, 'ProgressDeadlineExceeded');
    assert.equal(condition(s, 'Ready')?.reason, 'ProgressDeadlineExceeded');
    assert.equal(condition(s, 'Ready')?.message, '1/3 replicas ready, 3 updated: too slow');
  });

  it('reports a ReplicaSet the Deployment controller cannot create', () => {
    for (const reason of ['ReplicaSetCreateError']) {
      // As the Deployment controller leaves it: the refusal stops its sync before the status is
      // written with the generation it saw (2 here).
      const refused = deployment(1, {
        observedGeneration: 1,
        replicas: 0,
        readyReplicas: 0,
        updatedReplicas: 0,
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason,
            message: 'Failed to create new replica set "web-5d8f": exceeded quota: rs',
          },
        ],
      });
      const s = desiredStatus(echo(1), refused, t1);
      assert.equal(condition(s, 'Ready')?.status, 'False');
      assert.equal(condition(s, 'Ready')?.reason, reason);
      assert.match(condition(s, 'Ready')?.message ?? '', /0\/1 replicas ready.*exceeded quota: rs/);
      assert.equal(condition(s, 'Progressing')?.status, 'False');
      assert.equal(statusEvent(undefined, s)?.type, 'Warning');
    }
  });

  const quotaMessage =
    'pods "web-5d8f-x2" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1';
  const replicaFailure = (reason = 'FailedCreate', message = quotaMessage) =>
    deployment(1, {
      updatedReplicas: 1,
      conditions: [
        { type: 'Progressing', status: 'True', reason: 'ReplicaSetUpdated' },
        { type: 'ReplicaFailure', status: 'True', reason, message },
      ],
    });

  it("names the Deployment's ReplicaFailure: its reason, and its message beside the counts", () => {
    const s = desiredStatus(echo(), replicaFailure(), t1);
    assert.deepEqual(
      { ...condition(s, 'Ready'), lastTransitionTime: undefined },
      {
        type: 'Ready',
        status: 'False',
        reason: 'FailedCreate',
        message: `1/3 replicas ready, 1 updated: ${quotaMessage}`,
        observedGeneration: 4,
        lastTransitionTime: undefined,
      },
    );
    assert.equal(condition(s, 'Progressing')?.status, 'False');
    assert.equal(condition(s, 'Progressing')?.reason, 'FailedCreate');
  });

  it('ignores failure conditions the Deployment controller set for an older spec', () => {
    const stale = { ...replicaFailure(), metadata: { generation: 3 } };
    assert.equal(condition(desiredStatus(echo(), stale, t1), 'Ready')?.reason, 'RollingOut');
  });

  it('is Ready once every replica is, whatever a failure condition left behind says', () => {
    const recovered = deployment(3, {
      conditions: [{ type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate' }],
    });
    assert.equal(condition(desiredStatus(echo(), recovered, t1), 'Ready')?.status, 'True');
  });

  it('names the owner of a Deployment it may not touch', () => {
    const s = desiredStatus(echo(), undefined, t1, {
      kind: 'OwnedByAnother',
      owner: 'ConfigMap x',
    });
    assert.equal(condition(s, 'Ready')?.reason, 'DeploymentOwnedByAnother');
    assert.match(condition(s, 'Ready')?.message ?? '', /ConfigMap x/);
  });

  it('keeps exactly one condition of each type across reconciles', () => {
    let s = desiredStatus(echo(), deployment(1), t1);
    for (let i = 0; i < 3; i++) s = desiredStatus(echo(3, s), deployment(i), t2);
    assert.deepEqual(
      s.conditions?.map((c) => c.type),
      ['Ready', 'Progressing'],
    );
  });
});

describe('statusEvent', () => {
  const failing = (reason: string, message: string, from?: EchoStatus): EchoStatus =>
    desiredStatus(
      echo(3, from),
      deployment(1, {
        conditions: [{ type: 'ReplicaFailure', status: 'True', reason, message }],
      }),
      t1,
    );
  const rolling = desiredStatus(echo(), deployment(1), t1);

  it('is one Warning when a Deployment failure appears, with its reason and message', () => {
    const s = failing('FailedCreate', 'exceeded quota: q');
    assert.deepEqual(statusEvent(rolling, s), {
      type: 'Warning',
      reason: 'FailedCreate',
      note: '1/3 replicas ready, 3 updated: exceeded quota: q',
    });
    assert.equal(statusEvent(undefined, s)?.type, 'Warning', 'also on a first status');
  });

  it('is nothing while the same failure stays, though its counts move', () => {
    const s = failing('FailedCreate', 'exceeded quota: q');
    const later = desiredStatus(
      echo(3, s),
      deployment(2, {
        conditions: [{ type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate' }],
      }),
      t2,
    );
    assert.equal(statusEvent(s, later), undefined);
  });

  it('is a new Warning when another failure takes the place of the first', () => {
    const s = failing('FailedCreate', 'exceeded quota: q');
    const stalled = desiredStatus(
      echo(3, s),
      deployment(1, {
        conditions: [{ type: 'Progressing', status: 'False', reason: 'ProgressDeadlineExceeded' }],
      }),
      t2,
    );
    assert.equal(statusEvent(s, stalled)?.reason, 'ProgressDeadlineExceeded');
  });

  it('is a Normal Recovered when the failure clears', () => {
    const s = failing('FailedCreate', 'exceeded quota: q');
    const ready = desiredStatus(echo(3, s), deployment(3), t2);
    assert.deepEqual(statusEvent(s, ready), {
      type: 'Normal',
      reason: 'Recovered',
      note: 'FailedCreate cleared: 3/3 replicas ready, 3 updated',
    });
  });

  it('is nothing for a rollout under way or a Deployment still to come', () => {
    const ready = desiredStatus(echo(3, rolling), deployment(3), t2);
    assert.equal(statusEvent(undefined, rolling), undefined);
    assert.equal(statusEvent(rolling, ready), undefined);
    const waiting = desiredStatus(echo(3, ready), undefined, t2, {
      kind: 'Waiting',
      message: 'Deployment web is being deleted',
    });
    assert.equal(statusEvent(ready, waiting), undefined);
  });

  it("tells the operator's own blockers once, as the Deployment's failures are told", () => {
    const ready = desiredStatus(echo(3, rolling), deployment(3), t2);
    const owned = desiredStatus(echo(3, ready), undefined, t2, {
      kind: 'OwnedByAnother',
      owner: 'ConfigMap x',
    });
    assert.deepEqual(statusEvent(ready, owned), {
      type: 'Warning',
      reason: 'DeploymentOwnedByAnother',
      note: 'Deployment web is controlled by ConfigMap x; the operator leaves it alone',
    });
    assert.equal(statusEvent(owned, owned), undefined);
    const taken = desiredStatus(echo(3, owned), undefined, t2, { kind: 'NameTaken' });
    assert.equal(statusEvent(owned, taken)?.reason, 'DeploymentNameTaken');
    assert.equal(statusEvent(taken, ready)?.reason, 'Recovered');
  });
});

describe('setCondition', () => {
  const base = {
    type: 'Ready',
    status: 'False' as const,
    reason: 'RollingOut',
    message: '1/3',
    observedGeneration: 1,
  };

  it('moves lastTransitionTime only when the status changes', () => {
    const [first] = setCondition([], base, 'T1');
    assert.equal(first?.lastTransitionTime, 'T1');
    const [same] = setCondition([first], { ...base, message: '2/3', observedGeneration: 2 }, 'T2');
    assert.equal(same?.lastTransitionTime, 'T1', 'same status: time kept');
    assert.equal(same.message, '2/3', 'message follows');
    assert.equal(same.observedGeneration, 2, 'generation follows');
    const [flipped] = setCondition(
      [same],
      { ...base, status: 'True', reason: 'ReplicasReady' },
      'T3',
    );
    assert.equal(flipped?.lastTransitionTime, 'T3');
  });
});

describe('statusChanged', () => {
  it('is false for a status that only differs in key order', () => {
    const s = desiredStatus(echo(), deployment(3), t1);
    const reordered = JSON.parse(JSON.stringify({ conditions: s.conditions, ...s })) as typeof s;
    assert.equal(statusChanged(reordered, s), false);
  });
  it('is false when recomputed later with nothing changed: steady state writes nothing', () => {
    const s = desiredStatus(echo(), deployment(3), t1);
    assert.equal(statusChanged(s, desiredStatus(echo(3, s), deployment(3), t2)), false);
  });
  it('is true when a count changes', () => {
    const s = desiredStatus(echo(), deployment(3), t1);
    assert.equal(statusChanged(s, desiredStatus(echo(3, s), deployment(2), t2)), true);
  });
});

describe('canCoalesce', () => {
  const ready = desiredStatus(echo(), deployment(3), t1);
  const rolling = desiredStatus(echo(), deployment(1), t1);
  const surplus = desiredStatus(echo(), deployment(3, { replicas: 5 }), t1);
  const failing = desiredStatus(
    echo(),
    deployment(1, {
      conditions: [{ type: 'ReplicaFailure', status: 'True', reason: 'FailedCreate' }],
    }),
    t1,
  );
  const GENERATION = 4;
  const over = (status: EchoStatus | undefined): Echo => echo(3, status);

  it('holds progress over no status, over progress, and over Ready of an older generation', () => {
    assert.equal(canCoalesce(over(undefined), rolling), true, 'a new Echo');
    assert.equal(canCoalesce(over({}), rolling), true, 'an Echo without conditions');
    assert.equal(canCoalesce(over(rolling), rolling), true, 'counts moving');
    const olderReady = { ...ready, observedGeneration: GENERATION - 1 };
    assert.equal(canCoalesce(over(olderReady), rolling), true, 'a changed spec');
  });

  it('holds progress over Ready while every replica wanted is still ready', () => {
    assert.equal(surplus.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
    assert.equal(canCoalesce(over(ready), surplus), true, 'surplus pods going away');
  });

  it('writes an outcome at once: Ready, a failure', () => {
    assert.equal(canCoalesce(over(rolling), ready), false);
    assert.equal(canCoalesce(over(undefined), ready), false);
    assert.equal(canCoalesce(over(rolling), failing), false);
  });

  it('writes at once progress that undoes an outcome: pods lost, a failure cleared', () => {
    assert.equal(canCoalesce(over(ready), rolling), false, 'Ready for this generation');
    assert.equal(canCoalesce(over(failing), rolling), false, 'the failure goes');
    const olderFailure = { ...failing, observedGeneration: GENERATION - 1 };
    assert.equal(canCoalesce(over(olderFailure), rolling), false, 'a fix of the spec');
  });
});
