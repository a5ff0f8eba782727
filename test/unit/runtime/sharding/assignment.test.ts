// The bucket assignment's rules, one replica at a time, on Leases made up and a clock passed in:
// fair shares, what it takes and when, what it hands over and how, and when it stops work at once.
// bucket-leases.test.ts runs several replicas against one fake API server.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Clocks, LeaseSpec } from '../../../../src/runtime/leader-election.ts';
import {
  BucketAssignment,
  fairShares,
  type LeaseWrite,
  type MemberLease,
  type StoredLease,
} from '../../../../src/runtime/sharding/assignment.ts';

const T0 = Date.parse('2026-11-25T12:00:00Z');
/** This replica's clocks `ms` after it started. */
const at = (ms: number): Clocks => ({ monotonic: ms, wall: T0 + ms });
const TIMINGS = { leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

let version = 0;
const lease = (holder: string, spec: LeaseSpec = {}): StoredLease => ({
  spec: { holderIdentity: holder, leaseDurationSeconds: 15, ...spec },
  resourceVersion: String(++version),
  uid: `uid-${version}`,
});
const member = (holder: string, bucketCount: number): MemberLease => ({
  ...lease(holder),
  bucketCount,
});

interface Leases {
  self?: StoredLease;
  members?: Record<string, MemberLease>;
  buckets?: Record<number, StoredLease>;
  leader?: StoredLease;
}
const snapshot = ({ self, members = {}, buckets = {}, leader }: Leases) => ({
  self,
  members: new Map(Object.entries(members)),
  buckets: new Map(Object.entries(buckets).map(([b, l]) => [Number(b), l])),
  ...(leader ? { leader } : {}),
});

/** A replica `identity` of `bucketCount` buckets, and what it told its listener. */
function replica(identity: string, bucketCount: number, onStopping?: (bucket: number) => void) {
  const events: string[] = [];
  const assignment = new BucketAssignment({
    identity,
    bucketCount,
    ...TIMINGS,
    listener: {
      started: (b) => events.push(`started ${b}`),
      stopping: (b) => {
        events.push(`stopping ${b}`);
        onStopping?.(b);
      },
      lost: (b) => events.push(`lost ${b}`),
    },
  });
  return { assignment, events };
}

/** The API server's answers to `writes`: each accepted, with a resourceVersion of its own. */
function accept(assignment: BucketAssignment, writes: LeaseWrite[]): void {
  for (const write of writes) {
    if (write.kind === 'leave' || write.kind === 'collect') assignment.written(write, 'deleted');
    else
      assignment.written(write, { spec: write.spec, resourceVersion: String(++version), uid: 'u' });
  }
}

const kinds = (writes: LeaseWrite[], kind: LeaseWrite['kind']): number[] =>
  writes.flatMap((w) => (w.kind === kind && 'bucket' in w ? [w.bucket] : []));
const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => from + i);

/** A replica alone that took every bucket at monotonic 0. */
function holdingAll(identity: string, bucketCount: number, onStopping?: (b: number) => void) {
  const r = replica(identity, bucketCount, onStopping);
  r.assignment.observe(snapshot({}), 0);
  accept(r.assignment, r.assignment.plan(at(0)));
  r.events.length = 0;
  return r;
}

describe('fair shares', () => {
  it('splits 32 buckets among 3 replicas 11, 11, 10, in identity order, homes end to end', () => {
    assert.deepEqual(
      [...fairShares(['c', 'a', 'b'], 32)],
      [
        ['a', { first: 0, count: 11 }],
        ['b', { first: 11, count: 11 }],
        ['c', { first: 22, count: 10 }],
      ],
    );
  });

  it('sums to the bucket count, differs by one at most, and is the same whatever the order', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 12 }),
        fc.constantFrom(1, 2, 4, 8, 16, 32, 64, 128, 256),
        (members, count) => {
          const shares = [...fairShares(members, count).values()];
          assert.equal(shares.length, members.length);
          assert.equal(
            shares.reduce((sum, s) => sum + s.count, 0),
            count,
          );
          const counts = shares.map((s) => s.count);
          assert.ok(Math.max(...counts) - Math.min(...counts) <= 1);
          let next = 0;
          for (const s of shares) {
            assert.equal(s.first, next, 'homes tile the buckets');
            next += s.count;
          }
          assert.deepEqual(fairShares([...members].reverse(), count), fairShares(members, count));
        },
      ),
    );
  });
});

