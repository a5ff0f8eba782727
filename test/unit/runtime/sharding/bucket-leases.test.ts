// Replicas sharing the buckets through a fake Lease API that answers as the API server does (a PUT
// with a stale resourceVersion is a 409, a POST of a Lease that exists too), each replica on its
// own fake clocks, stepped 100 ms at a time: a round every retry period, the renew-deadline timer
// at every step, a bucket's work drained some time after `stopping`. Throughout, no bucket is
// worked on by two replicas at once. Then run() itself, on real timers: how it leaves, and its
// deadline timer.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RequestOptions } from '../../../../src/kube/client.ts';
import { ApiError } from '../../../../src/kube/errors.ts';
import type { Requester } from '../../../../src/kube/resource.ts';
import type { LeaseSpec } from '../../../../src/runtime/leader-election.ts';
import { fairShares } from '../../../../src/runtime/sharding/assignment.ts';
import {
  BucketLeases,
  ShardedMembers,
  type BucketLeasesOptions,
} from '../../../../src/runtime/sharding/bucket-leases.ts';

const LEASE = 15_000;
const RENEW_DEADLINE = 10_000;
const RETRY = 2_000;
const STEP = 100;
const DRAIN = 500;
const BUCKETS = 32;
const T0 = Date.parse('2026-11-25T12:00:00Z');
const COLLECTION = '/apis/coordination.k8s.io/v1/namespaces/ns/leases';

interface Lease {
  metadata: {
    name: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
  };
  spec: LeaseSpec;
}

const refuse = (code: number, reason: string): ApiError =>
  new ApiError(code, { reason }, 'request', 'leases');

/** Leases as the API server keeps them: a resourceVersion each write, preconditions enforced. */
class LeaseApi {
  readonly leases = new Map<string, Lease>();
  /** When each Lease was last written, by the fleet's clock. */
  readonly writtenAt = new Map<string, number>();
  /** The POSTs and PUTs, by Lease name. */
  readonly writes: string[] = [];
  private version = 0;
  private readonly now: () => number;

  constructor(now: () => number) {
    this.now = now;
  }

  /** A replica's client; `refused` cuts it off (every request fails). */
  client(refused: () => boolean = () => false): Requester {
    return {
      // Answered when sent (a Promise's executor runs at once, a throw rejecting it): a list
      // sent before a write does not see it, whenever its answer is read.
      request: <T>(opts: RequestOptions): Promise<T> =>
        new Promise<T>((resolve) => {
          if (refused()) throw refuse(503, 'ServiceUnavailable');
          resolve(this.handle(opts) as T);
        }),
    };
  }

  holder(name: string): string | undefined {
    return this.leases.get(name)?.spec.holderIdentity;
  }

  private handle(opts: RequestOptions): unknown {
    const name = opts.path.slice(COLLECTION.length + 1);
    const current = this.leases.get(name);
    const body = opts.body as Lease | undefined;
    switch (opts.method) {
      case undefined: {
        const [key = '', value] = String(opts.query?.labelSelector).split('=');
        const items = [...this.leases.values()].filter((l) => l.metadata.labels?.[key] === value);
        return structuredClone({ items });
      }
      case 'POST':
        if (this.leases.has(body?.metadata.name ?? '')) throw refuse(409, 'AlreadyExists');
        return this.store(body!, `uid-${this.version}`);
      case 'PUT': {
        if (!current) throw refuse(404, 'NotFound');
        const precondition = body?.metadata.resourceVersion;
        if (precondition && precondition !== current.metadata.resourceVersion) {
          throw refuse(409, 'Conflict');
        }
        return this.store(body!, current.metadata.uid ?? '');
      }
      case 'DELETE': {
        if (!current) throw refuse(404, 'NotFound');
        const { preconditions } = opts.body as { preconditions?: { uid?: string } };
        if (preconditions?.uid && preconditions.uid !== current.metadata.uid) {
          throw refuse(409, 'Conflict');
        }
        this.leases.delete(name);
        return {};
      }
      default:
        throw refuse(405, 'MethodNotAllowed');
    }
  }

  private store(body: Lease, uid: string): Lease {
    const lease = structuredClone(body);
    lease.metadata.resourceVersion = String(++this.version);
    lease.metadata.uid = uid;
    this.leases.set(lease.metadata.name, lease);
    this.writtenAt.set(lease.metadata.name, this.now());
    this.writes.push(lease.metadata.name);
    return structuredClone(lease);
  }
}

