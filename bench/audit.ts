// API calls of one identity, counted from the API server's audit log: the same count for any
// operator, whatever its client library. One audit event per request (the policy omits the
// RequestReceived stage; long-running requests also log ResponseStarted, so count audit ids).
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

interface AuditEvent {
  auditID: string;
  verb: string;
  user: { username: string };
  requestReceivedTimestamp: string;
}

export type VerbCounts = Record<string, number>;

/**
 * Requests of `username` received in each window [from, to) (wall-clock ms), by verb: one pass over
 * the log for all windows.
 */
export async function callsByVerb(
  auditLog: string,
  username: string,
  windows: [number, number][],
): Promise<VerbCounts[]> {
  const seen = new Set<string>();
  const counts: VerbCounts[] = windows.map(() => ({}));
  const needle = `"username":"${username}"`;
  const lines = createInterface({ input: createReadStream(auditLog), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.includes(needle)) continue;
    const event = JSON.parse(line) as AuditEvent;
    if (event.user.username !== username || seen.has(event.auditID)) continue;
    seen.add(event.auditID);
    const at = Date.parse(event.requestReceivedTimestamp);
    const window = windows.findIndex(([from, to]) => at >= from && at < to);
    const bucket = counts[window];
    if (bucket) bucket[event.verb] = (bucket[event.verb] ?? 0) + 1;
  }
  return counts;
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
