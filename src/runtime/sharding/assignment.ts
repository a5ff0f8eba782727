// Which buckets one replica works on, decided on Leases: a state machine with no I/O and no clock
// of its own (bucket-leases.ts lists and writes the Leases around it; tests drive it with fake
// ones and a fake clock).
//
// Every replica has a member Lease, renewed every retry period. The live members, sorted by
// identity, split the B buckets into fair shares, floor(B/n) each and one more for the first
// B mod n: the shares sum to B, and replicas that see the same members agree on them. Each share
// also names a home, the run of buckets it would span laid end to end in that order: a replica
// takes buckets at home first and hands over those away from home first, so that replicas taking
// at once seldom race for one bucket, and what each holds stays a few whole ranges. Every
// bucket has a Lease, and a replica works on a bucket only while it holds its Lease, with leader
// election's rules (leader-election.ts): a bucket is taken when free, or when its holder has not
// renewed it within its duration, timed on the taker's monotonic clock from when it last saw the
// Lease change (never from the times written in it: clocks differ); every write carries the
// resourceVersion read, so of two replicas racing for a bucket one wins; a holder renews every
// retry period, and stops work on a bucket whose renewals have failed for the renew deadline,
// counted from when its last good one was sent, so before anyone may count the Lease expired.
//
// Above its share (a replica joined), a replica hands the surplus over: it stops their work
// (`stopping`), keeps renewing them while the work drains, and empties each Lease once the caller
// says it is drained, so that the newcomer takes it at its next try, not after an expiry. A
// replica that leaves does that with every bucket, and deletes its member Lease in its first
// round, so the others count it gone at once. Members announce their bucket count: while one with another
// count is live (a rollout changing it), the bucket Leases of the two counts cover overlapping
// hashes, so nobody takes a bucket until the other count is gone.
import {
  claim,
  expiresAt,
  newLease,
  released,
  type Clocks,
  type LeaderElectionTimings,
  type LeaseSpec,
  type Observation,
} from '../leader-election.ts';

/** A Lease as the API server answered it. */
export interface StoredLease {
  spec: LeaseSpec;
  resourceVersion: string;
  uid: string;
}

/** A replica's member Lease, with the bucket count that replica runs with. */
export interface MemberLease extends StoredLease {
  bucketCount: number;
}

/** The Leases as listed. */
export interface Snapshot {
  /** This replica's member Lease, if there is one. */
  self: StoredLease | undefined;
  /** The other replicas' member Leases, by name. */
  members: ReadonlyMap<string, MemberLease>;
  /** The bucket Leases there are, by bucket. */
  buckets: ReadonlyMap<number, StoredLease>;
  /** With `leaderLease`: that Lease, if there is one. */
  leader?: StoredLease | undefined;
}

/**
 * A write to make, in parallel with the others of its round. `resourceVersion` is the
 * precondition of a PUT; undefined, the Lease is created. `at` is when it was planned, on the
 * monotonic clock: a renewal that succeeds counts from then, not from its answer.
 */
export type LeaseWrite =
  | { kind: 'member'; spec: LeaseSpec; resourceVersion: string | undefined; at: number }
  | { kind: 'leave'; uid: string }
  | { kind: 'collect'; name: string; uid: string }
  | {
      kind: 'acquire' | 'renew' | 'release';
      bucket: number;
      spec: LeaseSpec;
      resourceVersion: string | undefined;
      at: number;
    };

/** The Lease written; deleted (or gone already); refused (someone wrote it first); no answer. */
export type WriteOutcome = StoredLease | 'deleted' | 'conflict' | 'failed';

/** What the Manager does for each bucket; called after the state changed, so it may call back. */
export interface AssignmentListener {
  /** This replica holds the bucket now: start its caches and workers. */
  started?(bucket: number): void;
  /** Hand the bucket over: stop its work, then call drained() once nothing is in flight. */
  stopping?(bucket: number): void;
  /** Stop the bucket's work at once, without draining: its Lease may be another's soon. */
  lost?(bucket: number): void;
}

/** For metrics: gauges, then counters since the start. */
export interface AssignmentStats {
  /** Buckets worked on. */
  held: number;
  /** Buckets being handed over: work stopping, Lease still held. */
  draining: number;
  /** Buckets taken... */
  acquired: number;
  /** ...of which from a holder that had stopped renewing. */
  takeovers: number;
  /** Buckets drained, then released for another replica. */
  handovers: number;
  /** Buckets whose work stopped at once: renewals failed for the renew deadline, or taken. */
  lost: number;
}

