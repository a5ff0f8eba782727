// API calls of one identity, counted from the API server's audit log: the same count for any
// operator, whatever its client library. One audit event per request (the policy omits the
// RequestReceived stage; long-running requests also log ResponseStarted, so count audit ids).
import { readAuditLog, type AuditEvent } from '../test/support/audit.ts';

export type VerbCounts = Record<string, number>;

/** Calls the API server refused with one code, e.g. "patch echoes/status" answered 422. */
export interface Rejected {
  call: string;
  code: number;
  count: number;
  /** The first refusal's message: what an operator that never converges keeps being told. */
  message: string;
}

export interface WindowCalls {
  byVerb: VerbCounts;
  /** Refused calls (code 400 and up), most frequent first. */
  rejected: Rejected[];
}

/**
 * Requests of `username` received in each window [from, to) (wall-clock ms), by verb, and those
 * refused: one pass over the log for all windows.
 */
export async function callsOf(
  auditLog: string,
  username: string,
  windows: [number, number][],
): Promise<WindowCalls[]> {
  const seen = new Set<string>();
  const refused = new Set<string>();
  const calls: { byVerb: VerbCounts; rejected: Map<string, Rejected> }[] = windows.map(() => ({
    byVerb: {},
    rejected: new Map(),
  }));
  const needle = `"username":"${username}"`;
  for await (const event of readAuditLog(auditLog, needle)) {
    if (event.user.username !== username) continue;
    const at = Date.parse(event.requestReceivedTimestamp);
    const bucket = calls[windows.findIndex(([from, to]) => at >= from && at < to)];
    if (!bucket) continue;
    if (!seen.has(event.auditID)) {
      seen.add(event.auditID);
      bucket.byVerb[event.verb] = (bucket.byVerb[event.verb] ?? 0) + 1;
    }
    const code = event.responseStatus?.code ?? 0;
    if (code < 400 || refused.has(event.auditID)) continue;
    refused.add(event.auditID);
    const { resource = '', subresource } = event.objectRef ?? {};
    const call = `${event.verb} ${resource}${subresource ? `/${subresource}` : ''}`;
    const key = `${call} ${String(code)}`;
    const known = bucket.rejected.get(key);
    if (known) known.count++;
    else
      bucket.rejected.set(key, {
        call,
        code,
        count: 1,
        message: event.responseStatus?.message ?? '',
      });
  }
  return calls.map(({ byVerb, rejected }) => ({
    byVerb,
    rejected: [...rejected.values()].sort((a, b) => b.count - a.count),
  }));
}

export function total(counts: VerbCounts): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** Writes: everything but get, list and watch. */
export function writes(counts: VerbCounts): number {
  return Object.entries(counts)
    .filter(([verb]) => !['get', 'list', 'watch'].includes(verb))
    .reduce((a, [, n]) => a + n, 0);
}

/** The replica that sent a request: the ` instance/<name>` at the end of its User-Agent. */
export function instanceOf(userAgent: string | undefined): string | undefined {
  return / instance\/(\S+)$/.exec(userAgent ?? '')?.[1];
}

/** One write of an Echo, its status or its Deployment, by one replica. */
export interface ReplicaWrite {
  /** `namespace/name` of the Echo (a Deployment has its Echo's name). */
  object: string;
  instance: string;
  /** Wall-clock ms the API server received it. */
  at: number;
  /** e.g. `patch echoes/status`. */
  call: string;
}

/** Two replicas writing one Echo within a lease duration of each other. */
export interface Overlap {
  first: ReplicaWrite;
  second: ReplicaWrite;
}

export interface OverlapCount {
  /** Echoes written by two replicas within a lease duration of each other: the target is 0. */
  objects: number;
  /** Consecutive writes of one Echo by two replicas that close: a handover each. */
  pairs: number;
  /** Writes of the user's counted, from a replica the User-Agent names. */
  writes: number;
  /** Writes of the user's with no ` instance/` User-Agent: not attributable, not counted. */
  unattributed: number;
  /** The first few overlaps, to look up in the log. */
  examples: Overlap[];
  /**
   * Pairs that close which a handover explains, not counted: between the two writes the second
   * replica wrote the Echo's bucket Lease (took it) and the first wrote it no more (it had
   * released it, or was dead).
   */
  handovers: number;
}

export interface OverlapScope {
  username: string;
  /** The Echoes' namespaces. */
  namespaces: readonly string[];
  /** Writes of two replicas closer than this overlap: the lease duration. */
  windowMs: number;
  /** Wall-clock ms [from, to) of the requests counted. */
  from: number;
  to: number;
  /** The bucket of an Echo (`namespace/name`), to tell a handover from an overlap. */
  bucketOf?: (object: string) => number | undefined;
}

/** A bucket Lease's name: `<group>-bucket-<i>-of-<B>`. */
const BUCKET_LEASE = /-bucket-(\d+)-of-\d+$/;