describe('bucket assignment', () => {
  it('alone, creates its member Lease and every bucket’s, and starts each once written', () => {
    const { assignment, events } = replica('a', 8);
    assignment.observe(snapshot({}), 0);
    const writes = assignment.plan(at(0));
    assert.deepEqual(
      writes.map((w) => [w.kind, 'resourceVersion' in w ? w.resourceVersion : '-']),
      [['member', undefined], ...range(0, 8).map(() => ['acquire', undefined])],
      'created: no resourceVersion to hold to',
    );
    assert.deepEqual(events, [], 'nothing starts before its Lease is written');
    accept(assignment, writes);
    assert.deepEqual(
      events,
      range(0, 8).map((b) => `started ${b}`),
    );
    assert.deepEqual(assignment.held, range(0, 8));
    assert.equal(assignment.stats.acquired, 8);
  });

  it('takes a bucket whose holder stopped renewing a lease duration after it last saw it change', () => {
    const { assignment } = replica('a', 1);
    const stale = lease('x', { renewTime: new Date(T0 - 3_600_000).toISOString() });
    const leases = snapshot({ buckets: { 0: stale } });
    assignment.observe(leases, 1_000);
    assert.deepEqual(kinds(assignment.plan(at(1_000)), 'acquire'), []);
    assignment.observe(leases, 15_999);
    assert.deepEqual(kinds(assignment.plan(at(15_999)), 'acquire'), [], 'not before 15 s');
    const skewed = { monotonic: 15_999, wall: T0 + 3_600_000 };
    assert.deepEqual(kinds(assignment.plan(skewed), 'acquire'), [], 'nor by the wall clock');
    assignment.observe(leases, 16_000);
    const taking = assignment.plan(at(16_000));
    assert.deepEqual(
      taking.flatMap((w) => (w.kind === 'acquire' ? [w.resourceVersion] : [])),
      [stale.resourceVersion],
      'a PUT that fails if anyone wrote the Lease since',
    );
    accept(assignment, taking);
    assert.deepEqual(assignment.stats, {
      held: 1,
      draining: 0,
      acquired: 1,
      takeovers: 1,
      handovers: 0,
      lost: 0,
    });
  });

  it('takes a released bucket at once', () => {
    const { assignment } = replica('a', 1);
    assignment.observe(snapshot({ buckets: { 0: lease('', { leaseDurationSeconds: 1 }) } }), 0);
    assert.deepEqual(kinds(assignment.plan(at(0)), 'acquire'), [0]);
  });

  it('times a holder from each change it sees: a renewal starts the lease duration over', () => {
    const { assignment } = replica('a', 1);
    assignment.observe(snapshot({ buckets: { 0: lease('x') } }), 0);
    assignment.observe(snapshot({ buckets: { 0: lease('x') } }), 10_000); // renewed
    assignment.observe(snapshot({ buckets: { 0: lease('x') } }), 10_000);
    assert.deepEqual(kinds(assignment.plan(at(24_999)), 'acquire'), []);
    assert.deepEqual(kinds(assignment.plan(at(25_000)), 'acquire'), [0]);
  });

  it('stops work at its renew deadline when renewals fail, counted from when the last good one was sent', () => {
    const { assignment, events } = holdingAll('a', 1);
    assert.equal(assignment.nextDeadline, 10_000);
    const renewal = assignment.plan(at(2_000));
    assert.deepEqual(kinds(renewal, 'renew'), [0]);
    accept(assignment, renewal);
    assert.equal(assignment.nextDeadline, 12_000, 'from the renewal sent at 2 s');
    for (const write of assignment.plan(at(4_000))) assignment.written(write, 'failed');
    assignment.expire(11_999);
    assert.deepEqual(events, []);
    assignment.expire(12_000);
    assert.deepEqual(events, ['lost 0'], 'before 15 s, when another may take it');
    assert.deepEqual(assignment.held, []);
    assert.equal(assignment.stats.lost, 1);
  });

  it('stops work at once when it sees another holder on a bucket it holds', () => {
    const { assignment, events } = holdingAll('a', 2);
    assignment.observe(snapshot({ buckets: { 0: lease('a'), 1: lease('x') } }), 2_000);
    const writes = assignment.plan(at(2_000));
    assert.deepEqual(events, ['lost 1']);
    assert.deepEqual(kinds(writes, 'renew'), [0], 'and does not write it');
  });

  it('hands its surplus over: stops it, renews it while it drains, releases it once drained', () => {
    const { assignment, events } = holdingAll('a', 8);
    const mine = Object.fromEntries(range(0, 8).map((b) => [b, lease('a')]));
    assignment.observe(snapshot({ members: { b: member('b', 8) }, buckets: mine }), 2_000);
    const draining = assignment.plan(at(2_000));
    assert.deepEqual(events, ['stopping 7', 'stopping 6', 'stopping 5', 'stopping 4']);
    assert.deepEqual(kinds(draining, 'renew'), range(0, 8), 'still held while draining');
    assert.deepEqual(kinds(draining, 'release'), []);
    accept(assignment, draining);
    assert.deepEqual(assignment.held, range(0, 4));
    assignment.drained(5);
    const releasing = assignment.plan(at(3_000));
    assert.deepEqual(kinds(releasing, 'release'), [5]);
    const release = releasing.find((w) => w.kind === 'release');
    assert.equal(release && 'spec' in release ? release.spec.holderIdentity : undefined, '');
    accept(assignment, releasing);
    assert.deepEqual(
      { held: assignment.stats.held, draining: assignment.stats.draining },
      { held: 4, draining: 3 },
    );
    assert.equal(assignment.stats.handovers, 1);
    assert.equal(assignment.stats.takeovers, 0);
  });

  it('under its share, hands nothing over', () => {
    const { assignment, events } = replica('b', 8);
    const a = { a: member('a', 8) };
    const byA = Object.fromEntries(range(0, 5).map((b) => [b, lease('a')]));
    assignment.observe(snapshot({ members: a, buckets: byA }), 0);
    const first = assignment.plan(at(0));
    assert.deepEqual(kinds(first, 'acquire'), [5, 6, 7], 'all there is: 3 of a share of 4');
    accept(assignment, first);
    const byB = Object.fromEntries(range(5, 8).map((b) => [b, lease('b')]));
    assignment.observe(snapshot({ members: a, buckets: { ...byA, ...byB } }), 2_000);
    const writes = assignment.plan(at(2_000));
    assert.deepEqual(events, ['started 5', 'started 6', 'started 7']);
    assert.deepEqual(kinds(writes, 'renew'), [5, 6, 7]);
  });

  it('hands over what is away from its home, and takes at home first', () => {
    const b = holdingAll('b', 8);
    b.assignment.observe(
      snapshot({
        members: { a: member('a', 8) },
        buckets: Object.fromEntries(range(0, 8).map((i) => [i, lease('b')])),
      }),
      2_000,
    );
    b.assignment.plan(at(2_000));
    assert.deepEqual(
      b.events,
      ['stopping 3', 'stopping 2', 'stopping 1', 'stopping 0'],
      'b’s home: 4-7',
    );
    const { assignment } = replica('b', 8);
    assignment.observe(snapshot({ members: { a: member('a', 8) } }), 0);
    assert.deepEqual(kinds(assignment.plan(at(0)), 'acquire'), [4, 5, 6, 7]);
  });

  it('takes nothing while a live member runs with another bucket count', () => {
    const { assignment } = replica('a', 8);
    assignment.observe(snapshot({ members: { n: member('n', 16) } }), 0);
    assert.deepEqual(kinds(assignment.plan(at(14_999)), 'acquire'), []);
    assert.deepEqual(kinds(assignment.plan(at(15_000)), 'acquire'), range(0, 8), 'once it is gone');
  });

  it('leaves: deletes its member Lease, hands every bucket over, and is done once all are released', () => {
    const r = holdingAll('a', 4, (b) => {
      if (b % 2 === 0) r.assignment.drained(b); // from inside the listener
    });
    r.assignment.leave();
    assert.deepEqual(
      r.events,
      range(0, 4).map((b) => `stopping ${b}`),
    );
    const first = r.assignment.plan(at(1_000));
    assert.deepEqual(
      first.map((w) => w.kind),
      ['leave', 'release', 'renew', 'release', 'renew'],
    );
    accept(r.assignment, first);
    assert.equal(r.assignment.done, false, 'buckets 1 and 3 still drain');
    r.assignment.drained(1);
    r.assignment.drained(3);
    const second = r.assignment.plan(at(1_500));
    assert.deepEqual(
      second.map((w) => w.kind),
      ['release', 'release'],
      'the member Lease is gone',
    );
    accept(r.assignment, second);
    assert.equal(r.assignment.done, true);
    assert.equal(r.assignment.stats.handovers, 4);
  });

  it('deletes a dead member’s Lease a lease duration after it expired, not before', () => {
    const { assignment } = replica('a', 1);
    const dead = member('x', 1);
    assignment.observe(snapshot({ members: { 'x-lease': dead } }), 0);
    assert.deepEqual(
      assignment.plan(at(29_999)).filter((w) => w.kind === 'collect'),
      [],
    );
    assert.deepEqual(
      assignment.plan(at(30_000)).filter((w) => w.kind === 'collect'),
      [{ kind: 'collect', name: 'x-lease', uid: dead.uid }],
    );
  });

  it('counts a member in the shares only while its Lease is live', () => {
    const { assignment } = replica('a', 4);
    assignment.observe(snapshot({ members: { b: member('b', 4) } }), 0);
    assert.deepEqual(kinds(assignment.plan(at(14_999)), 'acquire'), [0, 1]);
    const later = replica('a', 4).assignment;
    later.observe(snapshot({ members: { b: member('b', 4) } }), 0);
    assert.deepEqual(kinds(later.plan(at(15_000)), 'acquire'), [0, 1, 2, 3]);
  });
});

