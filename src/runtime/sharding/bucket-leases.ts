// The Lease I/O around a BucketAssignment, and nothing else: each round, one LIST of the group's
// Leases (by label), the assignment's plan, then its writes in parallel, each a PUT carrying the
// resourceVersion read (a POST for a Lease not there yet), the round bounded by the renew
// deadline. A round whose LIST fails still renews, from what was last read or written, as the
// leader elector does. Between rounds a timer stops, at the renew deadline, the work of buckets
// whose renewals have not gone through: a LIST or a PUT that hangs delays nothing.
//
// The Leases: `<group>-member-<FNV-1a of the identity>` (identities need not be valid names) and
// `<group>-bucket-<i>-of-<B>`, labelled with the group, their role and the bucket count, so a
// replica with another count never reads them as its own buckets.
import { ApiError, isNotFound } from '../../kube/errors.ts';
import { LEASES, resource, type Requester, type Resource } from '../../kube/resource.ts';
import {
  readClocks,
  type Clocks,
  type LeaderElectionTimings,
  type LeaseSpec,
} from '../leader-election.ts';
import {
  BucketAssignment,
  type AssignmentListener,
  type AssignmentStats,
  type LeaseWrite,
  type MemberLease,
  type Snapshot,
  type StoredLease,
  type WriteOutcome,
} from './assignment.ts';
import { hashHex } from './hash.ts';

const GROUP_LABEL = 'sharding.example.com/group';
const ROLE_LABEL = 'sharding.example.com/role';
const BUCKET_COUNT_LABEL = 'sharding.example.com/buckets';
const BUCKET_LABEL = 'sharding.example.com/bucket';

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
  };
  spec: LeaseSpec;
}

export interface BucketLeasesOptions extends LeaderElectionTimings {
  client: Requester;
  namespace: string;
  /** Names and labels the Leases; replicas of one group share the buckets. A DNS label. */
  group: string;
  /** Unique per process. */
  identity: string;
  bucketCount: number;
  listener?: AssignmentListener;
  /** Failed requests; the next round tries again. */
  onError?: (message: string, err: unknown) => void;
  /** See AssignmentOptions.leaderLease: read each round, by name, in the same namespace. */
  leaderLease?: string;
  /** This replica's clocks; tests pass fake ones. */
  clocks?: () => Clocks;
}

export class BucketLeases {
  private readonly options: BucketLeasesOptions;
  private readonly assignment: BucketAssignment;
  private readonly clocks: () => Clocks;
  private readonly memberName: string;
  private lastListOk = false;
  private running = false;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(options: BucketLeasesOptions) {
    this.options = options;
    this.clocks = options.clocks ?? readClocks;
    this.memberName = `${options.group}-member-${hashHex(options.identity)}`;
    this.assignment = new BucketAssignment({
      identity: options.identity,
      bucketCount: options.bucketCount,
      leaseDurationMs: options.leaseDurationMs,
      renewDeadlineMs: options.renewDeadlineMs,
      retryPeriodMs: options.retryPeriodMs,
      ...(options.listener ? { listener: options.listener } : {}),
      ...(options.leaderLease === undefined ? {} : { leaderLease: options.leaderLease }),
    });
  }

  /** Why no bucket is taken although the share has room, if something else stops it. */
  get waitingFor(): string | undefined {
    return this.assignment.waitingFor(this.clocks().monotonic);
  }

  /** The buckets this replica works on. */
  get held(): number[] {
    return this.assignment.held;
  }

  get stats(): AssignmentStats {
    return this.assignment.stats;
  }

  /** The last LIST got an answer: what readiness reports. */
  get healthy(): boolean {
    return this.lastListOk;
  }

  /** Left, and no bucket Lease held any more. */
  get done(): boolean {
    return this.assignment.done;
  }

  /** The work of a bucket told `stopping` has drained: its Lease is released at once. */
  drained(bucket: number): void {
    this.assignment.drained(bucket);
    this.wake?.();
  }

  /** Starts leaving: every bucket is told `stopping`, and released once drained. */
  leave(): void {
    this.assignment.leave();
  }

