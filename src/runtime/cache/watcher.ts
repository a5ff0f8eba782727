// An informer's list and watch, after client-go's reflector: the list streamed as a watch
// (WatchList) where the server offers it, else paginated; bookmarks on, a server-side watch
// timeout, resume from the last resourceVersion seen, relist on 410 Gone, reconnect backoff with
// jitter, a watch that ends at once counted as a failure; plus a watchdog of our own so a stream
// that goes silent is noticed (watchdog.ts). What it reads it hands to a sink: the informer, which
// keeps it in its store.
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient } from '../../kube/client.ts';
import { ApiError, isGone, type Status } from '../../kube/errors.ts';
import { objectKey, type KubeObject, type WatchEvent } from '../../kube/object.ts';
import { ProtobufError } from '../../kube/protobuf/protobuf.ts';
import { DEFAULT_BACKOFF, retryDelay, type BackoffPolicy } from '../backoff.ts';
import {
  seconds,
  ShortWatchError,
  Watchdog,
  watchEndIsFailure,
  WatchSilentError,
  type WatchEnd,
} from './watchdog.ts';

export interface WatcherObserver {
  /** A list completed with this many objects (first sync or relist). */
  listed?(objects: number): void;
  /** A watch (re)opened. */
  watchStarted?(): void;
  /** A list or watch failed; the informer backs off and tries again. */
  failed?(error: unknown): void;
  /** A watch event came (ADDED, MODIFIED, DELETED), before the `keep` filter. */
  received?(type: string): void;
  /** A 410 Gone forced a relist. */
  relisted?(): void;
  /** The server refused a WatchList: this informer lists in pages from now on. */
  watchListRefused?(error: unknown): void;
  /** A watch's protobuf could not be decoded: this informer watches in JSON from now on. */
  protobufRefused?(error: unknown): void;
}

export interface WatcherOptions {
  /** For logs and metrics: `echoes`, `deployments`. */
  name: string;
  /** Only list and watch are used: a test can script them. */
  client: Pick<KubeClient, 'request' | 'watch'>;
  /** The collection path, e.g. `/apis/apps/v1/deployments` or a namespaced one. */
  path: string;
  labelSelector?: string;
  /** KEP-5866's sharded list and watch: only the objects whose hash is in its ranges. */
  shardSelector?: string;
  /**
   * The objects to hold, of those the server sends: with `shardSelector`, what a server that
   * ignores it (the feature gate off, an older release) sends more is dropped here.
   */
  keep?: (object: KubeObject) => boolean;
  pageSize?: number;
  /** Server-side watch timeout, jittered per watch so reconnects of many clients spread out. */
  watchTimeoutSeconds?: number;
  /**
   * Silence after which our watchdog aborts a watch and reopens it from the last resourceVersion.
   * Bookmarks come about once a minute; the default, 150 s, lets two go missing. A silence counts
   * as a failure only once the server has sent a bookmark (see watchEndIsFailure), and `/readyz`
   * fails while a watch is silent past it.
   */
  idleTimeoutMs?: number;
  /**
   * Lists by streaming (WatchList: a watch with sendInitialEvents) where the server offers it;
   * a server that refuses it once is listed in pages from then on. On by default.
   */
  watchList?: boolean;
  backoff?: BackoffPolicy;
  observer?: WatcherObserver;
  /** Failures are reported here, never thrown: an informer keeps trying until stopped. */
  onError?: (message: string, error: unknown) => void;
}

/** Where a watcher puts what it reads. */
export interface WatchSink<T> {
  /** An object as read, made into what the store keeps. */
  prepare(raw: T): T;
  /** Decodes a protobuf object of the watch; absent: the watch is JSON. */
  decode: ((object: Buffer) => T) | undefined;
  /** A complete list taken at `resourceVersion`, to swap in whole. */
  replace(fresh: Map<string, T>, resourceVersion: string | undefined): void;
  /** The first complete list is in. */
  synced(): void;
  /** A change the watch brought, its object prepared. */
  event(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: T): void;
}

/** Read through a call: TypeScript would otherwise keep `aborted` narrowed across awaits. */
const aborted = (signal: AbortSignal): boolean => signal.aborted;

/** Waits `ms`, or until `signal` aborts. */
const pause = (ms: number, signal: AbortSignal): Promise<void> =>
  sleep(ms, undefined, { signal }).catch(() => undefined);

/** The annotation of the bookmark that ends a WatchList's initial events. */
const INITIAL_EVENTS_END = 'k8s.io/initial-events-end';

/**
 * The server does not serve WatchList: too old to know sendInitialEvents (it then forbids
 * resourceVersionMatch on a watch), or the feature turned off. Both answer 400 or 422.
 */
function refusesWatchList(err: unknown): boolean {
  return err instanceof ApiError && (err.code === 400 || err.code === 422);
}

