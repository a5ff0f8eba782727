// How the informer judges the end of a watch, after client-go's reflector plus a watchdog of our
// own: a stream that stays silent past a limit is aborted and reopened, whatever undici's timers
// do (they have missed silent HTTP/2 streams), and a watch that ends at once, empty, is a
// failure to back off from rather than a reason to reopen at once.

/** client-go's bar: a watch shorter than this that brought no event was not really open. */
export const SHORT_WATCH_MS = 1000;

/** How a watch ended without an error from the server or the connection. */
export type WatchEnd =
  /** The server closed it (its timeoutSeconds, or a proxy's doing). */
  | { kind: 'closed'; livedMs: number; events: number }
  /** Our watchdog aborted it: no byte for `silentMs`. */
  | { kind: 'silent'; silentMs: number; bookmarksSeen: boolean };

/**
 * Whether `end` counts as a failure, to back off from, or is the normal life of a watch, which
 * resumes at once. A watch closed within SHORT_WATCH_MS with no event (bookmarks are events)
 * never was open: a server or proxy doing that would otherwise be asked again in a tight loop.
 * A silent watch is a failure only where the server has shown it sends bookmarks (about once a
 * minute, so silence past the limit means a stuck stream); a server that sends none leaves a
 * healthy, quiet watch silent until its own timeout, and reaching our limit then is normal.
 */
export function watchEndIsFailure(end: WatchEnd): boolean {
  if (end.kind === 'closed') return end.livedMs < SHORT_WATCH_MS && end.events === 0;
  return end.bookmarksSeen;
}

/** A watch that ended at once with no event: see watchEndIsFailure. */
export class ShortWatchError extends Error {
  constructor(informer: string, livedMs: number) {
    super(`${informer}: watch ended after ${String(Math.round(livedMs))} ms with no event`);
    this.name = 'ShortWatchError';
  }
}

/** A watch our watchdog aborted: nothing arrived on it for `silentMs`. */
export class WatchSilentError extends Error {
  readonly silentMs: number;
  constructor(informer: string, silentMs: number) {
    super(`${informer}: watch silent for ${seconds(silentMs)}: reopening`);
    this.name = 'WatchSilentError';
    this.silentMs = silentMs;
  }
}

export const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/**
 * Calls `onSilent` once when `heard` has not been called for `limitMs`. One timer per watch,
 * pushed back on each chunk (refresh() reuses it: no allocation per chunk).
 */
export class Watchdog {
  private heardAt = performance.now();
  private readonly timer: NodeJS.Timeout;

  constructor(limitMs: number, onSilent: (silentMs: number) => void) {
    this.timer = setTimeout(() => {
      onSilent(this.silentMs());
    }, limitMs);
  }

  heard(): void {
    this.heardAt = performance.now();
    this.timer.refresh();
  }

  silentMs(): number {
    return performance.now() - this.heardAt;
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}