interface Replica {
  identity: string;
  bucketCount: number;
  leases: BucketLeases;
  /** Buckets being worked on: from `started` until `lost`, or until drained after `stopping`. */
  working: Set<number>;
  /** When each of its buckets started or stopped (lost, or drained), by the fleet's clock. */
  log: { at: number; event: 'started' | 'stopped'; bucket: number }[];
  alive: boolean;
  cutOff: boolean;
  nextRound: number;
  /** Buckets draining, and when their work will have drained. */
  drains: Map<number, number>;
}

interface ReplicaOptions {
  bucketCount?: number;
  drainMs?: number;
  /** Where its monotonic clock starts, and how far its wall clock is off. */
  monotonicOrigin?: number;
  wallSkewMs?: number;
}

/** Replicas on one fake Lease API, stepped together. */
class Fleet {
  now = 0;
  readonly api = new LeaseApi(() => this.now);
  readonly replicas = new Map<string, Replica>();
  /** Each time a replica started a bucket another was working on. */
  readonly overlaps: string[] = [];

  add(identity: string, options: ReplicaOptions = {}): Replica {
    const { bucketCount = BUCKETS, drainMs = DRAIN, monotonicOrigin = 0, wallSkewMs = 0 } = options;
    const replica: Replica = {
      identity,
      bucketCount,
      working: new Set(),
      log: [],
      alive: true,
      cutOff: false,
      nextRound: this.now,
      drains: new Map(),
      leases: new BucketLeases({
        client: this.api.client(() => replica.cutOff),
        namespace: 'ns',
        group: 'echo',
        identity,
        bucketCount,
        leaseDurationMs: LEASE,
        renewDeadlineMs: RENEW_DEADLINE,
        retryPeriodMs: RETRY,
        clocks: () => ({ monotonic: monotonicOrigin + this.now, wall: T0 + wallSkewMs + this.now }),
        listener: {
          started: (bucket) => {
            for (const other of this.replicas.values()) {
              if (
                other !== replica &&
                other.bucketCount === bucketCount &&
                other.working.has(bucket)
              ) {
                this.overlaps.push(
                  `${identity} started ${bucket} at ${this.now}, ${other.identity} on it`,
                );
              }
            }
            replica.working.add(bucket);
            replica.log.push({ at: this.now, event: 'started', bucket });
          },
          stopping: (bucket) => replica.drains.set(bucket, this.now + drainMs),
          lost: (bucket) => {
            this.stopWork(replica, bucket);
          },
        },
      } satisfies BucketLeasesOptions),
    };
    this.replicas.set(identity, replica);
    return replica;
  }

  get(identity: string): Replica {
    const replica = this.replicas.get(identity);
    assert.ok(replica, identity);
    return replica;
  }

  /** The process dies: no more rounds, no more work. */
  kill(identity: string): void {
    const replica = this.get(identity);
    replica.alive = false;
    replica.working.clear();
  }

  /** Runs the fleet for `ms`. */
  async run(ms: number): Promise<void> {
    for (const end = this.now + ms; this.now < end;) await this.step();
  }

  /** Runs until `done`, at most `limitMs`; how long it took. */
  async until(done: () => boolean, limitMs: number, what: string): Promise<number> {
    const start = this.now;
    while (!done()) {
      assert.ok(
        this.now - start < limitMs,
        `${what}: not within ${limitMs} ms\n${this.describe()}`,
      );
      await this.step();
    }
    return this.now - start;
  }

  /** Every bucket worked on by one live replica, each at its fair share, none draining. */
  settled(bucketCount = BUCKETS): boolean {
    const live = [...this.replicas.values()].filter(
      (r) => r.alive && r.bucketCount === bucketCount,
    );
    const shares = fairShares(
      live.map((r) => r.identity),
      bucketCount,
    );
    const worked = live.flatMap((r) => [...r.working]);
    return (
      worked.length === bucketCount &&
      new Set(worked).size === bucketCount &&
      live.every((r) => r.working.size === shares.get(r.identity)?.count && r.drains.size === 0)
    );
  }

