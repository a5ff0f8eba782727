// A work queue with client-go's guarantees: a key waiting in the queue is held once however often
// it is added; a key is never handed to two workers at once; a key added while it is being
// processed runs again once it is done. Once shut down it hands out nothing more, as
// controller-runtime's queue: a key re-added while it ran is dropped, not handed out. On top: delayed adds, and client-go's default retry
// limits: per-key exponential backoff, and an overall token bucket so that when everything fails
// at once (an API server outage) retries do not stampede.

import { ExponentialBackoff, TokenBucket } from './backoff.ts';

export interface QueueObserver {
  /** A key entered the queue (not counted when it was already waiting). */
  added?(): void;
  /** A worker took a key that had waited `seconds`. */
  started?(waitSeconds: number): void;
  /** A worker finished a key after `seconds`. */
  finished?(workSeconds: number): void;
  /** A key was put back after a failure. */
  retried?(): void;
}

interface Waiter {
  resolve: (key: string | undefined) => void;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  /** Keys waiting to be processed (in `queue`, or to be re-queued when their worker finishes). */
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly addedAt = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  /** When each delayed add is due, on the monotonic clock: a step of the wall clock reorders none. */
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: Waiter[] = [];
  private readonly backoff: ExponentialBackoff;
  private readonly overall: TokenBucket;
  private readonly observer: QueueObserver;
  private shuttingDown = false;
  private drained: (() => void) | undefined;

  constructor(
    backoff = new ExponentialBackoff(),
    observer: QueueObserver = {},
    overall = new TokenBucket(),
  ) {
    this.backoff = backoff;
    this.observer = observer;
    this.overall = overall;
  }

  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.addedAt.set(key, performance.now());
    this.observer.added?.();
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds `key` after `ms`; an earlier pending delayed add of the same key wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = performance.now() + ms;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    timer.unref();
    this.delayed.set(key, { at, timer });
  }

  /**
   * Adds `key` after its backoff delay, which doubles with each consecutive failure, or later if
   * the retries of all keys together are over 10 per second (past a burst of 100).
   */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.observer.retried?.();
    this.addAfter(key, Math.max(this.backoff.next(key), this.overall.reserve()));
  }

  /** Resets the backoff of `key`: call after it succeeded. */
  forget(key: string): void {
    this.backoff.forget(key);
  }

  retries(key: string): number {
    return this.backoff.retries(key);
  }

  /** The next key to process, or undefined once the queue is shut down. */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.queue.shift();
    if (key !== undefined) return Promise.resolve(this.start(key));
    return new Promise((resolve) => this.waiters.push({ resolve }));
  }

  /** Marks `key` as processed; it runs again if it was added meanwhile, unless shutting down. */
  done(key: string): void {
    const started = this.startedAt.get(key);
    this.startedAt.delete(key);
    this.processing.delete(key);
    if (started !== undefined) this.observer.finished?.((performance.now() - started) / 1000);
    if (this.shuttingDown) {
      if (this.processing.size === 0) this.drained?.();
      return;
    }
    if (this.dirty.has(key)) this.push(key);
  }

  get length(): number {
    return this.queue.length;
  }

  /** Seconds the longest-running key has been processing, and the sum over all running keys. */
  runningSeconds(): { longest: number; total: number } {
    const now = performance.now();
    let longest = 0;
    let total = 0;
    for (const t of this.startedAt.values()) {
      const s = (now - t) / 1000;
      longest = Math.max(longest, s);
      total += s;
    }
    return { longest, total };
  }

  /** Stops handing out work, wakes idle workers and resolves once in-flight keys are done. */
  async shutDown(): Promise<void> {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    this.queue.length = 0;
    for (const w of this.waiters.splice(0)) w.resolve(undefined);
    if (this.processing.size === 0) return;
    await new Promise<void>((resolve) => {
      this.drained = resolve;
    });
  }

  private push(key: string): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter.resolve(this.start(key));
    else this.queue.push(key);
  }

  private start(key: string): string {
    this.dirty.delete(key);
    this.processing.add(key);
    const now = performance.now();
    this.startedAt.set(key, now);
    const added = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (added !== undefined) this.observer.started?.((now - added) / 1000);
    return key;
  }
}
