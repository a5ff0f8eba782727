// The reconciler's choice of writes, Events and Result, with the API server, the caches and the
// recorder faked: what the integration tests cannot provoke on purpose (an apply the server finds
// nothing to change in) or pin down without timing (a rollout's progress held back, then written).
// How the runtime acts on a Result (blocked retries doubling, resyncs skipping settled keys, which
// events wake a blocked key) is test/unit/runtime/controller.test.ts's.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Echo } from '../../../src/echo/api.ts';
import { desiredDeployment, FIELD_MANAGER } from '../../../src/echo/desired.ts';
import type { CachedDeployment } from '../../../src/echo/projection.ts';
import { echoReconciler } from '../../../src/echo/reconciler.ts';
import type { KubeClient, RequestOptions } from '../../../src/kube/client.ts';
import { ApiError } from '../../../src/kube/errors.ts';
import { APPLY_PATCH } from '../../../src/kube/request-info.ts';
import { Result, type RetrySchedule } from '../../../src/runtime/controller.ts';
import type { EventRecorder } from '../../../src/runtime/events.ts';

const echo: Echo = {
  apiVersion: 'example.com/v1',
  kind: 'Echo',
  metadata: { name: 'web', namespace: 'team', uid: 'uid-1', resourceVersion: '7', generation: 1 },
  spec: { replicas: 3 },
};

const DEPLOYMENT = '/apis/apps/v1/namespaces/team/deployments/web';
const STATUS = '/apis/example.com/v1/namespaces/team/echoes/web/status';

/** The reconciler's schedules: a name someone else holds, and an apply the server refused. */
const NAME_HELD_RETRY: RetrySchedule = { initialMs: 5_000, maxMs: 300_000 };
const REFUSED_RETRY: RetrySchedule = { initialMs: 60_000, maxMs: 3600_000 };

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

interface FakeState {
  echo: Echo;
  /** What the Deployment cache holds (only Deployments labelled as the operator's). */
  cached: CachedDeployment | undefined;
  /** What the API server holds, for a GET; the cached Deployment when unset. */
  server?: CachedDeployment | undefined;
  afterApply?: CachedDeployment;
  /** The answer to every Deployment apply, instead of `afterApply`. */
  refuse?: ApiError;
}

/** A Deployment apply as the fake server saw it. */
interface Applied {
  force: boolean | undefined;
  uid: string | undefined;
}

/** A request as the fake server saw it. */
interface Sent {
  method: string;
  path: string;
  query?: RequestOptions['query'];
  contentType?: string;
  body?: unknown;
}

const notFound = (path: string): ApiError =>
  new ApiError(
    404,
    { kind: 'Status', code: 404, reason: 'NotFound', message: 'not found' },
    'GET',
    path,
  );

/**
 * A reconciler over caches holding `state` (change it between reconciles); the fake server answers
 * a Deployment apply with `state.afterApply` and a status apply with the Echo that status makes,
 * which `state.echo` (the Echo cache) then holds, as `assume` makes it. `clock.ms` is the
 * reconciler's clock. `applies` are the server-side applies' paths, `requests` the other requests
 * (GET, strategic PATCH, DELETE), `sent` every request in full.
 */
function fakeOperator(state: FakeState, progressStatusDelayMs?: number) {
  const events: Recorded[] = [];
  const applies: string[] = [];
  const deploymentApplies: Applied[] = [];
  const requests: { method: string; path: string; body?: unknown }[] = [];
  const sent: Sent[] = [];
  const desired: (number | undefined)[] = [];
  const clock = { ms: 1000 };
  const client = {
    request: (opts: RequestOptions) => {
      const method = opts.method ?? 'GET';
      const { path, query, contentType, body } = opts;
      sent.push({
        method,
        path,
        ...(query ? { query } : {}),
        ...(contentType ? { contentType } : {}),
        ...(body ? { body } : {}),
      });
      if (method === 'PATCH' && contentType === APPLY_PATCH) {
        applies.push(path);
        const object = body as Echo;
        if (!path.endsWith('/status')) {
          deploymentApplies.push({ force: query?.force === true, uid: object.metadata.uid });
          return state.refuse ? Promise.reject(state.refuse) : Promise.resolve(state.afterApply);
        }
        state.echo = { ...state.echo, status: object.status! };
        return Promise.resolve(state.echo);
      }
      requests.push({ method, path, ...(body ? { body } : {}) });
      const server = 'server' in state ? state.server : state.cached;
      if (method !== 'GET') return Promise.resolve({});
      if (server) return Promise.resolve(server);
      return Promise.reject(notFound(path));
    },
  } as unknown as Pick<KubeClient, 'request'>;
  const recorder = {
    record: (_ref: unknown, type: string, reason: string, _action: string, note: string) => {
      events.push({ type, reason, note });
    },
  } as unknown as EventRecorder;
  const reconciler = echoReconciler({
    client,
    echoes: { assume: () => undefined },
    deployments: { get: () => state.cached, assume: () => undefined },
    recorder,
    now: () => new Date('2026-11-27T10:00:00Z'),
    clock: () => clock.ms,
    onDesiredReplicas: (_key, replicas) => desired.push(replicas),
    ...(progressStatusDelayMs === undefined ? {} : { progressStatusDelayMs }),
  });
  const context = () => ({ key: 'team/web', signal: new AbortController().signal });
  return {
    events,
    applies,
    deploymentApplies,
    requests,
    sent,
    desired,
    clock,
    reconcile: (): Promise<Result> => reconciler.reconcile(state.echo, context()),
    deleted: () => reconciler.deleted?.('team/web', context()),
  };
}