describe('bucket assignment beside a leader Lease (moving between the modes)', () => {
  const LEADER = 'echo-operator-leader';
  const sharded = () =>
    new BucketAssignment({ identity: 'a', bucketCount: 4, ...TIMINGS, leaderLease: LEADER });

  it('takes no bucket before its own member Lease is listed, and says so', () => {
    const assignment = sharded();
    assignment.observe(snapshot({}), 0);
    assert.match(assignment.waitingFor(0) ?? '', /member Lease/);
    const writes = assignment.plan(at(0));
    assert.deepEqual(
      writes.map((w) => w.kind),
      ['member'],
      'its member Lease, and no bucket',
    );
    assignment.observe(snapshot({ self: lease('a') }), 2_000);
    assert.equal(assignment.waitingFor(2_000), undefined);
    assert.deepEqual(kinds(assignment.plan(at(2_000)), 'acquire'), range(0, 4));
  });

  it('takes no bucket while the leader Lease has a live holder, timed on its own clock', () => {
    const assignment = sharded();
    // Renewed an hour ago by the leader's wall clock: only this replica's clock counts.
    const held = lease('leader-1', { renewTime: new Date(T0 - 3_600_000).toISOString() });
    assignment.observe(snapshot({ self: lease('a'), leader: held }), 1_000);
    assert.match(assignment.waitingFor(1_000) ?? '', /echo-operator-leader, held by leader-1/);
    assert.deepEqual(kinds(assignment.plan(at(1_000)), 'acquire'), []);
    // Renewed at 10 s: the lease duration starts over.
    const renewed = lease('leader-1');
    assignment.observe(snapshot({ self: lease('a'), leader: renewed }), 10_000);
    assignment.observe(snapshot({ self: lease('a'), leader: renewed }), 24_999);
    assert.deepEqual(kinds(assignment.plan(at(24_999)), 'acquire'), [], 'not before 25 s');
    assert.notEqual(assignment.waitingFor(24_999), undefined);
    assert.equal(assignment.waitingFor(25_000), undefined, 'expired');
    assignment.observe(snapshot({ self: lease('a'), leader: renewed }), 25_000);
    assert.deepEqual(kinds(assignment.plan(at(25_000)), 'acquire'), range(0, 4));
  });

  it('takes its buckets once the leader Lease is released, or gone', () => {
    for (const leader of [lease(''), undefined]) {
      const assignment = sharded();
      assignment.observe(snapshot({ self: lease('a'), ...(leader ? { leader } : {}) }), 0);
      assert.equal(assignment.waitingFor(0), undefined);
      assert.deepEqual(kinds(assignment.plan(at(0)), 'acquire'), range(0, 4));
    }
  });

  it('waits for nothing without a leader Lease', () => {
    const { assignment } = replica('a', 4);
    assignment.observe(snapshot({ leader: lease('leader-1') }), 0);
    assert.equal(assignment.waitingFor(0), undefined);
    assert.deepEqual(kinds(assignment.plan(at(0)), 'acquire'), range(0, 4));
  });
});

