import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventRecorder, MAX_QUEUED } from '../../../src/runtime/events.ts';
import { fakeClient } from '../../support/fake-client.ts';

const regarding = {
  apiVersion: 'example.com/v1',
  kind: 'Echo',
  name: 'web',
  namespace: 'team',
  uid: 'u1',
};

function recorder(dedupWindowMs?: number) {
  const { client, requests: sent } = fakeClient();
  const r = new EventRecorder({
    client,
    controller: 'example.com/echo-operator',
    instance: 'pod-1',
    ...(dedupWindowMs !== undefined ? { dedupWindowMs } : {}),
  });
  return { r, sent };
}

/** A recorder whose requests wait until the test answers them (with an error, to refuse one). */
function heldRecorder() {
  const started: string[] = [];
  const answers: ((error?: Error) => void)[] = [];
  const errors: unknown[] = [];
  const { client } = fakeClient({
    respond: (opts) => {
      started.push((opts.body as { reason: string }).reason);
      return new Promise((resolve, reject) => {
        answers.push((error) => {
          if (error) reject(error);
          else resolve(undefined);
        });
      });
    },
  });
  const r = new EventRecorder({
    client,
    controller: 'c',
    instance: 'i',
    onError: (err) => errors.push(err),
  });
  return { r, started, answers, errors };
}

describe('EventRecorder', () => {
  it('posts an events.k8s.io/v1 Event about the object', async () => {
    const { r, sent } = recorder();
    r.record(regarding, 'Normal', 'DeploymentApplied', 'Apply', 'Deployment web set to 3 replicas');
    await r.flush();
    assert.equal(sent.length, 1);
    assert.equal(sent[0]?.path, '/apis/events.k8s.io/v1/namespaces/team/events');
    const body = sent[0].body as Record<string, unknown>;
    assert.equal(body.reason, 'DeploymentApplied');
    assert.equal(body.reportingController, 'example.com/echo-operator');
    assert.deepEqual(body.regarding, regarding);
    assert.match(body.eventTime as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  });

  it('sends the same event about the same object once per window', async () => {
    const { r, sent } = recorder();
    for (let i = 0; i < 5; i++)
      r.record(regarding, 'Warning', 'DeploymentOwnedByAnother', 'Reconcile', 'held by x');
    r.record(
      { ...regarding, uid: 'u2', name: 'other' },
      'Warning',
      'DeploymentOwnedByAnother',
      'Reconcile',
      'held by x',
    );
    r.record(regarding, 'Warning', 'DeploymentOwnedByAnother', 'Reconcile', 'held by y');
    await r.flush();
    assert.equal(sent.length, 3);
  });

  it('sends it again once the window has passed', async () => {
    const { r, sent } = recorder(0);
    r.record(regarding, 'Normal', 'R', 'A', 'n');
    r.record(regarding, 'Normal', 'R', 'A', 'n');
    await r.flush();
    assert.equal(sent.length, 2);
  });

  it('keeps its window when the wall clock steps ahead, and dates events by the wall clock', async (t) => {
    const t0 = Date.parse('2026-11-25T12:00:00Z');
    t.mock.timers.enable({ apis: ['Date'], now: t0 });
    const { r, sent } = recorder(30_000);
    r.record(regarding, 'Normal', 'R', 'A', 'n');
    t.mock.timers.setTime(t0 + 60_000);
    r.record(regarding, 'Normal', 'R', 'A', 'n');
    r.record({ ...regarding, uid: 'u2' }, 'Normal', 'R', 'A', 'n');
    await r.flush();
    assert.equal(sent.length, 2, 'the repeat within the window dropped');
    assert.equal((sent[1]?.body as { eventTime: string }).eventTime, '2026-11-25T12:01:00.000000Z');
  });

  it('keeps names within 253 characters for the longest object names', async () => {
    const { r, sent } = recorder();
    r.record({ ...regarding, name: 'n'.repeat(253) }, 'Normal', 'R', 'A', 'n');
    r.record({ ...regarding, name: `${'n'.repeat(199)}.x`, uid: 'u2' }, 'Normal', 'R', 'A', 'n');
    await r.flush();
    for (const request of sent) {
      const name = (request.body as { metadata: { name: string } }).metadata.name;
      assert.ok(name.length <= 253, String(name.length));
      assert.match(
        name,
        /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/,
        'a DNS subdomain',
      );
    }
  });

  it('sends one event at a time, in the order recorded, and goes on after a failure', async () => {
    const { r, started, answers, errors } = heldRecorder();
    for (const reason of ['A', 'B', 'C']) r.record(regarding, 'Normal', reason, 'X', reason);
    for (let sent = 1; sent <= 3; sent++) {
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(started, ['A', 'B', 'C'].slice(0, sent), 'the next waits for the last');
      answers[sent - 1]?.(sent === 2 ? new Error('refused') : undefined);
    }
    await r.flush();
    assert.equal(errors.length, 1);
  });

  it('sends what still waits at once when flushed, before exiting', async () => {
    const { r, started, answers } = heldRecorder();
    for (const reason of ['A', 'B', 'C']) r.record(regarding, 'Normal', reason, 'X', reason);
    assert.equal(started.length, 1);
    const flushed = r.flush();
    assert.equal(started.length, 3, 'the two waiting are sent beside the one under way');
    for (const answer of answers) answer();
    await flushed;
  });

  it('drops events past the queue bound, and says so', async () => {
    const { r, started, answers, errors } = heldRecorder();
    // The first is being sent, MAX_QUEUED wait behind it, the last two are dropped.
    for (let i = 0; i < MAX_QUEUED + 3; i++) r.record(regarding, 'Normal', 'R', 'A', String(i));
    assert.equal(errors.length, 2);
    assert.match(String(errors[0]), /Events already waiting: dropped R/);
    while (started.length < MAX_QUEUED + 1 || answers.length > 0) {
      answers.shift()?.();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await r.flush();
    assert.equal(started.length, MAX_QUEUED + 1);
  });
});