  /** Each replica's buckets, for messages. */
  describe(): string {
    return [...this.replicas.values()]
      .map(
        (r) =>
          `${r.identity}${r.alive ? '' : ' (gone)'}: ${[...r.working].sort((a, b) => a - b).join(',')}`,
      )
      .join('\n');
  }

  private stopWork(replica: Replica, bucket: number): void {
    replica.working.delete(bucket);
    replica.drains.delete(bucket);
    replica.log.push({ at: this.now, event: 'stopped', bucket });
  }

  private async step(): Promise<void> {
    this.now += STEP;
    for (const replica of this.replicas.values()) {
      if (!replica.alive) continue;
      replica.leases.expire(); // the deadline timer
      for (const [bucket, at] of replica.drains) {
        if (at > this.now) continue;
        this.stopWork(replica, bucket);
        replica.leases.drained(bucket);
        replica.nextRound = this.now; // drained() wakes run()
      }
      if (replica.nextRound > this.now) continue;
      await replica.leases.round();
      replica.nextRound = this.now + RETRY;
      if (replica.leases.done) replica.alive = false; // left: the process exits
    }
  }
}

const memberLeases = (api: LeaseApi): string[] =>
  [...api.leases.keys()].filter((name) => name.startsWith('echo-member-'));
const bucketLease = (bucket: number, count = BUCKETS): string =>
  `echo-bucket-${bucket}-of-${count}`;

/** A fleet of `identities`, settled. */
async function settledFleet(identities: string[], options: ReplicaOptions = {}): Promise<Fleet> {
  const fleet = new Fleet();
  for (const identity of identities) fleet.add(identity, options);
  await fleet.until(() => fleet.settled(), 30_000, 'settling');
  return fleet;
}

const total = (fleet: Fleet, stat: 'takeovers' | 'handovers'): number =>
  [...fleet.replicas.values()].reduce((sum, r) => sum + r.leases.stats[stat], 0);

