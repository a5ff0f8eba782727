// When the client tries a request again, after how long, and when it stops: pure rules, apart
// from the I/O in client.ts, so they are tested without a server.
//
// client-go's rules (rest.Request and its WithRetry): a 429, or any 5xx carrying Retry-After, is
// tried again after the server's Retry-After whatever the verb, since the server asks for it; a
// connection reset or a lost HTTP/2 connection on a GET is tried again, and a write is not, since
// the server may have applied it. Two additions: a Retry-After given as an HTTP date (RFC 9110
// allows both forms) is honoured, and a 503 without Retry-After on a GET (a load balancer or
// proxy in front of the API server says so) is retried too; both of the GET-only retries wait an
// exponential backoff with jitter, rather than client-go's fixed second, so that many clients cut
// off together do not come back together.
//
// One deadline bounds all the attempts of a request together, as client-go's request context
// does: past it no wait or attempt begins, and the caller gets the last error; the controller's
// own per-key backoff then takes the item, and the worker is free for other keys.

export interface RetryPolicy {
  /** Attempts in all, the first included (client-go makes up to 10 retries). */
  maxAttempts: number;
  /** Upper bound on one Retry-After wait, so a confused server cannot park a request for long. */
  maxRetryAfterMs: number;
  /** The first backoff wait, doubled on each retry up to `backoffCapMs`, plus up to half again. */
  backoffBaseMs: number;
  backoffCapMs: number;
  /** Time from the first attempt after which no wait or attempt begins. */
  deadlineMs: number;
}

/** How one attempt ended: an answer (its code and Retry-After header) or an error before one. */
export type AttemptOutcome =
  | { method: string; code: number; retryAfter: string | undefined }
  | { method: string; error: unknown };

/** A 429 without Retry-After (not sent by the API server, maybe by a proxy) waits a second. */
const DEFAULT_THROTTLE_WAIT_MS = 1000;
/** A backoff wait is its nominal length plus up to this fraction of it, drawn at random. */
const JITTER = 0.5;

/**
 * Error codes of a connection lost under a request: reset by the peer, closed by it (a proxy that
 * went away), or written to after it closed. An HTTP/2 GOAWAY is named in the message instead.
 * Not a timeout (the peer may still be working on it) nor a pool we closed ourselves.
 */
const CONNECTION_LOST = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET']);

/**
 * The wait in ms before the attempt after `attempt` (1 for the first), or undefined for none.
 * `nowMs` is the wall clock (an HTTP-date Retry-After is one), `random` a draw in [0, 1).
 */
export function retryDelayMs(
  outcome: AttemptOutcome,
  attempt: number,
  policy: RetryPolicy,
  nowMs: number,
  random: number,
): number | undefined {
  if (attempt >= policy.maxAttempts) return undefined;
  const read = outcome.method === 'GET';
  if ('error' in outcome) {
    return read && isConnectionLost(outcome.error) ? backoffMs(attempt, policy, random) : undefined;
  }
  const { code } = outcome;
  const asked = retryAfterMs(outcome.retryAfter, nowMs);
  if (code === 429) return Math.min(asked ?? DEFAULT_THROTTLE_WAIT_MS, policy.maxRetryAfterMs);
  if (code >= 500 && code <= 599 && asked !== undefined) {
    return Math.min(asked, policy.maxRetryAfterMs);
  }
  if (code === 503 && read) return backoffMs(attempt, policy, random);
  return undefined;
}

/** The backoff wait after the `attempt`th attempt failed: base × 2^(attempt−1), capped, + jitter. */
export function backoffMs(attempt: number, policy: RetryPolicy, random: number): number {
  const nominal = Math.min(policy.backoffCapMs, policy.backoffBaseMs * 2 ** (attempt - 1));
  return nominal * (1 + JITTER * random);
}

/**
 * A Retry-After header in ms from `nowMs`: delay-seconds or an HTTP date (a date already past is
 * 0); undefined when absent or neither form.
 */
export function retryAfterMs(value: string | undefined, nowMs: number): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date names its weekday and GMT; Date.parse takes other forms too, which are not one.
  if (!/^[A-Za-z]{3},? .*GMT$/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** Whether an attempt that would start `delayMs` from now starts before the deadline. */
export function startsBeforeDeadline(
  delayMs: number,
  startedAtMs: number,
  nowMs: number,
  policy: Pick<RetryPolicy, 'deadlineMs'>,
): boolean {
  return nowMs + delayMs < startedAtMs + policy.deadlineMs;
}

/**
 * How long an attempt starting now may wait for its response headers: the per-attempt timeout,
 * or what is left of the request's deadline when that is shorter.
 */
export function headersTimeoutMs(
  requestTimeoutMs: number,
  startedAtMs: number,
  nowMs: number,
  policy: Pick<RetryPolicy, 'deadlineMs'>,
): number {
  return Math.max(1, Math.min(requestTimeoutMs, startedAtMs + policy.deadlineMs - nowMs));
}

/** Whether `err` (or an error it wraps) says the connection under the request was lost. */
export function isConnectionLost(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 5; depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== undefined && CONNECTION_LOST.has(code)) return true;
    if (e.message.includes('GOAWAY')) return true;
    e = e.cause;
  }
  return false;
}
