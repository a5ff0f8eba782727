// A work queue with client-go's guarantees: a key waiting in the queue is held once however often
// it is added; a key is never handed to two workers at once; a key added while it is being
// processed runs again once it is done. Once shut down it hands out nothing more, as
// controller-runtime's queue: a key re-added while it ran is dropped, not handed out. On top: delayed adds, and client-go's default retry
// limits: per-key exponential backoff, and an overall token bucket so that when everything fails
// at once (an API server outage) retries do not stampede.
//
// Priorities, as controller-runtime's priority queue (v0.23's default): a key comes in at low
// priority (a replay of the cache: the start, a resync, a takeover) or normal (an event: something
// changed), and normal keys go first, so a change made while thousands of unchanged objects are
// replayed waits for none of them. A key waiting at low priority that gets a normal add is raised
// to normal (never lowered). Unlike controller-runtime's, low keys cannot starve (its #3496): once
// the oldest low key has waited `agingMs`, low keys take turns with normal ones, one for one, until
// no low key has waited that long. Two FIFO lanes and a map: every operation is amortised O(1),
// with no timer per key.

import { ExponentialBackoff, TokenBucket } from './backoff.ts';

/** controller-runtime's values (`handler.LowPriority`), which the metrics' `priority` label carries. */
export const Priority = { low: -100, normal: 0 } as const;
export type Priority = (typeof Priority)[keyof typeof Priority];

/**
 * How long the oldest low-priority key waits before low keys take turns with normal ones: longer
 * than a replay of 10 000 unchanged objects takes, so that edits made during a start or a failover
 * go before all of it; short beside the 10 min resync, so a key replayed at low priority under
 * constant traffic is looked at within about half a minute of its turn, not never.
 */
export const DEFAULT_AGING_MS = 30_000;

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

export interface WorkQueueOptions {
  /** See DEFAULT_AGING_MS. */
  agingMs?: number;
  /** The monotonic clock, in ms (tests pass a fake one). */
  now?: () => number;
}

/** A key handed to a worker, with the priority it waited at (a requeue keeps it). */
export interface QueueItem {
  key: string;
  priority: Priority;
}

/** A key waiting: in a lane (`slot` > 0), or for its worker to finish (`slot` 0). */
interface Waiting {
  priority: Priority;
  /** When it was first added, for the queue-duration histogram. */
  addedAt: number;
  /** Its place in its lane; a slot whose number is not its key's is stale, and skipped. */
  slot: number;
}

/**
 * A FIFO of keys in parallel arrays (no object per key), each with its slot number and the time
 * it entered the lane. Stale slots (a key raised to the other lane) are skipped when they reach
 * the head. The consumed head is cut off once it is most of the arrays: amortised O(1).
 */
class Lane {
  /** Keys in the lane that are not stale: the depth. */
  count = 0;
  private keys: string[] = [];
  private slots: number[] = [];
  private times: number[] = [];
  private head = 0;

  push(key: string, slot: number, at: number): void {
    this.keys.push(key);
    this.slots.push(slot);
    this.times.push(at);
    this.count++;
  }

  /** Drops stale slots off the head; the head's key and time, if any. */
  peek(live: (key: string, slot: number) => boolean): { key: string; at: number } | undefined {
    while (this.head < this.keys.length) {
      const [key = '', slot = 0, at = 0] = [
        this.keys[this.head],
        this.slots[this.head],
        this.times[this.head],
      ];
      if (live(key, slot)) return { key, at };
      this.drop();
    }
    return undefined;
  }

  /** Removes the head, which `peek` found live. */
  shift(): void {
    this.drop();
    this.count--;
  }

  clear(): void {
    this.empty();
    this.count = 0;
  }

  private empty(): void {
    this.keys = [];
    this.slots = [];
    this.times = [];
    this.head = 0;
  }

  private drop(): void {
    this.head++;
    if (this.head === this.keys.length) {
      this.empty();
    } else if (this.head >= 1024 && this.head * 2 >= this.keys.length) {
      this.keys = this.keys.slice(this.head);
      this.slots = this.slots.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }
}

export class WorkQueue {
  private readonly normal = new Lane();
  private readonly low = new Lane();
  /** Keys waiting to be processed (in a lane, or to be re-queued when their worker finishes). */
  private readonly waiting = new Map<string, Waiting>();
  /** Keys being processed: since when, and at which priority. */
  private readonly processing = new Map<string, { startedAt: number; priority: Priority }>();
  private slots = 0;
  /** The last key handed out was an aged low one taken before a waiting normal one. */
  private tookAged = false;
  /** When each delayed add is due, on the monotonic clock: a step of the wall clock reorders none. */
  private readonly delayed = new Map<
    string,
    { at: number; priority: Priority; timer: NodeJS.Timeout | undefined }
  >();
  private readonly waiters: ((item: QueueItem | undefined) => void)[] = [];
  private readonly backoff: ExponentialBackoff;
  private readonly overall: TokenBucket;
  private readonly observer: QueueObserver;
  private readonly agingMs: number;
  private readonly now: () => number;
  private shuttingDown = false;
  private drained: (() => void) | undefined;

  constructor(
    backoff = new ExponentialBackoff(),
    observer: QueueObserver = {},
    overall = new TokenBucket(),
    options: WorkQueueOptions = {},
  ) {
    this.backoff = backoff;
    this.observer = observer;
    this.overall = overall;
    this.agingMs = options.agingMs ?? DEFAULT_AGING_MS;
    this.now = options.now ?? (() => performance.now());
  }