describe('bucket Leases, replicas joining, dying and leaving', () => {
  it('a replica that joins holds its share within a few retry periods, handed over, no lease expiring', async () => {
    const fleet = await settledFleet(['a']);
    assert.deepEqual([...fleet.get('a').working].length, 32);
    for (const identity of ['b', 'c', 'd']) {
      fleet.add(identity);
      const took = await fleet.until(() => fleet.settled(), LEASE, `${identity} joining`);
      assert.ok(took <= 2 * RETRY + DRAIN + 2 * STEP, `${identity} had its share after ${took} ms`);
    }
    assert.deepEqual(
      [...fleet.replicas.values()].map((r) => r.working.size),
      [8, 8, 8, 8],
    );
    assert.equal(total(fleet, 'takeovers'), 0, 'no bucket taken on expiry');
    // 1 → 2: a gives 16; 2 → 3: a and b give 5 each; 3 → 4: a and b 3, c 2.
    assert.equal(total(fleet, 'handovers'), 16 + 10 + 8, 'only the surplus moved');
    assert.deepEqual(fleet.overlaps, []);
  });

  it('the buckets of a replica that dies are taken a lease duration after its last renewal, not before', async () => {
    for (const skewed of [false, true]) {
      const fleet = await settledFleet(['a', 'b']);
      // Clocks far apart: monotonic origins, and wall clocks an hour either way.
      fleet.add('c', skewed ? { monotonicOrigin: 5e9, wallSkewMs: 3_600_000 } : {});
      await fleet.until(() => fleet.settled(), LEASE, 'c joining');
      const dead = [...fleet.get('c').working];
      assert.equal(dead.length, 10);
      const renewedAt = new Map(fleet.api.writtenAt);
      fleet.kill('c');
      const took = await fleet.until(() => fleet.settled(), 2 * LEASE, 'taking c’s buckets');
      assert.ok(took <= LEASE + 2 * RETRY, `taken ${took} ms after c died`);
      for (const bucket of dead) {
        const renewed = renewedAt.get(bucketLease(bucket)) ?? Infinity;
        const started = [...fleet.replicas.values()]
          .flatMap((r) => r.log)
          .find((e) => e.bucket === bucket && e.event === 'started' && e.at > renewed);
        assert.ok(started, `bucket ${bucket}`);
        assert.ok(
          started.at >= renewed + LEASE,
          `bucket ${bucket} taken ${started.at - renewed} ms after c’s last renewal`,
        );
      }
      assert.equal(total(fleet, 'takeovers'), 10);
      assert.deepEqual(fleet.overlaps, [], skewed ? 'with skewed clocks' : '');
    }
  });

  it('a dead replica’s member Lease is deleted once it has been expired a lease duration', async () => {
    const fleet = await settledFleet(['a', 'b']);
    fleet.kill('b');
    await fleet.run(LEASE + RETRY);
    assert.equal(memberLeases(fleet.api).length, 2);
    await fleet.run(LEASE + RETRY);
    assert.equal(memberLeases(fleet.api).length, 1);
  });

  it('never writes or deletes a Lease that is not the group’s, however long unrenewed', async () => {
    const fleet = await settledFleet(['a', 'b']);
    const lease = (name: string, labels: Record<string, string>): Lease => ({
      metadata: { name, uid: `foreign-${name}`, resourceVersion: '1', labels },
      spec: { holderIdentity: 'someone', leaseDurationSeconds: 1 },
    });
    const foreign = [
      // A user's own Lease named as a member's would be, without the group's labels.
      lease('echo-member-0000000000000000', {}),
      // Another group's member and bucket, never renewed.
      lease('other-member-1', {
        'sharding.example.com/group': 'other',
        'sharding.example.com/role': 'member',
      }),
      lease(bucketLease(0).replace('echo', 'other'), {
        'sharding.example.com/group': 'other',
        'sharding.example.com/role': 'bucket',
        'sharding.example.com/bucket': '0',
      }),
    ];
    for (const l of foreign) fleet.api.leases.set(l.metadata.name, structuredClone(l));
    await fleet.run(4 * LEASE);
    for (const l of foreign) assert.deepEqual(fleet.api.leases.get(l.metadata.name), l);
    assert.deepEqual(
      fleet.api.writes.filter((name) => foreign.some((l) => l.metadata.name === name)),
      [],
    );
  });

  it('a replica that leaves hands every bucket over at once, and its successors need no expiry', async () => {
    const fleet = await settledFleet(['a', 'b', 'c']);
    const leaving = fleet.get('c');
    const its = [...leaving.working];
    const left = fleet.now;
    leaving.leases.leave();
    leaving.nextRound = fleet.now; // run() leaves at once
    const took = await fleet.until(() => fleet.settled(), LEASE, 'c leaving');
    assert.ok(took <= DRAIN + 2 * RETRY + STEP, `a and b held c’s buckets after ${took} ms`);
    assert.equal(leaving.alive, false, 'done, so its run() returned');
    assert.deepEqual(
      leaving.log.filter((e) => e.event === 'stopped').map((e) => e.at),
      its.map(() => left + DRAIN),
      'every bucket drained together',
    );
    assert.equal(total(fleet, 'takeovers'), 0);
    assert.equal(memberLeases(fleet.api).length, 2, 'its member Lease deleted');
    assert.deepEqual(fleet.overlaps, []);
  });

  it('a bucket draining longer than a lease duration stays held, renewed, until drained', async () => {
    const fleet = await settledFleet(['a'], { drainMs: 2 * LEASE });
    fleet.add('b');
    await fleet.run(2 * LEASE - STEP);
    assert.equal(fleet.get('b').working.size, 0, 'nothing before a’s work drained');
    const took = await fleet.until(() => fleet.settled(), 2 * RETRY + STEP, 'b taking its share');
    assert.ok(took <= 2 * RETRY);
    assert.equal(total(fleet, 'takeovers'), 0);
    assert.deepEqual(fleet.overlaps, []);
  });

  it('a replica cut off from the API server stops work before its buckets can be taken, and gets its share back', async () => {
    const fleet = await settledFleet(['a', 'b']);
    const cut = fleet.get('a');
    const its = [...cut.working];
    const renewedAt = new Map(fleet.api.writtenAt);
    cut.cutOff = true;
    await fleet.until(() => fleet.get('b').working.size === BUCKETS, 2 * LEASE, 'b taking all');
    for (const bucket of its) {
      const renewed = renewedAt.get(bucketLease(bucket)) ?? 0;
      const stopped = cut.log.findLast((e) => e.bucket === bucket && e.event === 'stopped');
      const taken = fleet
        .get('b')
        .log.findLast((e) => e.bucket === bucket && e.event === 'started');
      assert.ok(stopped && taken, `bucket ${bucket}`);
      assert.ok(stopped.at <= renewed + RENEW_DEADLINE + STEP, 'a stopped at its renew deadline');
      assert.ok(taken.at >= renewed + LEASE, 'b took it on expiry');
    }
    assert.deepEqual(fleet.overlaps, []);
    cut.cutOff = false;
    await fleet.until(() => fleet.settled(), LEASE, 'a back');
    assert.deepEqual(fleet.overlaps, []);
  });

  it('of two replicas racing for a free bucket, the resourceVersion lets one win', async () => {
    for (const released of [false, true]) {
      const fleet = new Fleet();
      const racers = ['x', 'y'].map((id) => fleet.add(id, { bucketCount: 1 }));
      if (released) {
        // A Lease emptied by a replica gone: both PUT it from the same resourceVersion.
        const leaver = fleet.add('z', { bucketCount: 1 });
        fleet.replicas.delete('z');
        await leaver.leases.round();
        leaver.leases.leave();
        await leaver.leases.round();
        leaver.leases.drained(0);
        await leaver.leases.round();
        assert.equal(fleet.api.holder(bucketLease(0, 1)), '');
      }
      fleet.api.writes.length = 0;
      // Both list before either writes.
      await Promise.all(racers.map((r) => r.leases.round()));
      const tries = fleet.api.writes.filter((name) => name === bucketLease(0, 1));
      assert.equal(tries.length, 1, 'one write went through');
      assert.deepEqual(
        racers.map((r) => r.working.size).sort(),
        [0, 1],
        released ? 'racing to PUT' : 'racing to create',
      );
      assert.deepEqual(fleet.overlaps, []);
    }
  });

  it('a replica with another bucket count takes nothing until the other count is gone', async () => {
    const fleet = await settledFleet(['a']);
    const next = fleet.add('n', { bucketCount: 64 });
    await fleet.run(LEASE);
    assert.equal(next.working.size, 0, 'the two counts’ buckets overlap');
    assert.equal(fleet.get('a').working.size, BUCKETS, 'a keeps its buckets');
    fleet.get('a').leases.leave();
    await fleet.until(() => fleet.settled(64), LEASE, 'n taking over');
    const lastStop = Math.max(...fleet.get('a').log.map((e) => e.at));
    assert.ok(Math.min(...next.log.map((e) => e.at)) >= lastStop, 'n starts after a stopped');
    assert.equal(fleet.api.holder(bucketLease(0)), '', 'a’s Leases released, not n’s');
  });
});