export interface AssignmentOptions extends LeaderElectionTimings {
  /** Unique per process. */
  identity: string;
  bucketCount: number;
  listener?: AssignmentListener;
  /**
   * A Lease through which replicas not sharded elect one leader that reconciles everything (the
   * other side of a move between the modes): no bucket is taken while a live holder has it, nor
   * before this replica's member Lease is written, as that leader checks for live members only
   * after taking its Lease. One of the two sides always sees the other.
   */
  leaderLease?: string;
}

/** A member's fair share: `count` buckets, and its home, buckets `first` to `first + count - 1`. */
export interface Share {
  first: number;
  count: number;
}

/** The fair shares of `bucketCount` among `members` (identities), by identity. */
export function fairShares(members: readonly string[], bucketCount: number): Map<string, Share> {
  const sorted = [...new Set(members)].sort();
  const base = Math.floor(bucketCount / sorted.length);
  const shares = new Map<string, Share>();
  let first = 0;
  sorted.forEach((identity, index) => {
    const count = base + (index < bucketCount % sorted.length ? 1 : 0);
    shares.set(identity, { first, count });
    first += count;
  });
  return shares;
}

/** A Lease and when this replica saw it change. */
type Seen<T extends StoredLease = StoredLease> = T & Observation;

/** A bucket this replica holds the Lease of: working on it, draining it, or drained. */
interface Holding {
  phase: 'active' | 'draining' | 'drained';
  /** The monotonic time its work must have stopped by, unless a renewal succeeds first. */
  validUntil: number;
}

export class BucketAssignment {
  private readonly options: AssignmentOptions;
  private readonly seconds: number;
  private self: Seen | undefined;
  private members = new Map<string, Seen<MemberLease>>();
  private buckets = new Map<number, Seen>();
  private leader: Seen | undefined;
  /** The last plan left this replica short of its share, which the next rounds may fill. */
  private wanting = false;
  /** The last list showed this replica's member Lease, so it read the leader Lease after it. */
  private memberListed = false;
  private readonly holding = new Map<number, Holding>();
  private leaving = false;
  private readonly counts = { acquired: 0, takeovers: 0, handovers: 0, lost: 0 };
  private events: (() => void)[] = [];

  constructor(options: AssignmentOptions) {
    this.options = options;
    this.seconds = Math.ceil(options.leaseDurationMs / 1000);
  }

  /** The buckets worked on, in order. */
  get held(): number[] {
    return this.bucketsIn('active');
  }

  get stats(): AssignmentStats {
    return {
      held: this.bucketsIn('active').length,
      draining: this.holding.size - this.bucketsIn('active').length,
      ...this.counts,
    };
  }

  /** Left, and no Lease held any more. */
  get done(): boolean {
    return this.leaving && this.holding.size === 0;
  }

  /** The earliest time some bucket's work must stop by, for a timer to call expire() at. */
  get nextDeadline(): number | undefined {
    const deadlines = [...this.holding.values()].map((h) => h.validUntil);
    return deadlines.length > 0 ? Math.min(...deadlines) : undefined;
  }

  /**
   * When the next bucket Lease of another holder expires after `now`, as last observed: a
   * replica that stopped renewing has its buckets taken then, not up to a retry period later.
   */
  nextExpiry(now: number): number | undefined {
    const { identity } = this.options;
    const expiries = [...this.buckets.values()]
      .filter((b) => (b.spec.holderIdentity ?? '') !== '' && b.spec.holderIdentity !== identity)
      .map((b) => expiresAt(b, this.seconds))
      .filter((expiry) => expiry > now);
    return expiries.length > 0 ? Math.min(...expiries) : undefined;
  }

  /** Whether the last plan left this replica short of a share it may soon fill: a newcomer. */
  get shortOfShare(): boolean {
    return this.wanting;
  }

  /** Takes in the Leases as listed, `now` being the monotonic time of the list. */
  observe(snapshot: Snapshot, now: number): void {
    const seen = <T extends StoredLease>(before: Seen | undefined, lease: T): Seen<T> => ({
      ...lease,
      observedAt: before?.resourceVersion === lease.resourceVersion ? before.observedAt : now,
    });
    this.self = snapshot.self && seen(this.self, snapshot.self);
    this.members = new Map(
      [...snapshot.members].map(([name, m]) => [name, seen(this.members.get(name), m)]),
    );
    this.buckets = new Map(
      [...snapshot.buckets].map(([b, lease]) => [b, seen(this.buckets.get(b), lease)]),
    );
    this.leader = snapshot.leader && seen(this.leader, snapshot.leader);
    this.memberListed = snapshot.self !== undefined;
  }

