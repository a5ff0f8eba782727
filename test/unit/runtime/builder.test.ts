// Which keys the builder's event handlers queue: a primary object's own key unless its filter
// says the update brings nothing new; an owned object's controller owner, and a watched object's
// mapped keys, and on an update the keys it had before. And what a declaration records.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  controllerOwnerKey,
  newController,
  ownerKeys,
  primaryKeys,
  relatedKeys,
} from '../../../src/runtime/builder.ts';
import type { KubeObject } from '../../../src/kube/object.ts';
import { CONFIGMAPS, DEPLOYMENTS, type ResourceType } from '../../../src/kube/resource.ts';
import { Result } from '../../../src/runtime/controller.ts';

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

/** An object whose `targets` label names, comma-separated, the primary objects it concerns. */
const labelled = (targets: string | undefined, generation = 1): KubeObject => ({
  metadata: {
    name: 'source',
    namespace: 'team',
    generation,
    ...(targets === undefined ? {} : { labels: { targets } }),
  },
});

const byLabel = (o: KubeObject): string[] =>
  (o.metadata.labels?.targets ?? '')
    .split(',')
    .filter((name) => name !== '')
    .map((name) => `team/${name}`);

describe('relatedKeys', () => {
  it('queues the keys the map names on add and delete', () => {
    assert.deepEqual(relatedKeys({ type: 'add', object: labelled('a,b') }, byLabel), [
      'team/a',
      'team/b',
    ]);
    assert.deepEqual(relatedKeys({ type: 'delete', object: labelled('a') }, byLabel), ['team/a']);
    assert.deepEqual(relatedKeys({ type: 'add', object: labelled(undefined) }, byLabel), []);
  });

  it('on an update, queues the old keys as well as the new, each once', () => {
    const update = { type: 'update', object: labelled('b,c'), old: labelled('a,b') } as const;
    assert.deepEqual(relatedKeys(update, byLabel), ['team/b', 'team/c', 'team/a']);
    const dropped = { type: 'update', object: labelled(undefined), old: labelled('a') } as const;
    assert.deepEqual(relatedKeys(dropped, byLabel), ['team/a'], 'the keys it no longer concerns');
  });

  it('leaves out keys the map could not name', () => {
    const some = (o: KubeObject) => [undefined, ...byLabel(o), undefined];
    assert.deepEqual(relatedKeys({ type: 'add', object: labelled('a') }, some), ['team/a']);
  });

  it('skips the copy of an own write and an update its filter finds unchanged', () => {
    assert.deepEqual(
      relatedKeys({ type: 'add', object: labelled('a'), ownWrite: true }, byLabel),
      [],
    );
    const same = { type: 'update', object: labelled('a,b'), old: labelled('a') } as const;
    assert.deepEqual(relatedKeys(same, byLabel, generationChanged), [], 'same generation');
    const moved = { type: 'update', object: labelled('b', 2), old: labelled('a') } as const;
    assert.deepEqual(relatedKeys(moved, byLabel, generationChanged), ['team/b', 'team/a']);
  });
});

describe('controllerOwnerKey', () => {
  it('names the controller owner of the kind asked, in the object namespace', () => {
    assert.equal(controllerOwnerKey(owned('w'), WIDGET), 'team/w');
    assert.equal(
      controllerOwnerKey(owned('w'), { ...WIDGET, apiVersion: 'example.com/v2' }),
      undefined,
    );
    const notController: KubeObject = {
      metadata: {
        name: 'child',
        namespace: 'team',
        ownerReferences: [{ ...WIDGET, name: 'w', uid: 'u' }],
      },
    };
    assert.equal(controllerOwnerKey(notController, WIDGET), undefined, 'an owner, not controller');
  });

  it('names a cluster-scoped owner by name alone', () => {
    const clusterScoped: KubeObject = {
      metadata: {
        name: 'child',
        ownerReferences: [{ ...WIDGET, name: 'w', uid: 'u', controller: true }],
      },
    };
    assert.equal(controllerOwnerKey(clusterScoped, WIDGET), 'w');
  });
});

describe('newController', () => {
  const WIDGETS: ResourceType<'widgets'> = { ...WIDGET, plural: 'widgets' };
  const identity = { name: 'widget', reportingController: 'example.com/widget' };

  it('records the primary resource first, then what it owns and watches, by cache name', () => {
    const map = (o: KubeObject) => [`team/${o.metadata.name}`];
    const declaration = newController(identity)
      .for(WIDGETS)
      .owns(DEPLOYMENTS, { labelSelector: 'app=widget' })
      .watches(CONFIGMAPS, { map })
      .watches(CONFIGMAPS, { map, as: 'settings', labelSelector: 'role=settings' })
      .complete(() => ({ reconcile: () => Promise.resolve(Result.done()) }));
    assert.equal(declaration.identity, identity);
    assert.deepEqual(
      declaration.watched.map((w) => [w.name, w.type.plural, w.mapping.kind]),
      [
        ['widgets', 'widgets', 'primary'],
        ['deployments', 'deployments', 'owner'],
        ['configmaps', 'configmaps', 'map'],
        ['settings', 'configmaps', 'map'],
      ],
    );
    assert.deepEqual(declaration.watched[1]?.watch, { labelSelector: 'app=widget' });
    const mapping = declaration.watched[3]?.mapping;
    assert.equal(mapping?.kind === 'map' && mapping.map, map);
  });

  it('refuses a resource watched twice under the same cache name', () => {
    const map = () => [];
    assert.throws(
      () =>
        newController(identity)
          .for(WIDGETS)
          .watches(CONFIGMAPS, { map })
          .watches(CONFIGMAPS, { map }),
      /configmaps is watched already by widget: name the cache \(as\)/,
    );
  });
});
