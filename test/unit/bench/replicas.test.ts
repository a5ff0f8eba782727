// Several replicas in one benchmark run: the flags each one gets, the kill point, which replica
// holds what by its Leases (the victim and its Echoes), and the figures summed.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { summarize, type Run } from '../../../bench/compare.ts';
import { joinLine } from '../../../bench/report.ts';
import {
  bucketCountOf,
  fairShare,
  LEASE_NAME,
  ownership,
  owns,
  parseReplicaOptions,
  replicaFlags,
  summed,
  victimOf,
  writesBeforeKill,
  type LeaseView,
} from '../../../bench/replicas.ts';
import type { BenchResult, JoinResult } from '../../../bench/run.ts';
import { bucketOf } from '../../../src/runtime/sharding/buckets.ts';

const parse = (
  raw: Partial<Parameters<typeof parseReplicaOptions>[0]>,
): ReturnType<typeof parseReplicaOptions> =>
  parseReplicaOptions({
    replicas: undefined,
    mode: undefined,
    killAt: undefined,
    joinAt: undefined,
    operatorCmd: undefined,
    scenarios: undefined,
    memoryFit: false,
    ...raw,
  });

const bucketLease = (bucket: number, holder: string, count = 32): LeaseView => ({
  metadata: {
    name: `${LEASE_NAME}-bucket-${String(bucket)}-of-${String(count)}`,
    labels: {
      'sharding.example.com/role': 'bucket',
      'sharding.example.com/bucket': String(bucket),
      'sharding.example.com/buckets': String(count),
    },
  },
  spec: { holderIdentity: holder },
});

/** Why the options are refused; fails if they are not. */
function refusal(raw: Partial<Parameters<typeof parseReplicaOptions>[0]>): string {
  const parsed = parse(raw);
  assert.equal(typeof parsed, 'string', JSON.stringify(parsed));
  return parsed as string;
}

describe('--operator-replicas, --kill-replica-at, --replica-mode', () => {
  it('defaults to one replica, sharded when there are several', () => {
    assert.deepEqual(parse({}), { count: 1, mode: 'sharding' });
    assert.deepEqual(parse({ replicas: '3', killAt: 'scale' }), {
      count: 3,
      mode: 'sharding',
      killAt: 'scale',
    });
    assert.deepEqual(parse({ replicas: '2', mode: 'leader-elect' }), {
      count: 2,
      mode: 'leader-elect',
    });
  });

  it('refuses what cannot run, saying why', () => {
    assert.match(refusal({ replicas: '0' }), /at least 1, not "0"/);
    assert.match(refusal({ replicas: '1.5' }), /whole number/);
    assert.match(refusal({ replicas: '2', mode: 'active' }), /sharding or leader-elect/);
    assert.match(refusal({ replicas: '3', operatorCmd: 'go-peer' }), /not with --operator-cmd/);
    assert.match(refusal({ killAt: 'scale' }), /needs --operator-replicas 2 or more/);
    assert.match(refusal({ replicas: '3', killAt: 'steady' }), /one of create, scale, drift/);
    assert.match(
      refusal({ replicas: '3', killAt: 'scale', scenarios: ['create'] }),
      /does not make it \(scale burst\)/,
    );
    assert.match(refusal({ replicas: '3', killAt: 'scale', memoryFit: true }), /memory-fit/);
    // One replica of another operator is today's run.
    assert.deepEqual(parse({ operatorCmd: 'go-peer' }), { count: 1, mode: 'sharding' });
  });

  it('gives each replica its instance and the shared Leases, and a single one nothing', () => {
    assert.deepEqual(replicaFlags({ count: 1, mode: 'sharding' }, 0, 'echo-bench'), []);
    assert.deepEqual(replicaFlags({ count: 3, mode: 'sharding' }, 2, 'echo-bench'), [
      '--sharding=true',
      '--leader-elect-namespace=echo-bench',
      `--leader-elect-lease-name=${LEASE_NAME}`,
      '--instance=bench-replica-3',
    ]);
    assert.equal(
      replicaFlags({ count: 2, mode: 'leader-elect' }, 0, 'ns')[0],
      '--leader-elect=true',
    );
  });
});

