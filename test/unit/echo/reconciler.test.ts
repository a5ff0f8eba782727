// The reconciler's choice of writes and Events, with the API server, the caches and the recorder
// faked: what the integration tests cannot provoke on purpose (an apply the server finds nothing to
// change in) or pin down without timing (a rollout's progress held back, then written).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Echo } from '../../../src/echo/api.ts';
import { desiredDeployment } from '../../../src/echo/desired.ts';
import type { CachedDeployment } from '../../../src/echo/cache.ts';
import { echoReconciler } from '../../../src/echo/reconciler.ts';
import type { KubeClient } from '../../../src/kube/client.ts';
import type { ReconcileResult } from '../../../src/runtime/controller.ts';
import type { EventRecorder } from '../../../src/runtime/events.ts';

const echo: Echo = {
  apiVersion: 'example.com/v1',
  kind: 'Echo',
  metadata: { name: 'web', namespace: 'team', uid: 'uid-1', resourceVersion: '7', generation: 1 },
  spec: { replicas: 3 },
};

const DEPLOYMENT = '/apis/apps/v1/namespaces/team/deployments/web';
const STATUS = '/apis/example.com/v1/namespaces/team/echoes/web/status';

/** The Deployment as the server holds it after the operator's apply of `of`, at `resourceVersion`. */
const applied = (
  resourceVersion: string,
  status: CachedDeployment['status'] = {},
  of: Echo = echo,
): CachedDeployment => ({
  ...structuredClone(desiredDeployment(of)),
  metadata: { ...desiredDeployment(of).metadata, resourceVersion, generation: 1 },
  status: { observedGeneration: 1, ...status },
});

const allReady = { replicas: 3, updatedReplicas: 3, readyReplicas: 3, availableReplicas: 3 };
const rolling = { replicas: 3, updatedReplicas: 3, readyReplicas: 1, availableReplicas: 1 };

interface Recorded {
  type: string;
  reason: string;
  note: string;
}

/**
 * A reconciler over caches holding `state` (change it between reconciles); the fake server answers
 * a Deployment apply with `state.afterApply` and a status apply with the Echo that status makes,
 * which the Echo cache then holds, as `assume` makes it.
 */
function fakeOperator(
  state: { echo: Echo; cached: CachedDeployment | undefined; afterApply?: CachedDeployment },
  progressStatusDelayMs?: number,
) {
  const events: Recorded[] = [];
  const applies: string[] = [];
  const client = {
    apply: (path: string, body: Echo) => {
      applies.push(path);
      if (!path.endsWith('/status')) return Promise.resolve(state.afterApply);
      state.echo = { ...state.echo, status: body.status! };
      return Promise.resolve(state.echo);
    },
  } as unknown as KubeClient;
  const recorder = {
    record: (_ref: unknown, type: string, reason: string, _action: string, note: string) => {
      events.push({ type, reason, note });
    },
  } as unknown as EventRecorder;
  const reconcile = echoReconciler({
    client,
    echoes: { get: () => state.echo, assume: () => undefined },
    deployments: { get: () => state.cached, assume: () => undefined },
    recorder,
    now: () => new Date('2026-11-27T10:00:00Z'),
    ...(progressStatusDelayMs === undefined ? {} : { progressStatusDelayMs }),
  });
  return {
    events,
    applies,
    reconcile: (): Promise<ReconcileResult | undefined> =>
      reconcile('team/web', new AbortController().signal),
  };
}

describe('echoReconciler Events', () => {
  it('records no Event for an apply the server found nothing to change in', async () => {
    const cached = applied('10', allReady);
    cached.spec = { ...cached.spec, replicas: 5 };
    const op = fakeOperator({ echo, cached, afterApply: applied('10', allReady) });
    await op.reconcile();
    assert.deepEqual(op.applies, [DEPLOYMENT, STATUS]);
    assert.deepEqual(op.events, []);
  });

  it('records DeploymentReverted, naming the field, for a change someone else made', async () => {
    const cached = applied('10', allReady);
    cached.spec = { ...cached.spec, replicas: 5 };
    const op = fakeOperator({ echo, cached, afterApply: applied('11', allReady) });
    await op.reconcile();
    assert.deepEqual(op.events, [
      {
        type: 'Normal',
        reason: 'DeploymentReverted',
        note: 'Deployment web: spec.replicas was changed by someone else; put back as the Echo says',
      },
    ]);
  });

  it('records no Event for a Deployment created or changed because the Echo asked', async () => {
    const created = fakeOperator({ echo, cached: undefined, afterApply: applied('10') });
    await created.reconcile();
    const before: Echo = { ...echo, spec: { replicas: 2 } };
    const changed = fakeOperator({
      echo,
      cached: applied('10', {}, before),
      afterApply: applied('11'),
    });
    await changed.reconcile();
    assert.deepEqual([...created.events, ...changed.events], []);
    assert.deepEqual([...created.applies, ...changed.applies], [DEPLOYMENT, DEPLOYMENT]);
  });

  it('records a Deployment failure once, when the status first says so', async () => {
    const failing = applied('10', {
      replicas: 1,
      readyReplicas: 1,
      updatedReplicas: 1,
      conditions: [
        {
          type: 'ReplicaFailure',
          status: 'True',
          reason: 'FailedCreate',
          message: 'exceeded quota: q',
        },
      ],
    });
    const op = fakeOperator({ echo, cached: failing });
    await op.reconcile();
    assert.deepEqual(op.applies, [STATUS]);
    assert.deepEqual(op.events, [
      {
        type: 'Warning',
        reason: 'FailedCreate',
        note: '1/3 replicas ready, 1 updated: exceeded quota: q',
      },
    ]);
    await op.reconcile();
    assert.deepEqual(op.applies, [STATUS], 'nothing to write again');
    assert.equal(op.events.length, 1, 'nothing to tell again');
  });
});

