// API calls of one identity, counted from the API server's audit log: the same count for any
// operator, whatever its client library. One audit event per request (the policy omits the
// RequestReceived stage; long-running requests also log ResponseStarted, so count audit ids).
import { readAuditLog } from '../test/support/audit.ts';

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