  /**
   * Runs rounds every retry period until `signal` aborts; then leaves: every bucket is told
   * `stopping`, each Lease is released once drained() says so, and this resolves when none is
   * held (or, where a release could not be written, once its renew deadline has passed).
   */
  async run(signal: AbortSignal): Promise<void> {
    this.running = true;
    try {
      for (;;) {
        if (signal.aborted) this.leave();
        await this.round();
        if (this.assignment.done) return;
        await this.pause(this.untilNextRound(), signal);
      }
    } finally {
      this.running = false;
      clearTimeout(this.deadlineTimer);
    }
  }

  /** One round: list, plan, write. run() makes one every retry period; tests call it directly. */
  async round(): Promise<void> {
    const signal = AbortSignal.timeout(this.options.renewDeadlineMs);
    await this.list(signal);
    const writes = this.assignment.plan(this.clocks());
    await Promise.all(
      writes.map(async (write) => {
        this.assignment.written(write, await this.send(write, signal));
      }),
    );
    this.armDeadline();
  }

  /** Stops the work of buckets past their renew deadline: the timer's job, and tests'. */
  expire(): void {
    this.assignment.expire(this.clocks().monotonic);
  }

  private get leases(): Resource<Lease> {
    return resource<Lease>(this.options.client, LEASES).namespace(this.options.namespace);
  }

  private async list(signal: AbortSignal): Promise<void> {
    const { client, group } = this.options;
    try {
      const { leaderLease } = this.options;
      // After the list: the member Lease it shows was written before the leader's was read. Only
      // while no bucket is held: a leader elected later sees this replica's member Lease.
      const list = await client.request<{ items: Lease[] }>({
        path: this.leases.path(),
        query: { labelSelector: `${GROUP_LABEL}=${group}` },
        signal,
      });
      const holding = this.assignment.stats.held + this.assignment.stats.draining > 0;
      const leader = leaderLease && !holding && (await this.leases.find(leaderLease, { signal }));
      this.assignment.observe(
        { ...this.snapshotOf(list.items), ...(leader ? { leader: stored(leader) } : {}) },
        this.clocks().monotonic,
      );
      this.lastListOk = true;
    } catch (err) {
      this.lastListOk = false;
      this.options.onError?.(`list leases of ${group}`, err);
    }
  }

  /** The group's Leases as the assignment reads them: another bucket count's are not buckets. */
  private snapshotOf(items: Lease[]): Snapshot {
    let self: StoredLease | undefined;
    const members = new Map<string, MemberLease>();
    const buckets = new Map<number, StoredLease>();
    for (const lease of items) {
      const { name, labels = {} } = lease.metadata;
      const count = Number(labels[BUCKET_COUNT_LABEL]);
      if (name === this.memberName) {
        self = stored(lease);
      } else if (labels[ROLE_LABEL] === 'member') {
        members.set(name, { ...stored(lease), bucketCount: count });
      } else if (labels[ROLE_LABEL] === 'bucket' && count === this.options.bucketCount) {
        buckets.set(Number(labels[BUCKET_LABEL]), stored(lease));
      }
    }
    return { self, members, buckets };
  }

  private async send(write: LeaseWrite, signal: AbortSignal): Promise<WriteOutcome> {
    try {
      switch (write.kind) {
        case 'leave':
        case 'collect': {
          const name = write.kind === 'leave' ? this.memberName : write.name;
          await this.leases.delete(name, { uid: write.uid, signal });
          return 'deleted';
        }
        default: {
          const lease = this.leaseOf(write);
          const written = write.resourceVersion
            ? await this.leases.replace(lease, { signal })
            : await this.leases.create(lease, { signal });
          return stored(written);
        }
      }
    } catch (err) {
      // 409: written by another since it was read, or created by another first; 404: gone.
      if ((err instanceof ApiError && err.code === 409) || isNotFound(err)) return 'conflict';
      this.options.onError?.(`${write.kind} lease`, err);
      return 'failed';
    }
  }