describe('echoReconciler status writes', () => {
  it('brings Echoes the progress budget cannot serve back no faster than it refills', async () => {
    // 40 rollouts under way at once, their progress due now: the budget's burst of 10 writes goes
    // to the first ten; the other 30 wait, each told to come back after the budget could have
    // served every Echo waiting before it, not all after the same short delay.
    const fleet = new Map<string, Echo>();
    for (let i = 0; i < 40; i++) {
      const e: Echo = { ...echo, metadata: { ...echo.metadata, name: `web-${String(i)}` } };
      fleet.set(`team/web-${String(i)}`, e);
    }
    const written: string[] = [];
    const client = {
      apply: (_path: string, body: Echo) => {
        const key = `team/${body.metadata.name}`;
        written.push(key);
        const updated = { ...fleet.get(key)!, status: body.status! };
        fleet.set(key, updated);
        return Promise.resolve(updated);
      },
    } as unknown as KubeClient;
    const reconcile = echoReconciler({
      client,
      echoes: { get: (key) => fleet.get(key), assume: () => undefined },
      deployments: {
        get: (key) => applied('11', rolling, fleet.get(key)),
        assume: () => undefined,
      },
      recorder: { record: () => undefined } as unknown as EventRecorder,
      progressStatusDelayMs: 0,
    });
    const delays: number[] = [];
    for (const key of fleet.keys()) {
      const result = await reconcile(key, new AbortController().signal);
      if (result?.requeueAfterMs !== undefined) delays.push(result.requeueAfterMs);
    }
    assert.equal(written.length, 10, "the budget's burst");
    assert.equal(delays.length, 30, 'every other Echo comes back later');
    assert.deepEqual(
      delays,
      delays.map((_, i) => (i + 1) * 1000),
      'at one progress write a second: the n-th Echo waiting comes back after n seconds',
    );
  });

  it("holds a rollout's progress back and asks to be run again when the delay is up", async () => {
    const state = { echo, cached: undefined, afterApply: applied('10') };
    const op = fakeOperator(state, 60_000);
    const result = await op.reconcile();
    assert.deepEqual(op.applies, [DEPLOYMENT], 'the Deployment, no status yet');
    assert.ok(
      result?.requeueAfterMs !== undefined &&
        result.requeueAfterMs > 0 &&
        result.requeueAfterMs <= 60_000,
    );
  });

  it('writes the outcome at once, held progress or not: one status write for the rollout', async () => {
    const state: {
      echo: Echo;
      cached: CachedDeployment | undefined;
      afterApply: CachedDeployment;
    } = { echo, cached: undefined, afterApply: applied('10') };
    const op = fakeOperator(state, 60_000);
    await op.reconcile();
    state.cached = applied('11', rolling);
    await op.reconcile();
    state.cached = applied('12', allReady);
    const result = await op.reconcile();
    assert.deepEqual(op.applies, [DEPLOYMENT, STATUS]);
    assert.equal(state.echo.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'True');
    assert.equal(result, undefined, 'nothing held, nothing to come back for');
  });

  it('writes progress held for the whole delay', async () => {
    const state = { echo, cached: applied('11', rolling) };
    const op = fakeOperator(state, 0);
    assert.equal(await op.reconcile(), undefined);
    assert.deepEqual(op.applies, [STATUS]);
    assert.equal(
      state.echo.status?.conditions?.find((c) => c.type === 'Progressing')?.status,
      'True',
    );
  });

  it('writes at once an Echo that was Ready for this generation and no longer is', async () => {
    const state = { echo, cached: applied('11', allReady) };
    const op = fakeOperator(state, 60_000);
    await op.reconcile();
    state.cached = applied('12', rolling);
    await op.reconcile();
    assert.deepEqual(op.applies, [STATUS, STATUS]);
    assert.equal(state.echo.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
  });
});

describe('echoReconciler at a resync', () => {
  it('skips an Echo whose Echo and Deployment objects a reconcile found nothing to do for', async () => {
    const state = { echo, cached: applied('11', allReady), afterApply: applied('13', allReady) };
    const op = fakeOperator(state);
    await op.reconcile();
    assert.deepEqual(op.applies, [STATUS], 'the first reconcile writes the status');
    await op.reconcile();
    assert.deepEqual(op.applies, [STATUS], 'its own write changed nothing more');

    // The caches replace objects, never change them: the same objects can only be decided the
    // same way, so a replay of them (as a resync is) looks no further. This in-place edit shows it.
    state.cached.spec = { ...state.cached.spec, replicas: 9 };
    assert.equal(await op.reconcile(), undefined);
    assert.deepEqual(op.applies, [STATUS]);

    // A new Deployment object (a change, seen through the watch) is compared again.
    state.cached = { ...applied('12', allReady), spec: { ...state.cached.spec, replicas: 9 } };
    await op.reconcile();
    assert.deepEqual(op.applies, [STATUS, DEPLOYMENT]);
  });

  it('compares again an Echo replaced by a change of its own', async () => {
    const state = { echo, cached: applied('11', allReady), afterApply: applied('13', allReady) };
    const op = fakeOperator(state);
    await op.reconcile();
    await op.reconcile();
    state.echo = { ...state.echo, spec: { replicas: 4 } };
    await op.reconcile();
    assert.deepEqual(op.applies, [STATUS, DEPLOYMENT, STATUS]);
  });
});
