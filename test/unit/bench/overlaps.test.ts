// Overlaps from the audit log: an Echo (its status, its Deployment) written by two replicas of the
// operator's identity within a lease duration of each other, told apart by their User-Agent.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { countOverlaps, instanceOf, type OverlapScope } from '../../../bench/audit.ts';
import type { AuditEvent } from '../../../test/support/audit.ts';

const USER = 'system:serviceaccount:echo-bench:bench-echo-operator';
const T0 = Date.parse('2026-12-08T00:00:00Z');
const scope: OverlapScope = {
  username: USER,
  namespaces: ['bench-a', 'bench-b'],
  windowMs: 15_000,
  from: T0,
  to: T0 + 600_000,
};

let ids = 0;
/** A request `atS` seconds after T0 by `instance` (undefined: a User-Agent without one). */
function event(
  atS: number,
  instance: string | undefined,
  call: { verb?: string; resource?: string; subresource?: string; name?: string; ns?: string },
  username = USER,
): AuditEvent {
  const resource = call.resource ?? 'echoes';
  return {
    auditID: `id-${String(ids++)}`,
    stage: 'ResponseComplete',
    verb: call.verb ?? 'patch',
    user: { username },
    userAgent: `echo-operator/0.1.0 (linux/amd64) node/v24.21.0${instance ? ` instance/${instance}` : ''}`,
    requestReceivedTimestamp: new Date(T0 + atS * 1000).toISOString(),
    objectRef: {
      apiGroup: resource === 'deployments' ? 'apps' : 'example.com',
      namespace: call.ns ?? 'bench-a',
      resource,
      ...(call.subresource ? { subresource: call.subresource } : {}),
      name: call.name ?? 'echo-00001',
    },
  };
}

describe('overlaps in the audit log', () => {
  it('reads the replica from the end of the User-Agent', () => {
    assert.equal(
      instanceOf('echo-operator/0.1.0 (linux/amd64) instance/bench-replica-2'),
      'bench-replica-2',
    );
    assert.equal(instanceOf('echo-operator/0.1.0 (linux/amd64) node/v24'), undefined);
    assert.equal(instanceOf(undefined), undefined);
  });

  it('counts an Echo whose status one replica and whose Deployment another wrote within the window', () => {
    const counted = countOverlaps(
      [event(10, 'r1', { subresource: 'status' }), event(20, 'r2', { resource: 'deployments' })],
      scope,
    );
    assert.equal(counted.objects, 1);
    assert.equal(counted.pairs, 1);
    assert.equal(counted.writes, 2);
    assert.equal(counted.examples[0]!.first.call, 'patch echoes/status');
    assert.equal(counted.examples[0]!.second.instance, 'r2');
  });

  it('does not count a takeover after a lease duration, nor one replica writing often', () => {
    const counted = countOverlaps(
      [
        event(0, 'r1', {}),
        event(1, 'r1', { subresource: 'status' }),
        event(2, 'r1', { resource: 'deployments' }),
        // The replica died; the next writes its bucket's Echo 15 s after its last.
        event(17, 'r2', {}),
      ],
      scope,
    );
    assert.deepEqual(
      { objects: counted.objects, pairs: counted.pairs, writes: counted.writes },
      { objects: 0, pairs: 0, writes: 4 },
    );
  });

  it('counts each handover of one Echo, and the Echo once', () => {
    const counted = countOverlaps(
      [event(0, 'r1', {}), event(5, 'r2', {}), event(9, 'r1', {}), event(40, 'r1', {})],
      scope,
    );
    assert.equal(counted.objects, 1);
    assert.equal(counted.pairs, 2);
  });

  it('tells Echoes apart by namespace and name, whatever the event order in the log', () => {
    const counted = countOverlaps(
      [
        event(6, 'r2', { ns: 'bench-b' }),
        event(5, 'r1', {}),
        event(7, 'r2', { name: 'echo-00002' }),
      ],
      scope,
    );
    assert.equal(counted.objects, 0);
  });

  it('leaves out reads, other users, other namespaces, other resources and the time outside', () => {
    const counted = countOverlaps(
      [
        event(0, 'r1', {}),
        event(1, 'r2', { verb: 'get' }),
        event(1, 'r2', {}, 'admin'),
        event(1, 'r2', { ns: 'bench-floor' }),
        event(1, 'r2', { resource: 'leases' }),
        event(1, 'r2', { resource: 'events' }),
        event(1, 'r2', { resource: 'deployments', subresource: 'scale' }),
        event(-1, 'r2', {}),
        event(600, 'r2', {}),
      ],
      scope,
    );
    assert.deepEqual(
      { objects: counted.objects, writes: counted.writes },
      { objects: 0, writes: 1 },
    );
  });

  it('counts a request logged twice (two stages) once, and sets aside writes with no replica', () => {
    const first = event(0, 'r1', {});
    const counted = countOverlaps(
      [first, { ...first, stage: 'ResponseStarted' }, event(3, undefined, {})],
      scope,
    );
    assert.deepEqual(
      { writes: counted.writes, unattributed: counted.unattributed, objects: counted.objects },
      { writes: 1, unattributed: 1, objects: 0 },
    );
  });

  it('counts every write verb, a delete among them', () => {
    const counted = countOverlaps(
      [
        event(0, 'r1', { verb: 'create', resource: 'deployments' }),
        event(1, 'r2', { verb: 'delete', resource: 'deployments' }),
      ],
      scope,
    );
    assert.equal(counted.objects, 1);
  });
});

describe('overlaps across a handover', () => {
  const withBuckets: OverlapScope = { ...scope, bucketOf: () => 3 };
  const lease = (atS: number, instance: string): AuditEvent =>
    event(atS, instance, { verb: 'update', resource: 'leases', name: 'g-bucket-3-of-32' });

  it('does not count writes of two replicas that the second took the bucket between', () => {
    const counted = countOverlaps(
      [
        lease(8, 'r1'),
        event(10, 'r1', { resource: 'deployments' }),
        // r1 releases the Lease (its last write of it), r2 takes it, then writes the status.
        lease(11, 'r1'),
        lease(12, 'r2'),
        event(14, 'r2', { subresource: 'status' }),
      ],
      withBuckets,
    );
    assert.equal(counted.pairs, 0);
    assert.equal(counted.handovers, 1);
  });

  it('counts them when the first replica still wrote the Lease after the second took it', () => {
    const counted = countOverlaps(
      [
        event(10, 'r1', { resource: 'deployments' }),
        lease(12, 'r2'),
        lease(13, 'r1'),
        event(14, 'r2', { subresource: 'status' }),
      ],
      withBuckets,
    );
    assert.equal(counted.pairs, 1);
    assert.equal(counted.handovers, 0);
  });

  it('counts them when the second replica took no Lease between, or without buckets known', () => {
    const events = [
      lease(5, 'r2'),
      event(10, 'r1', { resource: 'deployments' }),
      event(14, 'r2', { subresource: 'status' }),
    ];
    assert.equal(countOverlaps(events, withBuckets).pairs, 1);
    assert.equal(countOverlaps([...events.slice(1), lease(12, 'r2')], scope).pairs, 1);
  });
});
