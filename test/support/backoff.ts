// What the operator's retry limits allow over a stretch of time, computed from the limiters in
// src/ themselves: for tests that bound a count of retries by the window it was measured over, so
// that a slower machine (a longer window) moves the bound with the count.
import { DEFAULT_BACKOFF, retryDelay } from '../../src/runtime/backoff.ts';
import { ExponentialBackoff, TokenBucket } from '../../src/runtime/backoff.ts';

/**
 * The most attempts a retry loop can make within `ms` when it waits at least `wait(retry)` before
 * retry number `retry` (0 for the first retry). `wait` is called once per retry, in order.
 */
export function attemptsWithin(ms: number, wait: (retry: number) => number): number {
  let attempts = 1;
  let waited = 0;
  for (let retry = 0; ; retry++) {
    const next = wait(retry);
    if (next <= 0) throw new Error(`a wait of ${String(next)} ms bounds nothing`);
    if (waited + next > ms) return attempts;
    waited += next;
    attempts++;
  }
}

/** Lists or watches one informer can attempt within `ms`: its backoff at its shortest (no jitter). */
export function informerAttemptsWithin(ms: number): number {
  return attemptsWithin(ms, (retry) => retryDelay(DEFAULT_BACKOFF, retry, 0));
}

/** Reconciles of one key, failing each time, that the work queue's per-key backoff lets start within `ms`. */
export function keyAttemptsWithin(ms: number): number {
  const backoff = new ExponentialBackoff();
  return attemptsWithin(ms, () => backoff.next('key'));
}

/**
 * Reconciles of `keys` keys, failing each time, that the work queue lets start within `ms`: each
 * key's first at once, then the retries its per-key backoff allows, and no more in all than the
 * overall token bucket lets through.
 */
export function queueAttemptsWithin(ms: number, keys: number): number {
  const bucket = new TokenBucket(undefined, undefined, () => 0);
  let overall = 0;
  while (bucket.reserve() <= ms) overall++;
  return keys + Math.min(keys * (keyAttemptsWithin(ms) - 1), overall);
}
