// The reconciler's choice of Events, with the API server, the caches and the recorder faked: what
// the integration tests cannot provoke on purpose (an apply the server finds nothing to change in).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Echo } from '../../../src/echo/api.ts';
import { desiredDeployment } from '../../../src/echo/desired.ts';
import type { CachedDeployment } from '../../../src/echo/cache.ts';
import { echoReconciler } from '../../../src/echo/reconciler.ts';
import type { KubeClient } from '../../../src/kube/client.ts';
import type { EventRecorder } from '../../../src/runtime/events.ts';

const echo: Echo = {
  apiVersion: 'example.com/v1',
  kind: 'Echo',
  metadata: { name: 'web', namespace: 'team', uid: 'uid-1', resourceVersion: '7', generation: 1 },
  spec: { replicas: 3 },
};

/** The Deployment as the server holds it after the operator's apply, at `resourceVersion`. */
const applied = (resourceVersion: string, status: CachedDeployment['status'] = {}) =>
  ({
    ...structuredClone(desiredDeployment(echo)),
    metadata: { ...desiredDeployment(echo).metadata, resourceVersion, generation: 1 },
    status: { observedGeneration: 1, ...status },
  }) as unknown as CachedDeployment;

interface Recorded {
  type: string;
  reason: string;
  note: string;
}

/**
 * Reconciles `current` once against `cached`; the fake server answers a Deployment apply with
 * `afterApply` and a status apply with the status it was sent.
 */
async function reconcileOnce(
  current: Echo,
  cached: CachedDeployment | undefined,
  afterApply: CachedDeployment,
): Promise<{ events: Recorded[]; applies: string[]; written?: Echo }> {
  const events: Recorded[] = [];
  const applies: string[] = [];
  let written: Echo | undefined;
  const client = {
    apply: (path: string, body: Echo) => {
      applies.push(path);
      if (!path.endsWith('/status')) return Promise.resolve(afterApply);
      written = { ...current, status: body.status! };
      return Promise.resolve(written);
    },
  } as unknown as KubeClient;
  const recorder = {
    record: (_ref: unknown, type: string, reason: string, _action: string, note: string) => {
      events.push({ type, reason, note });
    },
  } as unknown as EventRecorder;
  const reconcile = echoReconciler({
    client,
    echoes: { get: () => current, assume: () => undefined },
    deployments: { get: () => cached, assume: () => undefined },
    recorder,
    now: () => new Date('2026-11-27T10:00:00Z'),
  });
  await reconcile('team/web', new AbortController().signal);
  return { events, applies, ...(written ? { written } : {}) };
}

describe('echoReconciler Events', () => {
  it('records no Event for an apply the server found nothing to change in', async () => {
    const cached = applied('10');
    cached.spec = { ...cached.spec, replicas: 5 };
    const { events, applies } = await reconcileOnce(echo, cached, applied('10'));
    assert.deepEqual(applies, [
      '/apis/apps/v1/namespaces/team/deployments/web',
      '/apis/example.com/v1/namespaces/team/echoes/web/status',
    ]);
    assert.deepEqual(events, []);
  });

  it('records DeploymentUpdated for an apply that changed the Deployment', async () => {
    const cached = applied('10');
    cached.spec = { ...cached.spec, replicas: 5 };
    const { events } = await reconcileOnce(echo, cached, applied('11'));
    assert.deepEqual(
      events.map((e) => `${e.type} ${e.reason}`),
      ['Normal DeploymentUpdated'],
    );
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
    const first = await reconcileOnce(echo, failing, failing);
    assert.deepEqual(first.applies, ['/apis/example.com/v1/namespaces/team/echoes/web/status']);
    assert.deepEqual(first.events, [
      {
        type: 'Warning',
        reason: 'FailedCreate',
        note: '1/3 replicas ready, 1 updated: exceeded quota: q',
      },
    ]);
    const again = await reconcileOnce(first.written!, failing, failing);
    assert.deepEqual(again, { events: [], applies: [] }, 'nothing to write, nothing to tell');
  });
});
