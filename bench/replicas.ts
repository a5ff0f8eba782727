// Several replicas of our operator in one run (--operator-replicas R, --kill-replica-at SCENARIO,
// --join-replica-at SCENARIO): the flags each replica gets, which replica holds what (read from
// the Leases), when one is killed or one more joins, what the newcomer's share is, and the
// per-replica figures summed. Pure: run.ts does the I/O.
import { bucketOf, DEFAULT_BUCKET_COUNT } from '../src/runtime/sharding/buckets.ts';
import { SCENARIOS, type ScenarioKey } from './scenarios.ts';

/**
 * How the replicas split the work: `sharding` (each holds a share of the buckets), or
 * `leader-elect` (one leads, the others stand by): the same mechanics (R processes, measured, one
 * killed) on an operator without sharding.
 */
export type ReplicaMode = 'sharding' | 'leader-elect';

export interface ReplicaOptions {
  /** Processes of our operator; 1 runs it exactly as a single-replica run always has. */
  count: number;
  mode: ReplicaMode;
  /** The scenario in the middle of which one replica is SIGKILLed. */
  killAt?: ScenarioKey;
  /** The scenario in the middle of which one more replica (bench-replica-<R+1>) starts. */
  joinAt?: ScenarioKey;
}

/** Scenarios whose harness writes give a middle to kill in, and Echoes to edit after the kill. */
export const KILLABLE = ['create', 'scale', 'drift'] as const satisfies readonly ScenarioKey[];

/** Scenarios with a middle to join in: the same, at the same point (writesBeforeKill). */
export const JOINABLE = KILLABLE;

/**
 * The lease duration the replicas run with (the operator's default): a dead replica's buckets are
 * taken within it, and two writes of one Echo by two replicas closer than it are an overlap.
 */
export const LEASE_DURATION_MS = 15_000;

/**
 * The Lease name (sharding: the group) the replicas share, in the bench namespace: the chart's
 * full name for the bench's release, which its RBAC grants.
 */
export const LEASE_NAME = 'bench-echo-operator';

const MODES: readonly ReplicaMode[] = ['sharding', 'leader-elect'];

/** The replica options from the CLI's strings, or what is wrong with them. */
export function parseReplicaOptions(raw: {
  replicas: string | undefined;
  mode: string | undefined;
  killAt: string | undefined;
  joinAt?: string | undefined;
  /** Set when another operator is measured: the replica flags are ours. */
  operatorCmd: string | undefined;
  /** What --scenarios chose; undefined: every one. */
  scenarios: readonly ScenarioKey[] | undefined;
  memoryFit: boolean;
}): ReplicaOptions | string {
  const count = raw.replicas === undefined ? 1 : Number(raw.replicas);
  if (!Number.isInteger(count) || count < 1)
    return `--operator-replicas must be a whole number of at least 1, not "${raw.replicas ?? ''}"`;
  const mode = raw.mode ?? 'sharding';
  if (!(MODES as string[]).includes(mode))
    return `--replica-mode must be ${MODES.join(' or ')}, not "${mode}"`;
  if (count > 1 && raw.operatorCmd !== undefined)
    return '--operator-replicas runs our operator with flags of its own: not with --operator-cmd or --compare';
  /** A scenario of --kill-replica-at or --join-replica-at, or what is wrong with it. */
  const midpoint = (flag: string, value: string): { key: ScenarioKey } | string => {
    if (count < 2) return `${flag} needs --operator-replicas 2 or more`;
    if (raw.memoryFit) return `${flag} needs the scenarios: not with --memory-fit`;
    if (!(KILLABLE as readonly string[]).includes(value))
      return `${flag} takes one of ${KILLABLE.join(', ')}, not "${value}"`;
    const key = value as ScenarioKey;
    if (raw.scenarios && !raw.scenarios.includes(key))
      return `${flag} ${key}: the run does not make it (${SCENARIOS[key].name}); add it to --scenarios`;
    return { key };
  };
  const options: ReplicaOptions = { count, mode: mode as ReplicaMode };
  if (raw.killAt !== undefined) {
    const kill = midpoint('--kill-replica-at', raw.killAt);
    if (typeof kill === 'string') return kill;
    options.killAt = kill.key;
  }
  if (raw.joinAt !== undefined) {
    if (mode !== 'sharding')
      return '--join-replica-at needs --replica-mode sharding: a replica that joins takes its share of the buckets, a standby takes nothing';
    const join = midpoint('--join-replica-at', raw.joinAt);
    if (typeof join === 'string') return join;
    const { key } = join;
    if (key === options.killAt)
      return (
        `--kill-replica-at and --join-replica-at name the same scenario (${key}): a kill and a ` +
        "join in one burst would blur each other's figures (the takeovers the kill causes, the " +
        "newcomer's share); give them different scenarios"
      );
    options.joinAt = key;
  }
  return options;
}

/** Replica i's (from 0) name: its --instance, its User-Agent's suffix, its Leases' holder. */
export const instanceName = (i: number): string => `bench-replica-${String(i + 1)}`;

/** What a replica adds to our operator's command line; nothing for a single replica. */
export function replicaFlags(options: ReplicaOptions, i: number, namespace: string): string[] {
  if (options.count === 1) return [];
  return [
    options.mode === 'sharding' ? '--sharding=true' : '--leader-elect=true',
    `--leader-elect-namespace=${namespace}`,
    `--leader-elect-lease-name=${LEASE_NAME}`,
    `--instance=${instanceName(i)}`,
  ];
}