interface ObjectList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export class Watcher<T extends KubeObject> {
  private readonly options: Required<
    Pick<
      WatcherOptions,
      'pageSize' | 'watchTimeoutSeconds' | 'idleTimeoutMs' | 'watchList' | 'backoff'
    >
  > &
    WatcherOptions;
  private readonly sink: WatchSink<T>;
  private resourceVersion: string | undefined;
  private synced = false;
  private needList = true;
  private failing = false;
  /** The server answered a WatchList with 400 or 422: it is listed in pages from then on. */
  private watchListRefused = false;
  /** A watch in protobuf could not be decoded: the watches are JSON from then on. */
  private protobufRefused = false;
  /** The server has sent a bookmark: it sends them, so a silent watch is a stuck one. */
  private bookmarksSeen = false;
  /** The objects of a WatchList's initial events, until the bookmark that ends them. */
  private initial: Map<string, T> | undefined;
  /** The current watch's (or the last one's, until the next opens): how long it has been silent. */
  private watchdog: Watchdog | undefined;

  constructor(options: WatcherOptions, sink: WatchSink<T>) {
    this.options = {
      pageSize: 500,
      watchTimeoutSeconds: 290,
      idleTimeoutMs: 150_000,
      watchList: true,
      backoff: DEFAULT_BACKOFF,
      ...options,
    };
    this.sink = sink;
  }

  get name(): string {
    return this.options.name;
  }

  /** False from a failed list or watch until a list succeeds or a watch is open again. */
  get connected(): boolean {
    return !this.failing;
  }

  /** Names the watch if it has been silent past its limit: `/readyz` fails on it. */
  silentWatch(): string | undefined {
    const silentMs = this.watchdog?.silentMs() ?? 0;
    if (silentMs <= this.options.idleTimeoutMs) return undefined;
    return `${this.name} watch silent for ${seconds(silentMs)} (${this.options.path})`;
  }

  /** Lists and watches until `signal` aborts. Never rejects for API errors: it retries them. */
  async run(signal: AbortSignal): Promise<void> {
    const { backoff } = this.options;
    let retry = 0;
    /** When the last 410 Gone came (ms since the epoch). */
    let lastGone = -Infinity;
    while (!signal.aborted) {
      const started = Date.now();
      let failure: unknown;
      try {
        const end = await this.listAndWatch(signal);
        if (aborted(signal)) break;
        failure = this.failureOf(end);
        // A normal end (the server's timeout) resumes at once from the last resourceVersion.
        if (failure === undefined) {
          retry = 0;
          continue;
        }
      } catch (err) {
        if (aborted(signal)) break;
        if (isGone(err)) {
          // Not a failure: the server answered; our resourceVersion is older than etcd's
          // compaction, and only a fresh list can resync. A 410 relists at once, unless the last
          // one came less than resetAfterMs ago (the backoff's measure of health): then the
          // relists themselves keep meeting 410s (a lagging cache, an outlived continue token),
          // and each waits as a failure would, so a server answering 410 every time is not
          // listed back to back.
          this.options.observer?.relisted?.();
          this.needList = true;
          const again = Date.now() - lastGone < backoff.resetAfterMs;
          lastGone = Date.now();
          if (again) await pause(retryDelay(backoff, retry++, Math.random()), signal);
          continue;
        }
        failure = err;
      }
      this.failing = true;
      this.options.observer?.failed?.(failure);
      this.options.onError?.(
        failure instanceof WatchSilentError || failure instanceof ShortWatchError
          ? failure.message
          : `${this.name}: ${this.needList ? 'list' : 'watch'} failed, retrying`,
        failure,
      );
      if (Date.now() - started > backoff.resetAfterMs) retry = 0;
      await pause(retryDelay(backoff, retry, Math.random()), signal);
      retry++;
    }
  }

  /** The failure a watch's end amounts to, or undefined for its normal end. */
  private failureOf(end: WatchEnd): Error | undefined {
    if (end.kind === 'silent') {
      return watchEndIsFailure(end) ? new WatchSilentError(this.name, end.silentMs) : undefined;
    }
    if (watchEndIsFailure(end)) return new ShortWatchError(this.name, end.livedMs);
    if (this.needList) {
      return new Error(`${this.name}: watch list ended before its initial events were complete`);
    }
    return undefined;
  }

  /** Lists first if needed (streamed where the server allows it), then watches until it ends. */
  private async listAndWatch(signal: AbortSignal): Promise<WatchEnd> {
    if (this.needList && this.options.watchList && !this.watchListRefused) {
      try {
        return await this.watchOnce(signal, true);
      } catch (err) {
        if (!refusesWatchList(err)) throw err;
        // An older server, or one with the feature off: what client-go falls back to as well.
        this.watchListRefused = true;
        this.options.observer?.watchListRefused?.(err);
      }
    }
    if (this.needList) await this.listPages(signal);
    return this.watchOnce(signal, false);
  }