describe('a replica short of its share', () => {
  it('says so until its share is held: a newcomer while others hand buckets over', () => {
    const { assignment } = replica('b', 4);
    // 'a' holds every bucket; 'b' joined: its share is two, none of them free yet.
    const held = Object.fromEntries(range(0, 4).map((b) => [b, lease('a')]));
    assignment.observe(snapshot({ members: { a: member('a', 4) }, buckets: held }), 0);
    accept(assignment, assignment.plan(at(0)));
    assert.equal(assignment.shortOfShare, true);
    // 'a' released buckets 2 and 3: taken, and the share is held.
    const released = { ...held, 2: lease(''), 3: lease('') };
    assignment.observe(snapshot({ members: { a: member('a', 4) }, buckets: released }), 500);
    const writes = assignment.plan(at(500));
    assert.deepEqual(kinds(writes, 'acquire'), [2, 3]);
    accept(assignment, writes);
    assignment.plan(at(1_000));
    assert.equal(assignment.shortOfShare, false);
  });

  it('is not, while a leader elected without sharding holds the Lease or another count lives', () => {
    const beside = new BucketAssignment({
      identity: 'a',
      bucketCount: 4,
      ...TIMINGS,
      leaderLease: 'leader',
    });
    beside.observe(snapshot({ self: lease('a'), leader: lease('leader-1') }), 0);
    beside.plan(at(0));
    assert.equal(beside.shortOfShare, false, 'a leader leads: nothing to take soon');
    const { assignment } = replica('a', 4);
    assignment.observe(snapshot({ members: { old: member('old', 8) } }), 0);
    assignment.plan(at(0));
    assert.equal(assignment.shortOfShare, false, 'another bucket count: nothing to take soon');
  });
});