describe('echoReconciler Events', () => {
  it('records no Event for an apply the server found nothing to change in', async () => {
    const cached = applied('10', allReady);
    cached.spec = { ...cached.spec, replicas: 5 };
    const op = fakeOperator({ echo, cached, afterApply: applied('10', allReady) });
    assert.deepEqual(await op.reconcile(), Result.done());
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
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(op.applies, [STATUS]);
    assert.deepEqual(op.events, [
      {
        type: 'Warning',
        reason: 'FailedCreate',
        note: '1/3 replicas ready, 1 updated: exceeded quota: q',
      },
    ]);
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(op.applies, [STATUS], 'nothing to write again');
    assert.equal(op.events.length, 1, 'nothing to tell again');
  });
});

describe('echoReconciler requests', () => {
  it('applies the Deployment and the status server-side, as its field manager', async () => {
    const own = applied('10', allReady);
    own.metadata.uid = 'd-1';
    own.spec = { ...own.spec, replicas: 5 };
    const op = fakeOperator({ echo, cached: own, afterApply: applied('11', allReady) });
    await op.reconcile();
    assert.deepEqual(
      op.sent.map(({ method, path, query, contentType }) => ({ method, path, query, contentType })),
      [
        {
          method: 'PATCH',
          path: DEPLOYMENT,
          query: { fieldManager: FIELD_MANAGER, force: true },
          contentType: APPLY_PATCH,
        },
        {
          method: 'PATCH',
          path: STATUS,
          query: { fieldManager: FIELD_MANAGER, force: true },
          contentType: APPLY_PATCH,
        },
      ],
    );
    const status = op.sent[1]?.body as Echo;
    assert.deepEqual(Object.keys(status).sort(), ['apiVersion', 'kind', 'metadata', 'status']);
    assert.deepEqual(status.metadata, { name: 'web', namespace: 'team' }, 'the status alone');
  });

  it('applies a new Deployment without force, so that one appearing meanwhile conflicts', async () => {
    const op = fakeOperator({ echo, cached: undefined, afterApply: applied('10') });
    await op.reconcile();
    assert.deepEqual(op.sent[0], { method: 'GET', path: DEPLOYMENT });
    const [, apply] = op.sent;
    assert.ok(apply);
    assert.deepEqual(apply.query, { fieldManager: FIELD_MANAGER }, 'no force');
    assert.equal(apply.contentType, APPLY_PATCH);
  });

  it('sends nothing for an Echo and Deployment already in line', async () => {
    const state = { echo, cached: applied('11', allReady) };
    const op = fakeOperator(state);
    await op.reconcile();
    assert.deepEqual(op.applies, [STATUS], 'the first reconcile writes the status');
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(op.sent.length, 1, 'its own write changed nothing more');
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
      request: (opts: RequestOptions) => {
        assert.equal(opts.contentType, APPLY_PATCH);
        assert.ok(opts.path.endsWith('/status'));
        const body = opts.body as Echo;
        const key = `team/${body.metadata.name}`;
        written.push(key);
        const updated = { ...fleet.get(key)!, status: body.status! };
        fleet.set(key, updated);
        return Promise.resolve(updated);
      },
    } as unknown as Pick<KubeClient, 'request'>;
    const reconciler = echoReconciler({
      client,
      echoes: { assume: () => undefined },
      deployments: {
        get: (key) => applied('11', rolling, fleet.get(key)),
        assume: () => undefined,
      },
      recorder: { record: () => undefined } as unknown as EventRecorder,
      progressStatusDelayMs: 0,
      // The budget refills on this clock: stopped, it holds its burst and no more.
      clock: () => 1000,
    });
    const delays: number[] = [];
    for (const [key, e] of fleet) {
      const result = await reconciler.reconcile(e, { key, signal: new AbortController().signal });
      if (result.kind === 'requeue') delays.push(result.afterMs);
      else assert.deepEqual(result, Result.done());
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
    assert.deepEqual(result, Result.requeueAfter(60_000));
    op.clock.ms += 45_000;
    assert.deepEqual(await op.reconcile(), Result.requeueAfter(15_000), 'what is left of it');
    assert.deepEqual(op.applies, [DEPLOYMENT, DEPLOYMENT]);
    op.clock.ms += 15_000;
    assert.deepEqual(await op.reconcile(), Result.done(), 'held for the whole delay: written');
    assert.deepEqual(op.applies, [DEPLOYMENT, DEPLOYMENT, DEPLOYMENT, STATUS]);
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
    assert.deepEqual(result, Result.done(), 'nothing held, nothing to come back for');
  });

  it('writes progress held for the whole delay', async () => {
    const state = { echo, cached: applied('11', rolling) };
    const op = fakeOperator(state, 0);
    assert.deepEqual(await op.reconcile(), Result.done());
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
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(op.applies, [STATUS, STATUS]);
    assert.equal(state.echo.status?.conditions?.find((c) => c.type === 'Ready')?.status, 'False');
  });
});