describe('--join-replica-at', () => {
  it('joins in a scenario of its own, beside a kill in another', () => {
    assert.deepEqual(parse({ replicas: '3', joinAt: 'create' }), {
      count: 3,
      mode: 'sharding',
      joinAt: 'create',
    });
    assert.deepEqual(parse({ replicas: '3', joinAt: 'create', killAt: 'scale' }), {
      count: 3,
      mode: 'sharding',
      killAt: 'scale',
      joinAt: 'create',
    });
    assert.deepEqual(
      parse({ replicas: '2', joinAt: 'drift', scenarios: ['create', 'scale', 'drift'] }),
      { count: 2, mode: 'sharding', joinAt: 'drift' },
    );
  });

  it('refuses what cannot run, saying why', () => {
    assert.match(refusal({ joinAt: 'create' }), /--join-replica-at needs --operator-replicas 2/);
    assert.match(
      refusal({ replicas: '3', mode: 'leader-elect', joinAt: 'create' }),
      /needs --replica-mode sharding/,
    );
    assert.match(
      refusal({ replicas: '3', joinAt: 'restart' }),
      /--join-replica-at takes one of create, scale, drift, not "restart"/,
    );
    assert.match(
      refusal({ replicas: '3', joinAt: 'drift', scenarios: ['create', 'scale'] }),
      /--join-replica-at drift: the run does not make it \(drift repair\)/,
    );
    assert.match(refusal({ replicas: '3', joinAt: 'scale', memoryFit: true }), /memory-fit/);
    assert.match(
      refusal({ replicas: '3', joinAt: 'scale', killAt: 'scale' }),
      /name the same scenario \(scale\).*different scenarios/,
    );
    // The kill's own refusals come first.
    assert.match(
      refusal({ replicas: '3', joinAt: 'scale', killAt: 'steady' }),
      /--kill-replica-at/,
    );
  });

  it('aims at floor(buckets / live replicas), of the buckets the bench passes or 32', () => {
    assert.equal(bucketCountOf(replicaFlags({ count: 3, mode: 'sharding' }, 3, 'ns')), 32);
    assert.equal(bucketCountOf(['--sharding=true', '--sharding-buckets=64']), 64);
    assert.equal(bucketCountOf(['--sharding-buckets=nonsense']), 32);
    assert.equal(fairShare(32, 4), 8);
    assert.equal(fairShare(32, 3), 10);
    assert.equal(fairShare(32, 5), 6);
    assert.equal(fairShare(4, 8), 0);
    assert.equal(fairShare(32, 0), 32);
  });

  const join: JoinResult = {
    instance: 'bench-replica-4',
    afterSeconds: 1.234,
    writesBefore: 100,
    of: 200,
    bucketCount: 32,
    share: 8,
    heldShareSeconds: 3.456,
    firstBucketSeconds: 1.5,
    heldAtEnd: 8,
    takeovers: { before: 2, after: 2 },
    handovers: 8,
  };

  it('reports when it joined, when it held its share, the takeovers across it and the handovers', () => {
    assert.equal(
      joinLine('create burst', join),
      '  create burst: joined bench-replica-4 at 1.23 s, after 100/200 writes; ' +
        'held its share (8 of 32 buckets) after 3.46 s (a first bucket after 1.50 s); ' +
        'takeovers 0; handovers 8',
    );
    const { heldShareSeconds: _held, firstBucketSeconds: _first, ...short } = join;
    assert.equal(
      joinLine('scale burst', { ...short, heldAtEnd: 5, takeovers: { before: 0, after: 3 } }),
      '  scale burst: joined bench-replica-4 at 1.23 s, after 100/200 writes; ' +
        "did not hold its share (8 of 32 buckets) by the scenario's end (held 5); takeovers 3; handovers 8",
    );
  });
});

describe('the kill point', () => {
  it('is half the writes, rounded down: at least one write follows it', () => {
    assert.equal(writesBeforeKill(100), 50);
    assert.equal(writesBeforeKill(7), 3);
    assert.equal(writesBeforeKill(1), 0);
  });
});

