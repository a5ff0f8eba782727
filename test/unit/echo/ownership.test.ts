// Whose a Deployment of an Echo's name is: the one question the operator answers before any write.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ownership, type DeploymentIdentity } from '../../../src/echo/ownership.ts';
import { echo as cachedEcho } from '../../support/echo.ts';

const echo = cachedEcho({ generation: undefined });

const controller = (kind: string, name: string, uid: string, apiVersion = 'example.com/v1') => ({
  apiVersion,
  kind,
  name,
  uid,
  controller: true,
});

const deployment = (metadata: Partial<DeploymentIdentity['metadata']>): DeploymentIdentity => ({
  metadata: { name: 'web', uid: 'd-1', ...metadata },
});

const managed = { 'app.kubernetes.io/managed-by': 'echo-operator' };

describe('ownership', () => {
  it('is absent when there is no Deployment', () => {
    assert.deepEqual(ownership(echo, undefined), { kind: 'absent' });
  });

  it("is the Echo's own only by the controller reference's uid", () => {
    const own = deployment({ ownerReferences: [controller('Echo', 'web', 'uid-1')] });
    assert.deepEqual(ownership(echo, own), { kind: 'ours' });
  });

  it('is an earlier Echo of the same name by a controller reference of another uid', () => {
    const previous = deployment({ ownerReferences: [controller('Echo', 'web', 'uid-0')] });
    assert.deepEqual(ownership(echo, previous), { kind: 'previous', uid: 'uid-0' });
  });

  it('is foreign when another Echo, another kind, or an Echo of another group controls it', () => {
    for (const [ref, named] of [
      [controller('Echo', 'other', 'uid-9'), 'Echo other'],
      [controller('ConfigMap', 'web', 'cm-1', 'v1'), 'ConfigMap web'],
      [controller('Echo', 'web', 'x-1', 'other.io/v1'), 'Echo web'],
    ] as const) {
      const held = deployment({ labels: managed, ownerReferences: [ref] });
      assert.deepEqual(ownership(echo, held), { kind: 'foreign', controller: named });
    }
  });

  it('is an orphan to adopt only when labelled as the operator’s and controlled by nobody', () => {
    const orphan = deployment({
      labels: managed,
      ownerReferences: [{ ...controller('Echo', 'web', 'uid-0'), controller: false }],
    });
    assert.deepEqual(ownership(echo, orphan), { kind: 'orphan' });
    assert.deepEqual(ownership(echo, deployment({ labels: { app: 'web' } })), { kind: 'foreign' });
    assert.deepEqual(ownership(echo, deployment({})), { kind: 'foreign' });
  });

  it('is terminating while being deleted, whoever holds it', () => {
    const going = deployment({
      deletionTimestamp: '2026-11-27T10:00:00Z',
      ownerReferences: [controller('Echo', 'web', 'uid-1')],
    });
    assert.deepEqual(ownership(echo, going), { kind: 'terminating' });
  });
});