  /** Why no bucket is taken now although the share has room, if something else stops it. */
  waitingFor(now: number): string | undefined {
    const { leaderLease } = this.options;
    if (leaderLease === undefined) return undefined;
    // Not `self`, which its own write sets: the leader Lease must have been read after it.
    if (!this.memberListed) return 'its member Lease to be written';
    const holder = this.leader?.spec.holderIdentity ?? '';
    if (this.leader && holder !== '' && expiresAt(this.leader, this.seconds) > now) {
      return `the Lease ${leaderLease}, held by ${holder} (leader election): released or expired`;
    }
    return undefined;
  }

  /** This round's writes, from the Leases last observed; tells the listener what stops. */
  plan(now: Clocks): LeaseWrite[] {
    this.expire(now.monotonic);
    this.dropTaken();
    const { share, blocked } = this.share(now.monotonic);
    const otherCount = [...this.members.values()].some(
      (m) =>
        m.bucketCount !== this.options.bucketCount && expiresAt(m, this.seconds) > now.monotonic,
    );
    // Short of its share for want of a bucket another replica is handing over, or of its own
    // member Lease listed: what the next round may change, unlike another count or a leader.
    this.wanting =
      !this.leaving &&
      !otherCount &&
      this.bucketsIn('active').length < share.count &&
      (this.leader === undefined || !blocked || !this.memberListed);
    this.drainSurplus(share);
    const writes = [
      ...this.memberWrites(now),
      ...this.bucketWrites(now),
      ...(blocked ? [] : this.acquisitions(now, share)),
    ];
    this.flush();
    return writes;
  }

  /** Takes in how a write of plan() went. */
  written(write: LeaseWrite, outcome: WriteOutcome): void {
    if (outcome === 'failed') return;
    switch (write.kind) {
      case 'member':
        if (outcome !== 'conflict' && outcome !== 'deleted') {
          this.self = { ...outcome, observedAt: write.at };
        }
        break;
      case 'leave':
        if (outcome === 'deleted') this.self = undefined;
        break;
      case 'collect':
        if (outcome === 'deleted') this.members.delete(write.name);
        break;
      default:
        if (outcome !== 'conflict' && outcome !== 'deleted') this.bucketWritten(write, outcome);
        else if (write.kind === 'release') this.holding.delete(write.bucket);
    }
    this.flush();
  }

  /** The work of a bucket told `stopping` has drained: its Lease is released at the next round. */
  drained(bucket: number): void {
    const holding = this.holding.get(bucket);
    if (holding?.phase === 'draining') holding.phase = 'drained';
  }

  /** Hands every bucket over (`stopping` each) and takes no more; done once all are released. */
  leave(): void {
    this.leaving = true;
    for (const bucket of this.bucketsIn('active')) this.stop(bucket);
    this.flush();
  }

  /** Stops, at once, the work of every bucket not renewed in time (`lost`). */
  expire(now: number): void {
    for (const [bucket, holding] of this.holding) {
      if (now >= holding.validUntil) this.lose(bucket, holding);
    }
    this.flush();
  }

  private bucketsIn(phase: Holding['phase']): number[] {
    return [...this.holding]
      .filter(([, h]) => h.phase === phase)
      .map(([b]) => b)
      .sort((a, b) => a - b);
  }

  /** A bucket held here whose Lease is listed as someone else's, or gone: it is not ours now. */
  private dropTaken(): void {
    for (const [bucket, holding] of this.holding) {
      if (this.buckets.get(bucket)?.spec.holderIdentity !== this.options.identity) {
        this.lose(bucket, holding);
      }
    }
  }

  /** This replica's fair share, and whether a live member runs with another bucket count. */
  private share(now: number): { share: Share; blocked: boolean } {
    const { identity, bucketCount } = this.options;
    const live = [...this.members.values()].filter((m) => {
      const holder = m.spec.holderIdentity ?? '';
      return holder !== '' && holder !== identity && expiresAt(m, this.seconds) > now;
    });
    const peers = live.filter((m) => m.bucketCount === bucketCount);
    const identities = [identity, ...peers.map((m) => m.spec.holderIdentity ?? '')];
    const share = fairShares(identities, bucketCount).get(identity) ?? { first: 0, count: 0 };
    return {
      share: this.leaving ? { first: 0, count: 0 } : share,
      blocked: live.length > peers.length || this.waitingFor(now) !== undefined,
    };
  }

  /** Hands over what is above the share: away from home first, the highest first. */
  private drainSurplus(share: Share): void {
    const active = this.bucketsIn('active').sort(preferring(share, 'away'));
    const surplus = Math.max(0, active.length - share.count);
    for (const bucket of active.slice(0, surplus)) this.stop(bucket);
  }

