import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Echo } from '../../../src/echo/api.ts';
import { echoChanged } from '../../../src/echo/controller.ts';

const echo = (over: Partial<Echo['metadata']> = {}, status?: Echo['status']): Echo => ({
  apiVersion: 'example.com/v1',
  kind: 'Echo',
  metadata: {
    name: 'web',
    namespace: 'team',
    uid: 'u',
    resourceVersion: '1',
    generation: 1,
    labels: { team: 'a' },
    ...over,
  },
  spec: { replicas: 2 },
  ...(status ? { status } : {}),
});

describe('echoChanged: which Echo updates are reconciled', () => {
  it('skips an update that moved only metadata the operator does not read', () => {
    const next = echo({ resourceVersion: '2', annotations: { note: 'x' } });
    assert.equal(echoChanged(echo(), next), false);
  });

  it('reconciles a change of spec, labels or deletion', () => {
    assert.equal(echoChanged(echo(), echo({ generation: 2 })), true);
    assert.equal(echoChanged(echo(), echo({ labels: { team: 'b' } })), true);
    assert.equal(echoChanged(echo(), echo({ deletionTimestamp: '2026-11-25T20:00:00Z' })), true);
  });

  it('reconciles a change of status, so one made by someone else is put right', () => {
    const rolling = echo({}, { readyReplicas: 1 });
    const ready = echo({ resourceVersion: '2' }, { readyReplicas: 2 });
    assert.equal(echoChanged(rolling, ready), true);
    assert.equal(echoChanged(echo(), ready), true, 'a first status');
    assert.equal(echoChanged(ready, echo({ resourceVersion: '3' }, { readyReplicas: 2 })), false);
  });
});
