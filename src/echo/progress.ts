// When a status that only reports a rollout under way is written. Progress is news of the moment:
// each Echo's is written at most once per delay, and all Echoes' together at a bounded rate, so in
// a burst of rollouts, where the API server is what everything waits on, outcomes go first.
import { TokenBucket } from '../runtime/backoff.ts';

/** A rollout's progress is written at most this often per Echo. */
export const PROGRESS_STATUS_DELAY_MS = 10_000;
/** Progress writes of all Echoes together, per second, past a burst. */
const PROGRESS_WRITES_PER_SECOND = 1;
const PROGRESS_WRITES_BURST = 10;

export class ProgressPacing {
  private readonly delayMs: number;
  private readonly clock: () => number;
  private readonly budget: TokenBucket;
  /** Echoes whose status reports a rollout the cache has moved past: since when, in ms. */
  private readonly heldSince = new Map<string, number>();

  constructor(options: { delayMs?: number; clock?: () => number } = {}) {
    this.delayMs = options.delayMs ?? PROGRESS_STATUS_DELAY_MS;
    this.clock = options.clock ?? (() => performance.now());
    this.budget = new TokenBucket(PROGRESS_WRITES_PER_SECOND, PROGRESS_WRITES_BURST, this.clock);
  }

  /**
   * How much longer the progress of `key` waits, or undefined to write it now: once it has waited
   * the delay and the budget has a token. Without one it comes back once the budget could have
   * served every Echo holding progress, not after the delay alone, which in a burst of thousands
   * of rollouts meant hundreds of reconciles a second that could write nothing. A Deployment event
   * brings it back sooner.
   */
  hold(key: string): number | undefined {
    const now = this.clock();
    const since = this.heldSince.get(key) ?? now;
    const left = since + this.delayMs - now;
    if (left <= 0 && this.budget.take()) return undefined;
    this.heldSince.set(key, left > 0 ? since : now);
    if (left > 0) return left;
    return Math.max(this.delayMs, (this.heldSince.size * 1000) / PROGRESS_WRITES_PER_SECOND);
  }

  /** The status was written, or has nothing to write: `key` holds nothing. */
  forget(key: string): void {
    this.heldSince.delete(key);
  }
}
