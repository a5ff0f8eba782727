import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { trimDeployment, type CachedDeployment } from '../../../src/echo/projection.ts';
import { deploymentDrift, desiredDeployment } from '../../../src/echo/desired.ts';
import { echo as cachedEcho } from '../../support/echo.ts';

const echo = cachedEcho({ replicas: 2, image: 'example.com/echo:1' });

/** The desired Deployment as the API server returns it: defaults filled in, status written. */
function served(): CachedDeployment & { spec: Record<string, unknown> } {
  const desired = structuredClone(desiredDeployment(echo));
  const [container] = desired.spec.template.spec.containers;
  return {
    ...desired,
    metadata: {
      ...desired.metadata,
      uid: 'uid-d',
      resourceVersion: '9',
      generation: 1,
      managedFields: [{ manager: 'echo-operator' }],
    } as CachedDeployment['metadata'],
    spec: {
      ...desired.spec,
      progressDeadlineSeconds: 600,
      revisionHistoryLimit: 10,
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: '25%' } },
      template: {
        metadata: desired.spec.template.metadata,
        spec: {
          ...desired.spec.template.spec,
          dnsPolicy: 'ClusterFirst',
          schedulerName: 'default-scheduler',
          containers: [
            {
              ...container,
              ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
              terminationMessagePath: '/dev/termination-log',
              imagePullPolicy: 'IfNotPresent',
            },
          ],
        },
      },
    },
    status: {
      observedGeneration: 1,
      replicas: 2,
      readyReplicas: 2,
      conditions: [
        { type: 'Available', status: 'True', reason: 'MinimumReplicasAvailable', message: 'ok' },
        {
          type: 'Progressing',
          status: 'True',
          reason: 'NewReplicaSetAvailable',
          message: 'ReplicaSet "web-6d4b" has successfully progressed.',
        },
      ],
    },
  };
}

interface Template {
  spec: { containers: Record<string, unknown>[] };
}
const containersOf = (d: { spec?: Record<string, unknown> }): Record<string, unknown>[] =>
  (d.spec?.template as Template).spec.containers;

describe('trimDeployment', () => {
  it('drops the server defaults and keeps what drift is judged on', () => {
    const trimmed = trimDeployment(served());
    const [container] = containersOf(trimmed);
    assert.deepEqual(Object.keys(trimmed.spec ?? {}).sort(), ['replicas', 'selector', 'template']);
    assert.equal(container?.terminationMessagePath, undefined);
    assert.deepEqual(container?.ports, [{ name: 'http', containerPort: 8080, protocol: 'TCP' }]);
    assert.equal(deploymentDrift(desiredDeployment(echo), trimmed), undefined);
  });

  it('keeps every drift the untrimmed Deployment shows', () => {
    const edits: [string, (d: ReturnType<typeof served>) => void][] = [
      ['replicas', (d) => (d.spec.replicas = 5)],
      ['image', (d) => (containersOf(d)[0]!.image = 'other:2')],
      [
        'port protocol',
        (d) => (containersOf(d)[0]!.ports = [{ containerPort: 8080, protocol: 'UDP' }]),
      ],
      ['container removed', (d) => containersOf(d).splice(0)],
    ];
    for (const [what, edit] of edits) {
      const drifted = served();
      edit(drifted);
      const untrimmed = deploymentDrift(desiredDeployment(echo), drifted);
      assert.notEqual(untrimmed, undefined, what);
      assert.equal(
        deploymentDrift(desiredDeployment(echo), trimDeployment(drifted)),
        untrimmed,
        what,
      );
    }
  });

  it('keeps a condition message only where the Echo reports it', () => {
    const d = served();
    d.status?.conditions?.push({
      type: 'ReplicaFailure',
      status: 'True',
      reason: 'FailedCreate',
      message: 'exceeded quota',
    });
    const conditions = trimDeployment(d).status?.conditions ?? [];
    assert.deepEqual(
      conditions.map((c) => c.message),
      [undefined, undefined, 'exceeded quota'],
    );
    assert.ok(conditions.every((c) => c.reason !== undefined));
  });

  it('keeps the message of a ReplicaSet the Deployment controller could not create', () => {
    const d = served();
    d.status!.conditions = [
      { type: 'Progressing', status: 'False', reason: 'ReplicaSetCreateError', message: 'quota' },
    ];
    assert.equal(trimDeployment(d).status?.conditions?.[0]?.message, 'quota');
  });

  it('keeps the deletionTimestamp of a Deployment being deleted', () => {
    const d = served();
    d.metadata.deletionTimestamp = '2026-11-27T10:00:00Z';
    assert.equal(trimDeployment(d).metadata.deletionTimestamp, '2026-11-27T10:00:00Z');
    assert.equal('deletionTimestamp' in trimDeployment(served()).metadata, false);
  });

  it('holds the pod template and settled conditions once for every Deployment that repeats them', () => {
    const [a, b] = [trimDeployment(served()), trimDeployment(served())];
    const templateOf = (d: CachedDeployment) => (d.spec?.template as Template).spec;
    assert.equal(templateOf(a), templateOf(b), 'one pod template object');
    assert.equal(a.status?.conditions, b.status?.conditions, 'one conditions list');
    assert.notEqual(a.spec, b.spec, 'each its own spec: selectors and replicas differ');
    assert.throws(() => {
      containersOf(a)[0] = {};
    }, TypeError);
    const other = served();
    const [container] = containersOf(other);
    if (container) container.image = 'example.com/echo:2';
    assert.notEqual(templateOf(trimDeployment(other)), templateOf(a), 'another image, its own');
    assert.equal(deploymentDrift(desiredDeployment(echo), a), undefined, 'still no drift');
  });

  it('keeps the cached spec for a Deployment of the same uid and generation: a status change', () => {
    const cached = trimDeployment(served());
    const statusMoved = served();
    statusMoved.status = { ...statusMoved.status, readyReplicas: 1 };
    const next = trimDeployment(statusMoved, cached);
    assert.equal(next.spec, cached.spec, 'the same spec object');
    assert.equal(next.status?.readyReplicas, 1);

    // The spec is trimmed again once the server says it changed, or the object is another one.
    const scaled = served();
    scaled.spec.replicas = 5;
    scaled.metadata.generation = 2;
    assert.equal(trimDeployment(scaled, cached).spec?.replicas, 5);
    const recreated = served();
    recreated.spec.replicas = 5;
    recreated.metadata.uid = 'uid-other';
    assert.equal(trimDeployment(recreated, cached).spec?.replicas, 5);
  });
});
