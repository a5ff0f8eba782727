// Memory and CPU of the operator under test, read from /proc: resident set size sampled four times
// a second (for the chart and the peak) and the kernel's own high-water mark, and CPU seconds.
import { readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100;

export interface RssSample {
  /** Milliseconds since the sampler started (or the origin it was given). */
  atMs: number;
  rssBytes: number;
}

export class ProcessStats {
  readonly samples: RssSample[] = [];
  private readonly started: number;
  private readonly timer: NodeJS.Timeout;
  private pid: number;
  /** CPU seconds of the operator's earlier processes (before a restart). */
  private cpuBefore = 0;
  /** The last CPU seconds read: what a process that is gone (killed) used. */
  private cpuLast = 0;

  /** `startedAt`: the origin of the samples' times (now; a later process: the run's first). */
  constructor(pid: number, startedAt = performance.now()) {
    this.pid = pid;
    this.started = startedAt;
    this.timer = setInterval(() => {
      this.sample();
    }, 250);
    this.timer.unref();
    this.sample();
  }

  private sample(): void {
    const rss = this.status('VmRSS');
    if (rss !== undefined)
      this.samples.push({ atMs: performance.now() - this.started, rssBytes: rss });
  }

  /** A field of /proc/<pid>/status in bytes (the kernel reports kB). */
  private status(field: 'VmRSS' | 'VmHWM'): number | undefined {
    try {
      const text = readFileSync(`/proc/${String(this.pid)}/status`, 'utf8');
      const kb = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1];
      return kb === undefined ? undefined : Number(kb) * 1024;
    } catch {
      return undefined;
    }
  }

  rssNow(): number {
    return this.status('VmRSS') ?? 0;
  }

  peakRss(): number {
    return Math.max(this.status('VmHWM') ?? 0, ...this.samples.map((s) => s.rssBytes));
  }

  /** User plus system CPU seconds used so far. */
  cpuSeconds(): number {
    try {
      const stat = readFileSync(`/proc/${String(this.pid)}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime and stime are fields 14 and 15 of stat; 12 and 13 after the command name.
      this.cpuLast = this.cpuBefore + (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
    } catch {
      // Gone: what it used until its last reading.
    }
    return this.cpuLast;
  }

  /**
   * Follows the operator's next process after a restart: its CPU adds to `cpuSoFar` (read before
   * the last one stopped), its samples go on in the same series.
   */
  follow(pid: number, cpuSoFar: number): void {
    this.pid = pid;
    this.cpuBefore = cpuSoFar;
    this.cpuLast = cpuSoFar;
  }

  elapsedMs(): number {
    return performance.now() - this.started;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
