// Which keys the builder's event handlers queue: a primary object's own key unless its filter
// says the update brings nothing new; an owned object's controller owner, and on an update the
// owner it had before.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { collectionPath, ownerKeys, primaryKeys } from '../../../src/runtime/builder.ts';
import type { KubeObject } from '../../../src/kube/object.ts';

const WIDGET = { apiVersion: 'example.com/v1', kind: 'Widget' };

const object = (name: string, generation = 1): KubeObject => ({
  metadata: { name, namespace: 'team', generation },
});

/** An owned object whose controller owner reference points at `owner`, of `kind`. */
const owned = (owner: string | undefined, kind = WIDGET): KubeObject => ({
  metadata: {
    name: 'child',
    namespace: 'team',
    ...(owner
      ? { ownerReferences: [{ ...kind, name: owner, uid: `uid-${owner}`, controller: true }] }
      : {}),
  },
});

const generationChanged = (old: KubeObject, next: KubeObject): boolean =>
  old.metadata.generation !== next.metadata.generation;

describe('primaryKeys', () => {
  it('queues the object itself on add, update and delete', () => {
    assert.deepEqual(primaryKeys({ type: 'add', object: object('a') }), ['team/a']);
    assert.deepEqual(
      primaryKeys({ type: 'update', object: object('a', 2), old: object('a') }, generationChanged),
      ['team/a'],
    );
    assert.deepEqual(primaryKeys({ type: 'delete', object: object('a') }, generationChanged), [
      'team/a',
    ]);
  });

  it('skips an update its filter finds unchanged, and the copy of an own write', () => {
    const update = { type: 'update', object: object('a'), old: object('a') } as const;
    assert.deepEqual(primaryKeys(update, generationChanged), []);
    assert.deepEqual(primaryKeys(update), ['team/a'], 'no filter: every update');
    assert.deepEqual(primaryKeys({ type: 'add', object: object('a'), ownWrite: true }), []);
  });
});

describe('ownerKeys', () => {
  it('queues the controller owner of the declared kind only', () => {
    assert.deepEqual(ownerKeys({ type: 'add', object: owned('w') }, WIDGET), ['team/w']);
    assert.deepEqual(ownerKeys({ type: 'delete', object: owned('w') }, WIDGET), ['team/w']);
    const gadget = { apiVersion: 'example.com/v1', kind: 'Gadget' };
    assert.deepEqual(ownerKeys({ type: 'add', object: owned('g', gadget) }, WIDGET), []);
    assert.deepEqual(ownerKeys({ type: 'add', object: owned(undefined) }, WIDGET), []);
  });

  it('on an update that moved or dropped the owner reference, queues the owner that lost it too', () => {
    const moved = { type: 'update', object: owned('new'), old: owned('old') } as const;
    assert.deepEqual(ownerKeys(moved, WIDGET), ['team/new', 'team/old']);
    const dropped = { type: 'update', object: owned(undefined), old: owned('old') } as const;
    assert.deepEqual(ownerKeys(dropped, WIDGET), ['team/old']);
    const same = { type: 'update', object: owned('w'), old: owned('w') } as const;
    assert.deepEqual(ownerKeys(same, WIDGET), ['team/w'], 'once');
  });

  it('skips the copy of an own write and an update its filter finds unchanged', () => {
    assert.deepEqual(ownerKeys({ type: 'add', object: owned('w'), ownWrite: true }, WIDGET), []);
    const update = { type: 'update', object: owned('w'), old: owned('w') } as const;
    assert.deepEqual(ownerKeys(update, WIDGET, generationChanged), []);
  });
});

describe('collectionPath', () => {
  it('builds group and core paths, namespaced or cluster-wide', () => {
    const deployments = { apiVersion: 'apps/v1', kind: 'Deployment', plural: 'deployments' };
    assert.equal(collectionPath(deployments, 'team'), '/apis/apps/v1/namespaces/team/deployments');
    assert.equal(collectionPath(deployments, undefined), '/apis/apps/v1/deployments');
    const pods = { apiVersion: 'v1', kind: 'Pod', plural: 'pods' };
    assert.equal(collectionPath(pods, 'team'), '/api/v1/namespaces/team/pods');
  });
});