describe('who holds what, from the Leases', () => {
  const leases = [
    bucketLease(0, 'bench-replica-1_4f1c'),
    bucketLease(5, 'bench-replica-1_4f1c'),
    bucketLease(1, 'bench-replica-10_9a2b'),
    bucketLease(2, 'bench-replica-2_77aa'),
    bucketLease(3, ''),
    {
      metadata: {
        name: 'echo-bench-member-abc',
        labels: { 'sharding.example.com/role': 'member' },
      },
      spec: { holderIdentity: 'bench-replica-2_77aa' },
    },
  ];

  it("reads a replica's buckets, not those of a replica whose name it prefixes", () => {
    assert.deepEqual(ownership(leases, 'bench-replica-1'), {
      all: false,
      bucketCount: 32,
      buckets: [0, 5],
    });
    assert.deepEqual(ownership(leases, 'bench-replica-3'), { all: false, buckets: [] });
  });

  it('tells whether an Echo is of those buckets by its uid', () => {
    const owner = ownership(leases, 'bench-replica-1');
    // Like the API server's: similar strings (uid-1, uid-2) share FNV-1a's top bits.
    const uids = Array.from({ length: 200 }, () => randomUUID());
    for (const uid of uids) assert.equal(owns(owner, uid), [0, 5].includes(bucketOf(uid, 32)), uid);
    assert.ok(uids.some((uid) => owns(owner, uid)));
  });

  it('takes the leader as owning every Echo', () => {
    const leader: LeaseView = {
      metadata: { name: LEASE_NAME },
      spec: { holderIdentity: 'bench-replica-2_5e0f' },
    };
    assert.equal(ownership([leader], 'bench-replica-2').all, true);
    assert.equal(owns(ownership([leader], 'bench-replica-1'), 'any'), false);
  });

  it('kills the replica that reconciles the most, the first on a tie', () => {
    const instances = ['bench-replica-1', 'bench-replica-2', 'bench-replica-3'];
    assert.equal(victimOf(leases, instances), 'bench-replica-1');
    const leader: LeaseView = {
      metadata: { name: LEASE_NAME },
      spec: { holderIdentity: 'bench-replica-3_1' },
    };
    assert.equal(victimOf([leader], instances), 'bench-replica-3');
    assert.equal(victimOf([], instances), 'bench-replica-1');
  });
});

describe('the replicas summed', () => {
  it("adds each one's peak, final RSS and CPU", () => {
    assert.deepEqual(
      summed([
        { peakRssBytes: 100, finalRssBytes: 90, cpuSeconds: 1.5 },
        { peakRssBytes: 120, finalRssBytes: 0, cpuSeconds: 0.5 },
      ]),
      { peakRssBytes: 220, finalRssBytes: 90, cpuSeconds: 2 },
    );
    assert.deepEqual(summed([]), { peakRssBytes: 0, finalRssBytes: 0, cpuSeconds: 0 });
  });

  it("compares the largest replica's figures, and only in runs that have replicas", () => {
    const run = (replicas?: { peak: number; cpu: number }[]): Run => ({
      label: 'ours',
      round: 1,
      dir: 'ours',
      result: {
        options: { n: 10 },
        scenarios: [],
        memory: { peakRssBytes: 0, finalRssBytes: 0, cpuSeconds: 0 },
        ...(replicas
          ? {
              replicas: replicas.map((r, i) => ({
                instance: `bench-replica-${String(i + 1)}`,
                port: 0,
                rss: [],
                peakRssBytes: r.peak * 2 ** 20,
                finalRssBytes: 0,
                cpuSeconds: r.cpu,
              })),
              overlaps: { objects: 0, pairs: 0, writes: 10, unattributed: 0, examples: [] },
            }
          : {}),
      } as unknown as BenchResult,
    });
    const contenders = [{ label: 'ours', cmd: undefined }];
    const rows = summarize(contenders, [
      run([
        { peak: 90, cpu: 3 },
        { peak: 110, cpu: 2 },
      ]),
    ]);
    const row = (name: string): number | undefined =>
      rows.find((r) => r.name === name)?.cells.ours?.median;
    assert.equal(row('peak RSS, largest replica'), 110);
    assert.equal(row('CPU for the run, busiest replica'), 3);
    assert.equal(row('overlaps: Echoes written by two replicas within a lease duration'), 0);
    const single = summarize(contenders, [run()]).map((r) => r.name);
    assert.ok(!single.includes('peak RSS, largest replica'), 'no replica rows for one process');
    assert.ok(
      !rows.some((r) => r.name.includes('join')),
      'no join rows in runs where no replica joined',
    );
  });

  it('compares the join: time to its share (missed when never held) and the takeovers', () => {
    const run = (join?: Partial<JoinResult>): Run => ({
      label: 'ours',
      round: 1,
      dir: 'ours',
      result: {
        options: { n: 10 },
        scenarios: [{ name: 'create burst', apiCalls: {}, ...(join ? { join } : {}) }],
        memory: { peakRssBytes: 0, finalRssBytes: 0, cpuSeconds: 0 },
        replicas: [],
      } as unknown as BenchResult,
    });
    const contenders = [{ label: 'ours', cmd: undefined }];
    const rows = summarize(contenders, [
      run({ heldShareSeconds: 2.5, takeovers: { before: 1, after: 1 } }),
      run({ takeovers: { before: 0, after: 2 } }),
      run(),
    ]);
    const cellOf = (name: string) => rows.find((r) => r.name === name)?.cells.ours;
    const held = cellOf('after the join: the new replica holding its fair share');
    assert.ok(held);
    assert.equal(held.median, 2.5);
    assert.equal(held.missed, 1);
    assert.deepEqual(cellOf('takeovers across the join (target 0)')?.values, [0, 2, undefined]);
  });
});