  private leaseOf(write: Extract<LeaseWrite, { spec: LeaseSpec }>): Lease {
    const { group, bucketCount, namespace } = this.options;
    const common = { [GROUP_LABEL]: group, [BUCKET_COUNT_LABEL]: String(bucketCount) };
    const [name, labels] =
      write.kind === 'member'
        ? [this.memberName, { ...common, [ROLE_LABEL]: 'member' }]
        : [
            `${group}-bucket-${write.bucket}-of-${bucketCount}`,
            { ...common, [ROLE_LABEL]: 'bucket', [BUCKET_LABEL]: String(write.bucket) },
          ];
    const { resourceVersion } = write;
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      // A PUT replaces the labels too: every write carries them.
      metadata: { name, namespace, labels, ...(resourceVersion ? { resourceVersion } : {}) },
      spec: write.spec,
    };
  }

  /**
   * A retry period, or less when a bucket Lease expires sooner (its holder stopped renewing); a
   * quarter of one while short of its share (a newcomer: the others hand buckets over at their
   * next round, and each is taken as soon as it is released).
   */
  private untilNextRound(): number {
    const retryPeriodMs = this.assignment.shortOfShare
      ? this.options.retryPeriodMs / 4
      : this.options.retryPeriodMs;
    const now = this.clocks().monotonic;
    const expiry = this.assignment.nextExpiry(now);
    if (expiry === undefined) return retryPeriodMs;
    // Just past the expiry: at it exactly, the Lease still counts as held.
    return Math.min(retryPeriodMs, Math.ceil(expiry - now) + 1);
  }

  /** Arms the timer for the earliest renew deadline, while run() runs. */
  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    const deadline = this.assignment.nextDeadline;
    if (!this.running || deadline === undefined) return;
    const delay = Math.max(1, Math.ceil(deadline - this.clocks().monotonic));
    this.deadlineTimer = setTimeout(() => {
      this.expire();
      this.armDeadline();
    }, delay);
  }

  /** Waits `ms`, or less when `signal` aborts or drained() calls. */
  private pause(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }
}

function stored(lease: Lease): StoredLease {
  return {
    spec: lease.spec,
    resourceVersion: lease.metadata.resourceVersion ?? '',
    uid: lease.metadata.uid ?? '',
  };
}

/**
 * The sharded replicas of a group that are alive, as a leader elected without sharding sees them
 * (the other side of AssignmentOptions.leaderLease): member Leases renewed within their duration
 * on this replica's clock, from when it saw each change; one first seen counts as alive.
 */
export class ShardedMembers {
  private readonly options: Pick<BucketLeasesOptions, 'client' | 'namespace' | 'group'>;
  private readonly clocks: () => Clocks;
  private seen = new Map<string, { resourceVersion: string; observedAt: number }>();

  constructor(options: Pick<BucketLeasesOptions, 'client' | 'namespace' | 'group' | 'clocks'>) {
    this.options = options;
    this.clocks = options.clocks ?? readClocks;
  }

  /** The identities of the live members; rejects when the Leases cannot be listed. */
  async live(signal: AbortSignal): Promise<string[]> {
    const { client, namespace, group } = this.options;
    const list = await client.request<{ items: Lease[] }>({
      path: resource<Lease>(client, LEASES).namespace(namespace).path(),
      query: { labelSelector: `${GROUP_LABEL}=${group},${ROLE_LABEL}=member` },
      signal,
    });
    const now = this.clocks().monotonic;
    const before = this.seen;
    this.seen = new Map();
    const live: string[] = [];
    for (const lease of list.items) {
      const { name, resourceVersion = '' } = lease.metadata;
      const known = before.get(name);
      const observedAt = known?.resourceVersion === resourceVersion ? known.observedAt : now;
      this.seen.set(name, { resourceVersion, observedAt });
      const holder = lease.spec.holderIdentity ?? '';
      const seconds = lease.spec.leaseDurationSeconds ?? 0;
      if (holder !== '' && observedAt + seconds * 1000 > now) live.push(holder);
    }
    return live;
  }
}