describe('BucketLeases.run', () => {
  const fast = { leaseDurationMs: 1_000, renewDeadlineMs: 600, retryPeriodMs: 50 };

  it('leaves when stopped: every bucket handed over as soon as drained, the member Lease deleted', async () => {
    const api = new LeaseApi(() => performance.now());
    const stopping: number[] = [];
    const leases: BucketLeases = new BucketLeases({
      client: api.client(),
      namespace: 'ns',
      group: 'echo',
      identity: 'a',
      bucketCount: 4,
      // A retry period longer than the test waits: drained() must wake run() to release.
      leaseDurationMs: 5_000,
      renewDeadlineMs: 3_000,
      retryPeriodMs: 1_000,
      listener: {
        stopping: (bucket) => {
          stopping.push(bucket);
          setTimeout(() => {
            leases.drained(bucket);
          }, 20);
        },
      },
    });
    const stop = new AbortController();
    const running = leases.run(stop.signal);
    while (leases.held.length < 4) await sleep(5);
    stop.abort();
    const outcome = await Promise.race([
      running.then(() => 'done'),
      sleep(500, 'pending', { ref: false }),
    ]);
    assert.equal(outcome, 'done');
    assert.deepEqual(stopping.sort(), [0, 1, 2, 3]);
    assert.deepEqual(
      [0, 1, 2, 3].map((b) => api.holder(bucketLease(b, 4))),
      ['', '', '', ''],
    );
    assert.deepEqual(memberLeases(api), []);
    assert.equal(leases.stats.handovers, 4);
  });

  it('stops a bucket’s work at its renew deadline while a round hangs', async () => {
    const api = new LeaseApi(() => performance.now());
    const hung: (() => void)[] = [];
    let hanging = false;
    const client: Requester = {
      request: <T>(opts: RequestOptions): Promise<T> =>
        hanging
          ? new Promise<T>((_, reject) =>
              hung.push(() => {
                reject(refuse(503, 'ServiceUnavailable'));
              }),
            )
          : api.client().request<T>(opts),
    };
    let lostAt = 0;
    const leases: BucketLeases = new BucketLeases({
      client,
      namespace: 'ns',
      group: 'echo',
      identity: 'a',
      bucketCount: 1,
      ...fast,
      listener: {
        lost: () => (lostAt = performance.now()),
        stopping: (bucket) => {
          leases.drained(bucket);
        },
      },
    });
    const stop = new AbortController();
    const running = leases.run(stop.signal);
    try {
      while (leases.held.length < 1) await sleep(5);
      hanging = true;
      for (let waited = 0; lostAt === 0 && waited < 3_000; waited += 5) await sleep(5);
      assert.notEqual(lostAt, 0, 'the work never stopped');
      const renewed = api.writtenAt.get(bucketLease(0, 1)) ?? 0;
      assert.ok(
        lostAt - renewed < fast.leaseDurationMs,
        `lost ${lostAt - renewed} ms after the last renewal`,
      );
      assert.ok(lostAt - renewed >= fast.renewDeadlineMs - fast.retryPeriodMs);
    } finally {
      hanging = false;
      for (const fail of hung) fail();
      stop.abort();
      await running;
    }
  });
});