  /** Queues `key`; one waiting already is raised to `priority` if that is higher. */
  add(key: string, priority: Priority = Priority.normal): void {
    if (this.shuttingDown) return;
    const now = this.now();
    const known = this.waiting.get(key);
    if (known) {
      if (priority <= known.priority) return;
      if (known.slot !== 0) {
        this.lane(known.priority).count--;
        known.slot = ++this.slots;
        this.lane(priority).push(key, known.slot, now);
      }
      known.priority = priority;
      return;
    }
    const entry: Waiting = { priority, addedAt: now, slot: 0 };
    this.waiting.set(key, entry);
    this.observer.added?.();
    if (this.processing.has(key)) return;
    this.push(key, entry, now);
  }

  /** Adds `key` after `ms`; an earlier pending delayed add of the same key wins. */
  addAfter(key: string, ms: number, priority: Priority = Priority.normal): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key, priority);
      return;
    }
    const at = this.now() + ms;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) {
      pending.priority = Math.max(pending.priority, priority) as Priority;
      return;
    }
    if (pending) clearTimeout(pending.timer);
    const due = {
      at,
      priority: pending ? (Math.max(pending.priority, priority) as Priority) : priority,
      timer: undefined as NodeJS.Timeout | undefined,
    };
    due.timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key, due.priority);
    }, ms);
    due.timer.unref();
    this.delayed.set(key, due);
  }

  /**
   * Adds `key` after its backoff delay, which doubles with each consecutive failure, or later if
   * the retries of all keys together are over 10 per second (past a burst of 100).
   */
  addRateLimited(key: string, priority: Priority = Priority.normal): void {
    if (this.shuttingDown) return;
    this.observer.retried?.();
    this.addAfter(key, Math.max(this.backoff.next(key), this.overall.reserve()), priority);
  }

  /** Resets the backoff of `key`: call after it succeeded. */
  forget(key: string): void {
    this.backoff.forget(key);
  }

  retries(key: string): number {
    return this.backoff.retries(key);
  }

  /** The next key to process, or undefined once the queue is shut down. */
  async get(): Promise<string | undefined> {
    return (await this.getWithPriority())?.key;
  }

  /** The next key to process and the priority it waited at, or undefined once shut down. */
  getWithPriority(): Promise<QueueItem | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const item = this.take();
    if (item) return Promise.resolve(item);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks `key` as processed; it runs again if it was added meanwhile, unless shutting down. */
  done(key: string): void {
    const running = this.processing.get(key);
    this.processing.delete(key);
    const now = this.now();
    if (running) this.observer.finished?.((now - running.startedAt) / 1000);
    if (this.shuttingDown) {
      if (this.processing.size === 0) this.drained?.();
      return;
    }
    const again = this.waiting.get(key);
    if (again) this.push(key, again, now);
  }

  /** Keys waiting in the queue (not those waiting for their worker to finish). */
  get length(): number {
    return this.normal.count + this.low.count;
  }

  /** Keys waiting at `priority`. */
  depth(priority: Priority): number {
    return this.lane(priority).count;
  }

  /** Seconds the key longest in the lane of `priority` has waited there; 0 if none waits. */
  longestWaitSeconds(priority: Priority): number {
    const head = this.lane(priority).peek(this.live);
    return head ? (this.now() - head.at) / 1000 : 0;
  }

  /** Seconds the longest-running key has been processing, and the sum over all running keys. */
  runningSeconds(): { longest: number; total: number } {
    const now = this.now();
    let longest = 0;
    let total = 0;
    for (const { startedAt } of this.processing.values()) {
      const s = (now - startedAt) / 1000;
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
    this.normal.clear();
    this.low.clear();
    this.waiting.clear();
    for (const resolve of this.waiters.splice(0)) resolve(undefined);
    if (this.processing.size === 0) return;
    await new Promise<void>((resolve) => {
      this.drained = resolve;
    });
  }

  private lane(priority: Priority): Lane {
    return priority === Priority.low ? this.low : this.normal;
  }

  private readonly live = (key: string, slot: number): boolean =>
    this.waiting.get(key)?.slot === slot;

  /** Hands `key` to a waiting worker, or puts it at the end of its lane. */
  private push(key: string, entry: Waiting, now: number): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter(this.start(key, entry, now));
      return;
    }
    entry.slot = ++this.slots;
    this.lane(entry.priority).push(key, entry.slot, now);
  }

  /**
   * The next key: normal before low, except that once the oldest low key has waited `agingMs`,
   * low keys take every other turn while normal ones wait too.
   */
  private take(): QueueItem | undefined {
    const normal = this.normal.peek(this.live);
    const low = this.low.peek(this.live);
    const now = this.now();
    let lane: Lane;
    let head: { key: string };
    if (low && (!normal || (!this.tookAged && now - low.at >= this.agingMs))) {
      lane = this.low;
      head = low;
      this.tookAged = normal !== undefined;
    } else if (normal) {
      lane = this.normal;
      head = normal;
      this.tookAged = false;
    } else {
      return undefined;
    }
    lane.shift();
    const entry = this.waiting.get(head.key);
    // Always there: `peek` hands out only keys that wait in the slot it found.
    return entry && this.start(head.key, entry, now);
  }

  private start(key: string, entry: Waiting, now: number): QueueItem {
    this.waiting.delete(key);
    this.processing.set(key, { startedAt: now, priority: entry.priority });
    this.observer.started?.((now - entry.addedAt) / 1000);
    return { key, priority: entry.priority };
  }
}