/**
 * The kill point: how many of a scenario's `total` writes are sent before the kill; the rest wait
 * for it, so they all reach a cluster where the victim is dead. Half, so that the victim dies with
 * work in flight (Echoes edited, not yet reconciled) and half the burst still to come, which the
 * survivors must take over: each half large enough to time.
 */
export function writesBeforeKill(total: number): number {
  return Math.floor(total / 2);
}

/**
 * The bucket count the replicas run with: what the bench passes them (`--sharding-buckets=B`
 * among their flags), else the operator's default.
 */
export function bucketCountOf(flags: readonly string[]): number {
  const flag = flags.findLast((f) => f.startsWith('--sharding-buckets='));
  const value = flag === undefined ? NaN : Number(flag.slice(flag.indexOf('=') + 1));
  return Number.isInteger(value) && value > 0 ? value : DEFAULT_BUCKET_COUNT;
}

/**
 * The buckets a replica that joins must hold to have its fair share: floor(B / live replicas,
 * itself among them). Shares differ by one bucket, and the operator gives the extra ones to the
 * first identities in order, so the floor is what the newcomer is sure to reach.
 */
export function fairShare(bucketCount: number, liveReplicas: number): number {
  return Math.floor(bucketCount / Math.max(1, liveReplicas));
}

/** The fields of a Lease read here. */
export interface LeaseView {
  metadata: { name: string; labels?: Record<string, string> };
  spec?: { holderIdentity?: string | null };
}

const ROLE_LABEL = 'sharding.example.com/role';
const BUCKET_LABEL = 'sharding.example.com/bucket';
const BUCKET_COUNT_LABEL = 'sharding.example.com/buckets';

/**
 * Whether `instance` holds the Lease: its identity is the instance, or starts with it followed by
 * a separator (`bench-replica-1_<uuid>`; `bench-replica-10` is not bench-replica-1's).
 */
export function heldBy(lease: LeaseView, instance: string): boolean {
  const holder = lease.spec?.holderIdentity ?? '';
  return (
    holder === instance ||
    (holder.startsWith(instance) && /^[^a-z0-9]/i.test(holder.slice(instance.length)))
  );
}

/** The Echoes a replica reconciles: all (it leads), those of its buckets, or none. */
export interface Ownership {
  all: boolean;
  bucketCount?: number;
  buckets: number[];
}

/** What `instance` reconciles by the Leases it holds: the leader's, and bucket Leases. */
export function ownership(leases: LeaseView[], instance: string): Ownership {
  const held = leases.filter((l) => heldBy(l, instance));
  const bucketLeases = held.filter((l) => l.metadata.labels?.[ROLE_LABEL] === 'bucket');
  const counts = bucketLeases.map((l) => Number(l.metadata.labels?.[BUCKET_COUNT_LABEL]));
  return {
    all: held.some((l) => l.metadata.name === LEASE_NAME && !l.metadata.labels?.[ROLE_LABEL]),
    ...(counts[0] === undefined ? {} : { bucketCount: counts[0] }),
    buckets: bucketLeases
      .map((l) => Number(l.metadata.labels?.[BUCKET_LABEL]))
      .sort((a, b) => a - b),
  };
}

/** What a replica reconciled, for a person. */
export function describeOwnership(owned: Ownership): string {
  if (owned.all) return 'every Echo (the leader)';
  if (owned.buckets.length === 0) return 'no Echo';
  return `buckets ${owned.buckets.join(',')} of ${String(owned.bucketCount ?? 0)}`;
}

/** Whether the Echo of this uid is the owner's. */
export function owns(owner: Ownership, uid: string): boolean {
  if (owner.all) return true;
  return (
    owner.bucketCount !== undefined && owner.buckets.includes(bucketOf(uid, owner.bucketCount))
  );
}

/**
 * The replica to kill: the one that reconciles the most (the leader, or the most buckets), the
 * first on a tie, so that the kill always takes work away.
 */
export function victimOf(leases: LeaseView[], instances: string[]): string | undefined {
  const weight = (instance: string): number => {
    const owner = ownership(leases, instance);
    return owner.all ? Infinity : owner.buckets.length;
  };
  let best: string | undefined;
  for (const instance of instances)
    if (best === undefined || weight(instance) > weight(best)) best = instance;
  return best;
}

/** A process's memory and CPU over the run. */
export interface ProcessMemory {
  peakRssBytes: number;
  finalRssBytes: number;
  cpuSeconds: number;
}

/**
 * The replicas together: resident sets and CPU added up. The summed peak is the sum of each
 * replica's own peak: an upper bound of the peak of the total, which needs no common clock.
 */
export function summed(replicas: ProcessMemory[]): ProcessMemory {
  return replicas.reduce(
    (a, r) => ({
      peakRssBytes: a.peakRssBytes + r.peakRssBytes,
      finalRssBytes: a.finalRssBytes + r.finalRssBytes,
      cpuSeconds: a.cpuSeconds + r.cpuSeconds,
    }),
    { peakRssBytes: 0, finalRssBytes: 0, cpuSeconds: 0 },
  );
}