/**
 * A Lease API answering by name as well as by list, for the leader Lease: every request logged as
 * `VERB name` (`LIST` for the collection); `failLists` makes a LIST fail with 503.
 */
function namedLeaseApi() {
  const leases = new Map<string, Lease>();
  const log: string[] = [];
  let version = 0;
  const state = { failLists: false };
  const client: Requester = {
    request: <T>(opts: RequestOptions): Promise<T> =>
      new Promise<T>((resolve) => {
        const name = opts.path.slice(COLLECTION.length + 1);
        const body = opts.body as Lease | undefined;
        const verb = opts.method ?? (name === '' ? 'LIST' : 'GET');
        log.push(`${verb} ${body?.metadata.name ?? (name || String(opts.query?.labelSelector))}`);
        if (verb === 'LIST') {
          if (state.failLists) throw refuse(503, 'ServiceUnavailable');
          resolve(structuredClone({ items: [...leases.values()] }) as T);
        } else if (verb === 'GET') {
          const lease = leases.get(name);
          if (!lease) throw refuse(404, 'NotFound');
          resolve(structuredClone(lease) as T);
        } else {
          const lease = structuredClone(body!);
          lease.metadata.resourceVersion = String(++version);
          lease.metadata.uid = `uid-${lease.metadata.name}`;
          leases.set(lease.metadata.name, lease);
          resolve(structuredClone(lease) as T);
        }
      }),
  };
  return { client, leases, log, state };
}