describe('echoReconciler once a reconcile is done', () => {
  // The runtime's Controller skips a resync of a key whose last reconcile was done, until an event
  // touches it (controller.test.ts): what the reconciler answers when it is run is what matters.
  it('is done with an Echo it found nothing to do for, and compares again on a change', async () => {
    const state = { echo, cached: applied('11', allReady), afterApply: applied('13', allReady) };
    const op = fakeOperator(state);
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(op.applies, [STATUS], 'the first reconcile writes the status');
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(op.applies, [STATUS], 'its own write changed nothing more');

    // A new Deployment object (a change, seen through the watch) is compared again.
    state.cached = { ...applied('12', allReady), spec: { ...state.cached.spec, replicas: 9 } };
    assert.deepEqual(await op.reconcile(), Result.done());
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

describe('echoReconciler and a going Echo', () => {
  it('writes nothing for an Echo being deleted, and drops its desired replicas', async () => {
    const state: FakeState = {
      echo: { ...echo, metadata: { ...echo.metadata, deletionTimestamp: '2026-11-27T09:59:00Z' } },
      cached: applied('10', allReady),
    };
    const op = fakeOperator(state);
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(op.sent, []);
    assert.deepEqual(op.desired, [undefined]);
  });

  it('reports desired replicas while the Echo lives, and none once it is deleted', async () => {
    const op = fakeOperator({ echo, cached: applied('11', allReady) });
    await op.reconcile();
    await op.deleted();
    assert.deepEqual(op.desired, [3, undefined]);
    assert.equal(op.sent.length, 1, 'deleted sends nothing: the garbage collector does it');
  });

  it("forgets a deleted Echo's held progress: one of the same name waits afresh", async () => {
    const state = { echo, cached: applied('11', rolling) };
    const op = fakeOperator(state, 60_000);
    assert.deepEqual(await op.reconcile(), Result.requeueAfter(60_000));
    op.clock.ms += 50_000;
    await op.deleted();
    assert.deepEqual(await op.reconcile(), Result.requeueAfter(60_000));
  });

  it('is done with an Echo whose namespace is going away', async () => {
    const terminating = new ApiError(
      403,
      {
        kind: 'Status',
        code: 403,
        reason: 'Forbidden',
        message: 'namespace team is being terminated',
        details: { causes: [{ reason: 'NamespaceTerminating', message: 'team' }] },
      },
      'PATCH',
      DEPLOYMENT,
    );
    const op = fakeOperator({ echo, cached: undefined, refuse: terminating });
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(op.events, []);
  });
});

/** A Deployment of the Echo's name that someone else made (`kubectl create deployment web`). */
function foreign(
  ownerReferences?: CachedDeployment['metadata']['ownerReferences'],
): CachedDeployment {
  return {
    metadata: {
      name: 'web',
      namespace: 'team',
      uid: 'theirs',
      resourceVersion: '5',
      generation: 1,
      labels: { app: 'web' },
      ...(ownerReferences ? { ownerReferences } : {}),
    },
    spec: { replicas: 1, selector: { matchLabels: { app: 'web' } } },
    status: { observedGeneration: 1, replicas: 1, readyReplicas: 1 },
  };
}

const invalid = (field: string, message: string): ApiError =>
  new ApiError(
    422,
    {
      kind: 'Status',
      code: 422,
      reason: 'Invalid',
      message: `Deployment.apps "web" is invalid: ${field}: ${message}`,
      details: { causes: [{ field, message }] },
    },
    'PATCH',
    DEPLOYMENT,
  );

const ready = (e: Echo) => e.status?.conditions?.find((c) => c.type === 'Ready');
const writes = (op: ReturnType<typeof fakeOperator>) =>
  op.requests.filter((r) => r.method !== 'GET').map((r) => r.method);

describe('echoReconciler and Deployments it does not control', () => {
  it('never writes to a Deployment of its name that it cannot see in its cache', async () => {
    // Today's break: the apply was refused on the selector and the Deployment deleted.
    const state: FakeState = {
      echo,
      cached: undefined,
      server: foreign(),
      refuse: invalid('spec.selector', 'field is immutable'),
    };
    const op = fakeOperator(state);
    const result = await op.reconcile();
    assert.deepEqual(op.deploymentApplies, [], 'no apply');
    assert.deepEqual(writes(op), [], 'no delete');
    assert.deepEqual(op.requests, [{ method: 'GET', path: DEPLOYMENT }]);
    assert.equal(ready(state.echo)?.status, 'False');
    assert.equal(ready(state.echo)?.reason, 'DeploymentNameTaken');
    assert.match(ready(state.echo)?.message ?? '', /Deployment web exists and is not this Echo's/);
    assert.deepEqual(op.events, [
      { type: 'Warning', reason: 'DeploymentNameTaken', note: ready(state.echo)?.message },
    ]);
    // Looked at again in 5 s, doubling (the runtime's), or at once when a Deployment changes.
    assert.deepEqual(result, Result.blocked('NameTaken', NAME_HELD_RETRY, 'any'));

    // The runtime runs it again when the retry is due: it looks again, and still applies nothing.
    assert.deepEqual(await op.reconcile(), result);
    assert.equal(op.requests.length, 2, 'looked again');
    assert.deepEqual(op.deploymentApplies, []);
    assert.equal(op.events.length, 1, 'told once');

    // The user deletes theirs: the next look finds the name free and takes it.
    state.server = undefined;
    delete state.refuse;
    state.afterApply = applied('20');
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(
      op.deploymentApplies,
      [{ force: false, uid: undefined }],
      'created, not forced',
    );
    assert.equal(op.events.at(-1)?.reason, 'Recovered');
  });

  it('names the controller of a Deployment another controller holds, and never applies', async () => {
    const configMap = {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      name: 'x',
      uid: 'cm',
      controller: true,
    };
    const state: FakeState = { echo, cached: undefined, server: foreign([configMap]) };
    const op = fakeOperator(state);
    const result = await op.reconcile();
    assert.deepEqual(op.deploymentApplies, []);
    assert.equal(ready(state.echo)?.reason, 'DeploymentOwnedByAnother');
    assert.match(ready(state.echo)?.message ?? '', /controlled by ConfigMap x/);
    assert.deepEqual(result, Result.blocked('OwnedByAnother', NAME_HELD_RETRY, 'any'));
  });

  it('reports a Deployment controlled by another Echo instead of waiting for it forever', async () => {
    const other = {
      apiVersion: 'example.com/v1',
      kind: 'Echo',
      name: 'other',
      uid: 'uid-9',
      controller: true,
    };
    const held = {
      ...applied('10'),
      metadata: { ...applied('10').metadata, ownerReferences: [other] },
    };
    const state: FakeState = { echo, cached: held };
    const op = fakeOperator(state);
    const result = await op.reconcile();
    assert.deepEqual(op.deploymentApplies, []);
    assert.equal(ready(state.echo)?.reason, 'DeploymentOwnedByAnother');
    assert.match(ready(state.echo)?.message ?? '', /controlled by Echo other/);
    assert.equal(op.events.length, 1);
    assert.deepEqual(result, Result.blocked('OwnedByAnother', NAME_HELD_RETRY, 'any'));
  });

  it('waits for the Deployment of a deleted Echo of the same name to be collected', async () => {
    const previous = { ...applied('10'), metadata: { ...applied('10').metadata } };
    previous.metadata.ownerReferences = [
      { ...previous.metadata.ownerReferences![0]!, uid: 'uid-0' },
    ];
    const state: FakeState = { echo, cached: previous };
    const op = fakeOperator(state, 0);
    const result = await op.reconcile();
    assert.deepEqual(op.deploymentApplies, []);
    assert.equal(ready(state.echo)?.reason, 'DeploymentPending');
    assert.match(ready(state.echo)?.message ?? '', /deleted Echo of the same name \(uid uid-0\)/);
    assert.deepEqual(op.events, [], 'on its way: no Warning');
    // Its collection (a Deployment event) wakes the Echo: wakeOn 'any'.
    assert.deepEqual(result, Result.blocked('Waiting', NAME_HELD_RETRY, 'any'));
  });

  it('applies nothing to its own Deployment while that is being deleted', async () => {
    const going = applied('10', allReady);
    going.spec = { ...going.spec, replicas: 5 };
    going.metadata.deletionTimestamp = '2026-11-27T09:59:00Z';
    const state: FakeState = { echo, cached: going };
    const op = fakeOperator(state, 0);
    const result = await op.reconcile();
    assert.deepEqual(op.deploymentApplies, [], 'no drift applied to a Deployment going away');
    assert.equal(ready(state.echo)?.reason, 'DeploymentPending');
    assert.match(ready(state.echo)?.message ?? '', /is being deleted/);
    // Its delete event ends the wait at once, whatever the schedule: a related event wakes it.
    assert.deepEqual(result, Result.blocked('Waiting', NAME_HELD_RETRY, 'any'));
    state.cached = undefined;
    state.afterApply = applied('11');
    assert.deepEqual(await op.reconcile(), Result.done());
    assert.deepEqual(op.deploymentApplies, [{ force: false, uid: undefined }]);
  });

  it('forces its applies only over its own Deployment, and only on its uid', async () => {
    const own = applied('10', allReady);
    own.metadata.uid = 'd-1';
    own.spec = { ...own.spec, replicas: 5 };
    const op = fakeOperator({ echo, cached: own, afterApply: applied('11', allReady) });
    await op.reconcile();
    assert.deepEqual(op.deploymentApplies, [{ force: true, uid: 'd-1' }]);
    assert.deepEqual(op.requests, [], 'the cache held it: no read');
  });

  it('re-creates its own Deployment on an immutable selector, deleting only that uid', async () => {
    const own = applied('10', allReady);
    own.metadata.uid = 'd-1';
    own.spec = { ...own.spec, selector: { matchLabels: { app: 'old' } } };
    const state: FakeState = {
      echo,
      cached: own,
      refuse: invalid('spec.selector', 'field is immutable'),
    };
    const op = fakeOperator(state);
    await op.reconcile().catch(() => undefined);
    const del = op.requests.find((r) => r.method === 'DELETE');
    assert.ok(del);
    assert.equal(del.path, DEPLOYMENT);
    assert.deepEqual(del.body, { propagationPolicy: 'Background', preconditions: { uid: 'd-1' } });
    assert.deepEqual(op.deploymentApplies.at(-1), { force: false, uid: undefined }, 'created anew');
  });

  it('adopts an orphan labelled as its own, claiming it before it deletes it', async () => {
    const orphan = applied('10', allReady);
    orphan.metadata.uid = 'd-1';
    delete (orphan.metadata as { ownerReferences?: unknown }).ownerReferences;
    const adopt = fakeOperator({ echo, cached: orphan, afterApply: applied('11', allReady) });
    await adopt.reconcile();
    assert.deepEqual(adopt.deploymentApplies, [{ force: true, uid: 'd-1' }], 'adopted by apply');

    orphan.spec = { ...orphan.spec, selector: { matchLabels: { app: 'old' } } };
    const state: FakeState = {
      echo,
      cached: orphan,
      refuse: invalid('spec.selector', 'field is immutable'),
    };
    const op = fakeOperator(state);
    await op.reconcile().catch(() => undefined);
    assert.deepEqual(writes(op), ['PATCH', 'DELETE'], 'claimed, then deleted');
    const claim = op.sent.find((r) => r.method === 'PATCH' && r.contentType !== APPLY_PATCH);
    assert.equal(claim?.contentType, 'application/strategic-merge-patch+json');
    assert.equal(claim.path, DEPLOYMENT);
    assert.deepEqual(op.requests[0]?.body, {
      metadata: {
        uid: 'd-1',
        ownerReferences: [
          {
            apiVersion: 'example.com/v1',
            kind: 'Echo',
            name: 'web',
            uid: 'uid-1',
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
    });
  });

  it('says in Ready why the API server refused an apply, once, before failing the reconcile', async () => {
    // Today's break: a 403 (OwnerReferencesPermissionEnforcement without echoes/finalizers) was
    // thrown before the status was written.
    const forbidden = new ApiError(
      403,
      {
        kind: 'Status',
        code: 403,
        reason: 'Forbidden',
        message:
          'deployments.apps "web" is forbidden: cannot set blockOwnerDeletion if an ownerReference refers to a resource you can\'t set finalizers on',
      },
      'PATCH',
      DEPLOYMENT,
    );
    const state: FakeState = { echo, cached: undefined, refuse: forbidden };
    const op = fakeOperator(state);
    await assert.rejects(op.reconcile(), forbidden, 'counted and retried by the work queue');
    assert.equal(ready(state.echo)?.reason, 'ApplyFailed');
    assert.match(ready(state.echo)?.message ?? '', /cannot set blockOwnerDeletion/);
    assert.deepEqual(op.applies, [DEPLOYMENT, STATUS], 'the status written before the throw');
    await assert.rejects(op.reconcile(), forbidden);
    assert.equal(op.deploymentApplies.length, 2, 'retried as the work queue says');
    assert.equal(op.events.length, 1, 'told once');
  });

  it('blocks on an apply refused as invalid, for a minute doubling, instead of failing', async () => {
    const state: FakeState = {
      echo,
      cached: undefined,
      refuse: invalid('spec.template.spec.containers[0].image', 'Required value'),
    };
    const op = fakeOperator(state);
    // Only a change of the Echo itself can lift it: wakeOn 'primary'; the doubling is the runtime's.
    const blocked = Result.blocked('ApplyFailed', REFUSED_RETRY, 'primary');
    assert.deepEqual(await op.reconcile(), blocked);
    assert.equal(ready(state.echo)?.reason, 'ApplyFailed');
    assert.equal(op.deploymentApplies.length, 1);
    assert.deepEqual(await op.reconcile(), blocked, 'the same reason again: the delay doubles');
    assert.equal(op.deploymentApplies.length, 2);
    assert.equal(op.events.length, 1);
  });

  it('applies at once for an Echo created again under the same name', async () => {
    // Today's break: keyed by name and generation, the new Echo inherited the old one's backoff.
    // The new Echo is a primary event, which wakes a blocked key and resets its doubling.
    const state: FakeState = {
      echo,
      cached: undefined,
      refuse: invalid('spec.template.spec.containers[0].image', 'Required value'),
    };
    const op = fakeOperator(state);
    await op.reconcile();
    assert.equal(op.deploymentApplies.length, 1);
    delete state.refuse;
    state.afterApply = applied('11');
    state.echo = { ...echo, metadata: { ...echo.metadata, uid: 'uid-2', resourceVersion: '8' } };
    const result = await op.reconcile();
    assert.equal(op.deploymentApplies.length, 2, 'the new Echo applies at once');
    assert.notEqual(result.kind, 'blocked');
  });

  it('lets a throttled or failing server retry through the work queue', async () => {
    const unavailable = new ApiError(
      503,
      { kind: 'Status', code: 503, reason: 'ServiceUnavailable', message: 'later' },
      'PATCH',
      DEPLOYMENT,
    );
    const op = fakeOperator({ echo, cached: undefined, refuse: unavailable });
    await assert.rejects(op.reconcile(), /503/);
  });

  it('lets a failed read of the Deployment retry through the work queue', async () => {
    const failing = new ApiError(
      500,
      { kind: 'Status', code: 500, reason: 'InternalError', message: 'etcd' },
      'GET',
      DEPLOYMENT,
    );
    await assert.rejects(
      echoReconciler({
        client: { request: () => Promise.reject(failing) },
        echoes: { assume: () => undefined },
        deployments: { get: () => undefined, assume: () => undefined },
        recorder: { record: () => undefined } as unknown as EventRecorder,
      }).reconcile(echo, { key: 'team/web', signal: new AbortController().signal }),
      failing,
    );
  });
});