/** A write of a bucket Lease by a replica: an acquisition, a renewal or a release. */
function bucketLeaseWrite(event: AuditEvent): { bucket: number; at: number } | undefined {
  const { resource, name } = event.objectRef ?? {};
  const bucket = resource === 'leases' && name ? BUCKET_LEASE.exec(name)?.[1] : undefined;
  if (bucket === undefined || (event.verb !== 'create' && event.verb !== 'update'))
    return undefined;
  if ((event.responseStatus?.code ?? 0) >= 300) return undefined;
  return { bucket: Number(bucket), at: Date.parse(event.requestReceivedTimestamp) };
}

const WRITE_VERBS = new Set(['create', 'update', 'patch', 'apply', 'delete']);

/** An Echo's writes: the Echo itself, its status, or its Deployment (same namespace and name). */
function echoWrite(
  event: AuditEvent,
  scope: OverlapScope,
): Omit<ReplicaWrite, 'instance'> | undefined {
  const { apiGroup, namespace, resource, subresource, name } = event.objectRef ?? {};
  if (!WRITE_VERBS.has(event.verb) || !name || !namespace || !scope.namespaces.includes(namespace))
    return undefined;
  const ofEcho =
    (apiGroup === 'example.com' &&
      resource === 'echoes' &&
      (!subresource || subresource === 'status')) ||
    (apiGroup === 'apps' && resource === 'deployments' && !subresource);
  if (!ofEcho) return undefined;
  return {
    object: `${namespace}/${name}`,
    at: Date.parse(event.requestReceivedTimestamp),
    call: `${event.verb} ${resource}${subresource ? `/${subresource}` : ''}`,
  };
}

/**
 * Overlaps in parsed audit events: per Echo, its writes in time order, and each two consecutive
 * ones by different replicas closer than the window. Consecutive pairs suffice: if any two writes
 * of different replicas are that close, so are two consecutive ones between them. Refused writes
 * count too: a replica that tries to write an Echo it does not hold is the fault counted.
 */
export function countOverlaps(events: Iterable<AuditEvent>, scope: OverlapScope): OverlapCount {
  const seen = new Set<string>();
  const byObject = new Map<string, ReplicaWrite[]>();
  /** Each bucket Lease's successful writes, by replica. */
  const leaseWrites = new Map<number, { instance: string; at: number }[]>();
  let unattributed = 0;
  let writes = 0;
  for (const event of events) {
    if (event.user.username !== scope.username || seen.has(event.auditID)) continue;
    seen.add(event.auditID);
    const lease = bucketLeaseWrite(event);
    const leaseInstance = instanceOf(event.userAgent);
    if (lease && leaseInstance !== undefined) {
      const list = leaseWrites.get(lease.bucket) ?? [];
      list.push({ instance: leaseInstance, at: lease.at });
      leaseWrites.set(lease.bucket, list);
      continue;
    }
    const write = echoWrite(event, scope);
    if (!write || write.at < scope.from || write.at >= scope.to) continue;
    const instance = instanceOf(event.userAgent);
    if (instance === undefined) {
      unattributed++;
      continue;
    }
    writes++;
    const list = byObject.get(write.object) ?? [];
    list.push({ ...write, instance });
    byObject.set(write.object, list);
  }
  const handedOver = (object: string, first: ReplicaWrite, second: ReplicaWrite): boolean => {
    const bucket = scope.bucketOf?.(object);
    const lease = bucket === undefined ? undefined : leaseWrites.get(bucket);
    if (!lease) return false;
    // The second replica's last write of the Lease before its Echo write, after the first's...
    const taken = lease.findLast(
      (w) => w.instance === second.instance && w.at > first.at && w.at <= second.at,
    );
    // ...and none by the first replica from then on.
    return (
      taken !== undefined &&
      !lease.some((w) => w.instance === first.instance && w.at > taken.at && w.at <= second.at)
    );
  };
  const overlaps: Overlap[] = [];
  let objects = 0;
  let handovers = 0;
  for (const [object, list] of byObject) {
    list.sort((a, b) => a.at - b.at);
    const before = overlaps.length;
    for (let i = 1; i < list.length; i++) {
      const [first, second] = [list[i - 1], list[i]] as [ReplicaWrite, ReplicaWrite];
      if (first.instance === second.instance || second.at - first.at >= scope.windowMs) continue;
      if (handedOver(object, first, second)) handovers++;
      else overlaps.push({ first, second });
    }
    if (overlaps.length > before) objects++;
  }
  overlaps.sort((a, b) => a.second.at - b.second.at);
  return {
    objects,
    pairs: overlaps.length,
    writes,
    unattributed,
    examples: overlaps.slice(0, 5),
    handovers,
  };
}

/** countOverlaps over the audit log at `path`, streamed. */
export async function overlapsIn(path: string, scope: OverlapScope): Promise<OverlapCount> {
  const events: AuditEvent[] = [];
  for await (const event of readAuditLog(path, `"username":"${scope.username}"`))
    if (echoWrite(event, scope) || bucketLeaseWrite(event)) events.push(event);
  return countOverlaps(events, scope);
}