describe('BucketLeases beside a leader Lease', () => {
  const LEADER = 'echo-leader';
  const leader = (holder: string): Lease => ({
    metadata: { name: LEADER, resourceVersion: '900', uid: 'leader' },
    spec: { holderIdentity: holder, leaseDurationSeconds: 15 },
  });
  const replica = (api: ReturnType<typeof namedLeaseApi>, now: { ms: number }) =>
    new BucketLeases({
      client: api.client,
      namespace: 'ns',
      group: 'echo',
      identity: 'a',
      bucketCount: 2,
      leaseDurationMs: LEASE,
      renewDeadlineMs: RENEW_DEADLINE,
      retryPeriodMs: RETRY,
      leaderLease: LEADER,
      clocks: () => ({ monotonic: now.ms, wall: T0 + now.ms }),
    });
  const bucketsWritten = (log: string[]) => log.filter((l) => /^(POST|PUT) echo-bucket-/.test(l));

  it('reads the leader Lease after listing, and takes its buckets once its member Lease is listed and no leader holds it', async () => {
    const api = namedLeaseApi();
    const now = { ms: 0 };
    const leases = replica(api, now);
    await leases.round();
    assert.deepEqual(api.log.slice(0, 2), [
      'LIST sharding.example.com/group=echo',
      `GET ${LEADER}`,
    ]);
    assert.match(api.log[2] ?? '', /^POST echo-member-[0-9a-f]{16}$/);
    assert.equal(api.log.length, 3, 'no bucket before its member Lease is listed');
    assert.deepEqual(leases.held, []);
    now.ms = RETRY;
    await leases.round();
    assert.deepEqual(leases.held, [0, 1]);
    assert.equal(leases.waitingFor, undefined);
  });

  it('takes nothing while the leader Lease is held, and says why', async () => {
    const api = namedLeaseApi();
    api.leases.set(LEADER, leader('leader-1'));
    const now = { ms: 0 };
    const leases = replica(api, now);
    for (let round = 0; round < 3; round++, now.ms += RETRY) await leases.round();
    assert.deepEqual(bucketsWritten(api.log), []);
    assert.match(leases.waitingFor ?? '', /echo-leader, held by leader-1/);
    api.leases.set(LEADER, {
      ...leader(''),
      metadata: { ...leader('').metadata, resourceVersion: '901' },
    });
    await leases.round();
    assert.deepEqual(leases.held, [0, 1], 'released: taken at once');
  });

  it('takes no bucket on a leader Lease read before its member Lease was written, when the next list fails', async () => {
    const api = namedLeaseApi();
    const now = { ms: 0 };
    const leases = replica(api, now);
    await leases.round(); // the leader Lease is not there; the member Lease is written after
    // Meanwhile a replica elected without sharding took the leader Lease, and listed the
    // members before this one's was written: it saw none, and reconciles everything.
    api.leases.set(LEADER, leader('leader-1'));
    api.state.failLists = true;
    now.ms = RETRY;
    await leases.round();
    assert.deepEqual(bucketsWritten(api.log), [], 'buckets taken beside a live leader');
    api.state.failLists = false;
    now.ms = 2 * RETRY;
    await leases.round();
    assert.match(leases.waitingFor ?? '', /held by leader-1/);
  });
});

describe('ShardedMembers', () => {
  const member = (name: string, holder: string, rv: string): Lease => ({
    metadata: { name, resourceVersion: rv, labels: {} },
    spec: { holderIdentity: holder, leaseDurationSeconds: 15 },
  });

  it('counts a member alive until its Lease has not changed for its duration on this clock; an empty holder never', async () => {
    let items: Lease[] = [];
    const queries: unknown[] = [];
    const now = { ms: 5e9 };
    const members = new ShardedMembers({
      client: {
        request: <T>(opts: RequestOptions): Promise<T> => {
          queries.push(opts.query?.labelSelector);
          return Promise.resolve(structuredClone({ items }) as T);
        },
      },
      namespace: 'ns',
      group: 'echo',
      // Far from the wall clock and from any renewTime: only changes seen count.
      clocks: () => ({ monotonic: now.ms, wall: 0 }),
    });
    const live = async (ms: number, leases: Lease[]) => {
      now.ms = 5e9 + ms;
      items = leases;
      return (await members.live(AbortSignal.timeout(5_000))).sort();
    };
    const a = member('m-a', 'a', '1');
    const b = member('m-b', 'b', '1');
    const released = member('m-c', '', '1');
    assert.deepEqual(await live(0, [a, b, released]), ['a', 'b'], 'first seen: alive');
    assert.deepEqual(await live(10_000, [a, member('m-b', 'b', '2'), released]), ['a', 'b']);
    assert.deepEqual(await live(14_999, [a, member('m-b', 'b', '2'), released]), ['a', 'b']);
    assert.deepEqual(await live(15_000, [a, member('m-b', 'b', '2'), released]), ['b']);
    assert.deepEqual(await live(24_999, [a, member('m-b', 'b', '2')]), ['b']);
    assert.deepEqual(await live(25_000, [a, member('m-b', 'b', '2')]), []);
    assert.deepEqual(await live(26_000, [member('m-a', 'a', '3')]), ['a'], 'renewed again');
    assert.deepEqual(
      queries,
      Array(7).fill('sharding.example.com/group=echo,sharding.example.com/role=member'),
    );
  });

  it('rejects when the Leases cannot be listed', async () => {
    const members = new ShardedMembers({
      client: { request: () => Promise.reject(refuse(503, 'ServiceUnavailable')) },
      namespace: 'ns',
      group: 'echo',
    });
    await assert.rejects(members.live(AbortSignal.timeout(5_000)), /503/);
  });
});
