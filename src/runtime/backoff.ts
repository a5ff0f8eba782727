// How long to wait before trying again, in one place: the informers' reconnect backoff and the
// operator's startup wait (BackoffPolicy, retryDelay), and the work queue's retry limits after
// client-go's defaults: per-key exponential backoff, and an overall token bucket so that when
// everything fails at once (an API server outage) retries do not stampede.

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** A watch that lived this long resets the backoff: the server is fine again. */
  resetAfterMs: number;
}

/** client-go's reflector backoff: 800 ms doubling to 30 s, reset after 2 minutes of health. */
export const DEFAULT_BACKOFF: BackoffPolicy = {
  initialMs: 800,
  maxMs: 30_000,
  resetAfterMs: 120_000,
};

/**
 * The wait before retry number `retry` (0 for the first) under `policy`: initialMs doubling up to
 * maxMs, stretched by `jitter` (0 to 1, full jitter on top of the delay) so that many clients do
 * not retry in step. Pure: the informers and the operator's startup wait draw `jitter` at random.
 */
export function retryDelay(policy: BackoffPolicy, retry: number, jitter: number): number {
  return Math.min(policy.initialMs * 2 ** retry, policy.maxMs) * (1 + jitter);
}

/** Per-key exponential backoff: base·2^failures, capped (client-go: 5 ms to 1000 s). */
export class ExponentialBackoff {
  private readonly failures = new Map<string, number>();
  private readonly baseMs: number;
  private readonly maxMs: number;

  constructor(baseMs = 5, maxMs = 1000_000) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
  }

  /** The delay before the next attempt of `key`, counting this failure. */
  next(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    return Math.min(this.baseMs * 2 ** n, this.maxMs);
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  forget(key: string): void {
    this.failures.delete(key);
  }
}

/**
 * A token bucket (client-go's BucketRateLimiter: 10 per second, burst 100): `reserve` takes a token
 * and returns how long to wait until it is due; `take` takes one only if there is one now.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly perSecond: number;
  private readonly burst: number;
  private readonly now: () => number;

  constructor(perSecond = 10, burst = 100, now: () => number = () => performance.now()) {
    this.perSecond = perSecond;
    this.burst = burst;
    this.now = now;
    this.tokens = burst;
    this.last = now();
  }

  reserve(): number {
    this.refill();
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.perSecond) * 1000;
  }

  /** Takes a token if one is there now; never owes one. */
  take(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private refill(): void {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
  }
}