  private async listPages(signal: AbortSignal): Promise<void> {
    this.watchdog?.stop();
    this.watchdog = undefined;
    const fresh = new Map<string, T>();
    let continueToken: string | undefined;
    let resourceVersion: string | undefined;
    do {
      const page = await this.options.client.request<ObjectList<T>>({
        path: this.options.path,
        query: {
          limit: this.options.pageSize,
          labelSelector: this.options.labelSelector,
          shardSelector: this.options.shardSelector,
          continue: continueToken,
        },
        signal,
      });
      for (const item of page.items) {
        if (!this.kept(item)) continue;
        const object = this.sink.prepare(item);
        fresh.set(objectKey(object), object);
      }
      continueToken = page.metadata.continue === '' ? undefined : page.metadata.continue;
      resourceVersion = page.metadata.resourceVersion;
    } while (continueToken);
    this.finishSync(fresh, resourceVersion);
  }

  /** A complete list is in: it replaces the store, and the watch resumes from `resourceVersion`. */
  private finishSync(fresh: Map<string, T>, resourceVersion: string | undefined): void {
    this.sink.replace(fresh, resourceVersion);
    this.resourceVersion = resourceVersion;
    this.failing = false;
    this.needList = false;
    this.options.observer?.listed?.(fresh.size);
    if (!this.synced) {
      this.synced = true;
      this.sink.synced();
    }
  }

  /**
   * One watch, until it ends: the server closed it, or our watchdog aborted it (both returned),
   * or it failed (thrown). `initial`: a WatchList, its initial events first.
   */
  private async watchOnce(signal: AbortSignal, initial: boolean): Promise<WatchEnd> {
    const silenced = new AbortController();
    this.watchdog?.stop();
    const watchdog = new Watchdog(this.options.idleTimeoutMs, () => {
      silenced.abort(new WatchSilentError(this.name, watchdog.silentMs()));
    });
    this.watchdog = watchdog;
    this.initial = initial ? new Map() : undefined;
    const opened = performance.now();
    const decode = this.protobufRefused ? undefined : this.sink.decode;
    let events = 0;
    try {
      const stream = this.options.client.watch<T | Status>({
        path: this.options.path,
        query: this.watchQuery(initial),
        signal: AbortSignal.any([signal, silenced.signal]),
        onOpen: () => {
          this.failing = false;
        },
        onData: () => {
          watchdog.heard();
        },
        ...(decode ? { protobuf: decode } : {}),
      });
      this.options.observer?.watchStarted?.();
      for await (const event of stream) {
        events++;
        this.apply(event);
      }
    } catch (err) {
      if (err instanceof ProtobufError) {
        // Bytes this decoder cannot read would fail every watch again: JSON is always served.
        this.protobufRefused = true;
        this.options.observer?.protobufRefused?.(err);
      }
      if (!silenced.signal.aborted || aborted(signal)) throw err;
      return { kind: 'silent', silentMs: watchdog.silentMs(), bookmarksSeen: this.bookmarksSeen };
    } finally {
      watchdog.stop();
    }
    return { kind: 'closed', livedMs: performance.now() - opened, events };
  }

  private watchQuery(initial: boolean): Record<string, string | number | boolean | undefined> {
    const common = {
      allowWatchBookmarks: true,
      // Jittered per watch so that the reconnects of many clients spread out.
      timeoutSeconds: Math.round(this.options.watchTimeoutSeconds * (1 + Math.random() / 5)),
      labelSelector: this.options.labelSelector,
      shardSelector: this.options.shardSelector,
    };
    // A WatchList: the current state as ADDED events (a consistent read, as a list without a
    // resourceVersion), then a bookmark marking their end, then changes, on one stream.
    if (initial)
      return { ...common, sendInitialEvents: true, resourceVersionMatch: 'NotOlderThan' };
    return { ...common, resourceVersion: this.resourceVersion };
  }

  private apply(event: WatchEvent<T | Status>): void {
    if (event.type === 'ERROR') {
      const status = event.object as Status;
      throw new ApiError(status.code ?? 500, status, 'watch', this.options.path);
    }
    if (event.type === 'BOOKMARK') this.bookmarksSeen = true;
    else this.options.observer?.received?.(event.type);
    if (this.initial) {
      this.collectInitial(this.initial, event);
      return;
    }
    const object = event.object as T;
    if (object.metadata.resourceVersion) this.resourceVersion = object.metadata.resourceVersion;
    if (event.type === 'BOOKMARK' || !this.kept(object)) return;
    this.sink.event(event.type, this.sink.prepare(object));
  }

  private kept(object: KubeObject): boolean {
    return this.options.keep?.(object) ?? true;
  }

  /** An event of a WatchList before its end: gathered, then swapped in whole as a list is. */
  private collectInitial(fresh: Map<string, T>, event: WatchEvent<T | Status>): void {
    const object = event.object as T;
    if (event.type === 'BOOKMARK') {
      if (object.metadata.annotations?.[INITIAL_EVENTS_END] !== 'true') return;
      this.initial = undefined;
      this.finishSync(fresh, object.metadata.resourceVersion);
      return;
    }
    if (!this.kept(object)) return;
    const prepared = this.sink.prepare(object);
    if (event.type === 'DELETED') fresh.delete(objectKey(prepared));
    else fresh.set(objectKey(prepared), prepared);
  }
}
