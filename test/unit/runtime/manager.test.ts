// How the Manager queues an informer event: a change at its own cause (normal priority), what
// changes nothing (the start's list, a resync's replay) as a resync (low priority).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KubeObject } from '../../../src/kube/object.ts';
import { queuedCause } from '../../../src/runtime/manager.ts';

const echo = (resourceVersion: string): KubeObject => ({
  apiVersion: 'example.com/v1',
  kind: 'Echo',
  metadata: { namespace: 'team', name: 'a', resourceVersion },
});

describe('queuedCause', () => {
  it('queues the initial list as a resync, before the cache has synced', () => {
    assert.equal(queuedCause({ type: 'add', object: echo('1') }, false, 'primary'), 'resync');
    assert.equal(
      queuedCause({ type: 'update', object: echo('2'), old: echo('1') }, false, 'related'),
      'resync',
    );
  });

  it('queues a change after the sync at its own cause', () => {
    assert.equal(queuedCause({ type: 'add', object: echo('3') }, true, 'primary'), 'primary');
    assert.equal(
      queuedCause({ type: 'update', object: echo('4'), old: echo('3') }, true, 'related'),
      'related',
    );
    assert.equal(queuedCause({ type: 'delete', object: echo('4') }, true, 'primary'), 'primary');
  });

  it("queues a resync's replay (an update of the same resourceVersion) as a resync", () => {
    assert.equal(
      queuedCause({ type: 'update', object: echo('5'), old: echo('5') }, true, 'primary'),
      'resync',
    );
  });
});
