// Every scenario has a time limit (--scenario-timeout): an operator that never converges (one that
// requeues failures after minutes, or a command that does nothing) is reported with what it
// reached, and the run goes on to the next scenario instead of waiting forever. The operator's exit
// ends every wait at once, and the run with it. No wait is silent: each one says what it waits
// for and how far it got, every second while that moves and every 10 s while it does not.
import type { Reached, Tracker, Waiting } from './tracker.ts';

/** What a scenario was still waiting for when its time ran out. */
export interface Shortfall {
  waitingFor: string;
  reached: number;
  of: number;
  /** Seconds since the scenario began. */
  afterSeconds: number;
}

/** How often a wait that makes no progress says it is still waiting. */
const STILL_WAITING_MS = 10_000;

export class ScenarioClock {
  private started = performance.now();
  private deadline = Infinity;
  private missed: Shortfall | undefined;
  private readonly timeoutMs: number;
  private readonly abort: AbortSignal;
  private readonly progress: (message: string) => void;

  /** `abort` fires when the run cannot go on (the operator exited); its reason is thrown. */
  constructor(timeoutSeconds: number, abort: AbortSignal, progress: (message: string) => void) {
    this.timeoutMs = timeoutSeconds * 1000;
    this.abort = abort;
    this.progress = progress;
  }

  /** Starts the next scenario's time limit. */
  begin(): void {
    this.started = performance.now();
    this.deadline = this.started + this.timeoutMs;
    this.missed = undefined;
  }

  /** The first goal of the current scenario that was not reached in time. */
  get shortfall(): Shortfall | undefined {
    return this.missed;
  }

  /** performance.now() at which the current scenario's time runs out. */
  get deadlineAt(): number {
    return this.deadline;
  }

  /** Waits for a goal until the scenario's deadline; resolves with what was reached by then. */
  async wait(waitingFor: string, waiting: Waiting): Promise<Reached> {
    this.abort.throwIfAborted();
    const timer = setTimeout(waiting.stop, Math.max(0, this.deadline - performance.now()));
    const onAbort = (): void => {
      waiting.stop();
    };
    this.abort.addEventListener('abort', onAbort, { once: true });
    const since = performance.now();
    let told = { count: -1, at: 0 };
    const report = setInterval(() => {
      const count = waiting.count();
      const now = performance.now();
      if (count === told.count && now - told.at < STILL_WAITING_MS) return;
      const waited =
        count === told.count ? ` (still, after ${((now - since) / 1000).toFixed(0)} s)` : '';
      this.progress(`  ${waitingFor}: ${String(count)}/${String(waiting.of)}${waited}`);
      told = { count, at: now };
    }, 1000);
    try {
      const reached = await waiting.reached;
      this.abort.throwIfAborted();
      if (reached.size < waiting.of) this.miss(waitingFor, reached.size, waiting.of);
      return reached;
    } finally {
      clearInterval(report);
      clearTimeout(timer);
      this.abort.removeEventListener('abort', onAbort);
    }
  }

  /** Waits until nothing changed for `ms`, at most until the deadline. */
  async quiet(tracker: Tracker, ms: number): Promise<void> {
    this.abort.throwIfAborted();
    if (!(await tracker.quiet(ms, this.deadline)))
      this.miss(`no change for ${String(ms / 1000)} s`, 0, 1);
    this.abort.throwIfAborted();
  }

  /** Records a goal not reached; the first one is what the scenario reports. */
  miss(waitingFor: string, reached: number, of: number): void {
    this.missed ??= {
      waitingFor,
      reached,
      of,
      afterSeconds: (performance.now() - this.started) / 1000,
    };
  }
}

/** Seconds from `from` until the last key got there, if every one of `of` keys did. */
export function lastOf(reached: Reached, of: number, from: number): number | undefined {
  return reached.size === of && of > 0 ? (Math.max(...reached.values()) - from) / 1000 : undefined;
}