  private memberWrites(now: Clocks): LeaseWrite[] {
    if (this.leaving) return this.self ? [{ kind: 'leave', uid: this.self.uid }] : [];
    const { identity, leaseDurationMs } = this.options;
    const spec = this.self
      ? claim(this.self, identity, now, this.seconds)
      : newLease(identity, now.wall, this.seconds);
    const resourceVersion = this.self?.resourceVersion;
    const member: LeaseWrite[] = spec
      ? [{ kind: 'member', spec, resourceVersion, at: now.monotonic }]
      : [];
    // A member dead for a lease duration past its expiry is deleted (by whoever sees it first):
    // each process has an identity of its own, so their Leases would pile up.
    const dead = [...this.members].filter(
      ([, m]) => expiresAt(m, this.seconds) + leaseDurationMs <= now.monotonic,
    );
    return [
      ...member,
      ...dead.map(([name, m]): LeaseWrite => ({ kind: 'collect', name, uid: m.uid })),
    ];
  }

  /** Renews every bucket held, and releases the drained ones. */
  private bucketWrites(now: Clocks): LeaseWrite[] {
    return [...this.holding].flatMap(([bucket, holding]): LeaseWrite[] => {
      const seen = this.buckets.get(bucket);
      if (!seen) return [];
      const { resourceVersion } = seen;
      if (holding.phase === 'drained') {
        const spec = released(seen.spec, now.wall);
        return [{ kind: 'release', bucket, spec, resourceVersion, at: now.monotonic }];
      }
      const spec = claim(seen, this.options.identity, now, this.seconds);
      return spec ? [{ kind: 'renew', bucket, spec, resourceVersion, at: now.monotonic }] : [];
    });
  }

  /** Buckets free or expired, up to the share: at home first, the lowest first. */
  private acquisitions(now: Clocks, share: Share): LeaseWrite[] {
    const { identity, bucketCount } = this.options;
    const writes: LeaseWrite[] = [];
    const wanted = share.count - this.bucketsIn('active').length;
    const candidates = Array.from({ length: bucketCount }, (_, b) => b)
      .filter((b) => !this.holding.has(b))
      .sort(preferring(share, 'home'));
    for (const bucket of candidates) {
      if (writes.length >= wanted) break;
      const seen = this.buckets.get(bucket);
      const spec = seen
        ? claim(seen, identity, now, this.seconds)
        : newLease(identity, now.wall, this.seconds);
      if (!spec) continue;
      const resourceVersion = seen?.resourceVersion;
      writes.push({ kind: 'acquire', bucket, spec, resourceVersion, at: now.monotonic });
    }
    return writes;
  }

  private bucketWritten(write: Extract<LeaseWrite, { bucket: number }>, lease: StoredLease): void {
    const { bucket, at } = write;
    const before = this.buckets.get(bucket)?.spec.holderIdentity ?? '';
    this.buckets.set(bucket, { ...lease, observedAt: at });
    const validUntil = at + this.options.renewDeadlineMs;
    const holding = this.holding.get(bucket);
    if (write.kind === 'release') {
      this.holding.delete(bucket);
      this.counts.handovers++;
    } else if (write.kind === 'renew') {
      if (holding) holding.validUntil = validUntil;
    } else if (this.leaving) {
      // Taken as the replica began to leave: no work started, so none to drain.
      this.holding.set(bucket, { phase: 'drained', validUntil });
    } else {
      this.holding.set(bucket, { phase: 'active', validUntil });
      this.counts.acquired++;
      if (before !== '' && before !== this.options.identity) this.counts.takeovers++;
      this.events.push(() => this.options.listener?.started?.(bucket));
    }
  }

  private stop(bucket: number): void {
    const holding = this.holding.get(bucket);
    if (holding?.phase !== 'active') return;
    holding.phase = 'draining';
    this.events.push(() => this.options.listener?.stopping?.(bucket));
  }

  private lose(bucket: number, holding: Holding): void {
    this.holding.delete(bucket);
    if (holding.phase === 'drained') return; // no work left to stop
    this.counts.lost++;
    this.events.push(() => this.options.listener?.lost?.(bucket));
  }

  /** Tells the listener, once the state is consistent: it may call drained() from inside. */
  private flush(): void {
    const events = this.events;
    this.events = [];
    for (const event of events) event();
  }
}

/** Orders buckets: those at `share`'s home first (lowest first), or those away (highest first). */
function preferring(share: Share, first: 'home' | 'away'): (a: number, b: number) => number {
  const away = (b: number): number => (b >= share.first && b < share.first + share.count ? 0 : 1);
  return first === 'home'
    ? (a, b) => away(a) - away(b) || a - b
    : (a, b) => away(b) - away(a) || b - a;
}
