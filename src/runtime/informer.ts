// An informer: a list, then a watch from the list's resourceVersion, feeding an in-memory store
// that the controller reads instead of the API server. It follows client-go's reflector: the list
// streamed as a watch (WatchList) where the server offers it, else paginated; bookmarks on, a
// server-side watch timeout, resume from the last resourceVersion seen, relist on 410 Gone,
// reconnect backoff with jitter, a watch that ends at once counted as a failure; plus a watchdog
// of our own so a stream that goes silent is noticed (watchdog.ts).
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient, WatchEvent } from '../kube/client.ts';
import { ApiError, isGone, type Status } from '../kube/errors.ts';
import { ProtobufError } from '../kube/protobuf.ts';
import {
  seconds,
  ShortWatchError,
  Watchdog,
  watchEndIsFailure,
  WatchSilentError,
  type WatchEnd,
} from './watchdog.ts';

export interface ObjectMetadata {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: {
    apiVersion: string;
    kind: string;
    name: string;
    uid: string;
    controller?: boolean;
  }[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
}

export interface KubeObject {
  metadata: ObjectMetadata;
}

/**
 * `ownWrite`: the object is the one a write returned and `assume` was told of; a reader that
 * reads through `get` has seen it already, so the event brings nothing new.
 */
export type InformerEvent<T> =
  | { type: 'add'; object: T; ownWrite?: true }
  | { type: 'update'; object: T; old: T; ownWrite?: true }
  | { type: 'delete'; object: T; ownWrite?: undefined };

export interface InformerObserver {
  /** A list completed with this many objects (first sync or relist). */
  listed?(objects: number): void;
  /** A watch (re)opened. */
  watchStarted?(): void;
  /** A list or watch failed; the informer backs off and tries again. */
  failed?(error: unknown): void;
  /** A 410 Gone forced a relist. */
  relisted?(): void;
  /** The server refused a WatchList: this informer lists in pages from now on. */
  watchListRefused?(error: unknown): void;
  /** A watch's protobuf could not be decoded: this informer watches in JSON from now on. */
  protobufRefused?(error: unknown): void;
}

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** A watch that lived this long resets the backoff: the server is fine again. */
  resetAfterMs: number;
}

export interface InformerOptions<T extends KubeObject> {
  /** For logs and metrics: `echoes`, `deployments`. */
  name: string;
  /** Only list and watch are used: a test can script them. */
  client: Pick<KubeClient, 'request' | 'watch'>;
  /** The collection path, e.g. `/apis/apps/v1/deployments` or a namespaced one. */
  path: string;
  labelSelector?: string;
  /**
   * Keeps only what the controller reads; managedFields are dropped before it runs. `cached` is
   * the object the cache holds under the same key, whose parts the transform may reuse where the
   * new object did not change them.
   */
  transform?: (object: T, cached: T | undefined) => T;
  /**
   * Watches in protobuf (built-in types only) and decodes each object with this: what the
   * transform reads, and nothing else. `cached` looks up the object the cache holds under a key,
   * so a decoder can skip what the transform would take from it unchanged. Lists stay JSON.
   */
  protobuf?: (object: Buffer, cached: (key: string) => T | undefined) => T;
  /** Named index functions: each returns the index values of an object. */
  indexers?: Record<string, (object: T) => string[]>;
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
  observer?: InformerObserver;
  /** Failures are reported here, never thrown: an informer keeps trying until stopped. */
  onError?: (message: string, error: unknown) => void;
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

/** Read through a call: TypeScript would otherwise keep `aborted` narrowed across awaits. */
const aborted = (signal: AbortSignal): boolean => signal.aborted;

/** Waits `ms`, or until `signal` aborts. */
const pause = (ms: number, signal: AbortSignal): Promise<void> =>
  sleep(ms, undefined, { signal }).catch(() => undefined);

/**
 * Whether resourceVersion `a` is later than `b`, both integers as the API server writes them,
 * compared as client-go's resourceversion.CompareResourceVersion does; false when either is not.
 */
function laterVersion(a: string | undefined, b: string | undefined): boolean {
  const integer = /^[1-9][0-9]*$/;
  if (a === undefined || b === undefined || !integer.test(a) || !integer.test(b)) return false;
  return a.length === b.length ? a > b : a.length > b.length;
}

export function objectKey(object: KubeObject): string {
  const { namespace, name } = object.metadata;
  return namespace ? `${namespace}/${name}` : name;
}

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

export class Informer<T extends KubeObject> {
  private readonly options: Required<
    Pick<
      InformerOptions<T>,
      'pageSize' | 'watchTimeoutSeconds' | 'idleTimeoutMs' | 'watchList' | 'backoff'
    >
  > &
    InformerOptions<T>;
  private readonly store = new Map<string, T>();
  /** Objects a write returned, read in place of the store's until the next event for their key. */
  private readonly assumed = new Map<string, T>();
  private readonly indexes = new Map<string, Map<string, Set<string>>>();
  private readonly handlers: ((event: InformerEvent<T>) => void)[] = [];
  private resourceVersion: string | undefined;
  private syncedFlag = false;
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
  private readonly syncWaiters: (() => void)[] = [];

  constructor(options: InformerOptions<T>) {
    this.options = {
      pageSize: 500,
      watchTimeoutSeconds: 290,
      idleTimeoutMs: 150_000,
      watchList: true,
      backoff: DEFAULT_BACKOFF,
      ...options,
    };
    for (const name of Object.keys(options.indexers ?? {})) this.indexes.set(name, new Map());
  }

  get name(): string {
    return this.options.name;
  }

  /** True once the first complete list is in the store. */
  get synced(): boolean {
    return this.syncedFlag;
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

  whenSynced(): Promise<void> {
    if (this.syncedFlag) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  get(key: string): T | undefined {
    return this.assumed.get(key) ?? this.store.get(key);
  }

  /**
   * Reads `written`, what a write just returned, in place of the cached object until the watch
   * brings the next event for it (client-go's mutation cache, for one key at a time). A reconcile
   * that runs in between then sees its own write, not the state before, and neither writes again
   * nor skips a write it needs. `basedOn` is the resourceVersion the write was computed from
   * (undefined: absent); if the cache has moved since, the watch was faster and this is a no-op.
   */
  assume(written: T, basedOn: string | undefined): void {
    const key = objectKey(written);
    if (this.get(key)?.metadata.resourceVersion !== basedOn) return;
    this.assumed.set(key, this.prepare(written));
  }

  keys(): string[] {
    return [...this.store.keys()];
  }

  get size(): number {
    return this.store.size;
  }

  /** Objects whose index function `index` returned `value`. */
  byIndex(index: string, value: string): T[] {
    const keys = this.indexes.get(index)?.get(value);
    if (!keys) return [];
    return [...keys].flatMap((k) => {
      const o = this.store.get(k);
      return o ? [o] : [];
    });
  }

  /** Handlers run synchronously after the store changed; one that throws is reported, not fatal. */
  onEvent(handler: (event: InformerEvent<T>) => void): void {
    this.handlers.push(handler);
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
          continue: continueToken,
        },
        signal,
      });
      for (const item of page.items) {
        const object = this.prepare(item);
        fresh.set(objectKey(object), object);
      }
      continueToken = page.metadata.continue === '' ? undefined : page.metadata.continue;
      resourceVersion = page.metadata.resourceVersion;
    } while (continueToken);
    this.finishSync(fresh, resourceVersion);
  }

  /** A complete list is in: it replaces the store, and the watch resumes from `resourceVersion`. */
  private finishSync(fresh: Map<string, T>, resourceVersion: string | undefined): void {
    this.replace(fresh, resourceVersion);
    this.resourceVersion = resourceVersion;
    this.failing = false;
    this.needList = false;
    this.options.observer?.listed?.(fresh.size);
    if (!this.syncedFlag) {
      this.syncedFlag = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
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
    const decode = this.protobufRefused ? undefined : this.options.protobuf;
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
        ...(decode ? { protobuf: (raw: Buffer) => decode(raw, this.cached) } : {}),
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
    if (this.initial) {
      this.collectInitial(this.initial, event);
      return;
    }
    const object = event.object as T;
    if (object.metadata.resourceVersion) this.resourceVersion = object.metadata.resourceVersion;
    if (event.type === 'BOOKMARK') return;
    const prepared = this.prepare(object);
    const key = objectKey(prepared);
    const old = this.store.get(key);
    if (event.type === 'DELETED') {
      const assumed = this.assumed.get(key);
      this.remove(key);
      // The delete of the object a write replaced (deleted and created again) leaves it assumed.
      if (assumed?.metadata.uid && assumed.metadata.uid !== prepared.metadata.uid) {
        this.assumed.set(key, assumed);
      }
      this.emit({ type: 'delete', object: old ?? prepared });
      return;
    }
    const version = prepared.metadata.resourceVersion;
    const own =
      version !== undefined && this.assumed.get(key)?.metadata.resourceVersion === version;
    this.put(key, prepared);
    const flag = own ? { ownWrite: true as const } : {};
    this.emit(
      old
        ? { type: 'update', object: prepared, old, ...flag }
        : { type: 'add', object: prepared, ...flag },
    );
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
    const prepared = this.prepare(object);
    if (event.type === 'DELETED') fresh.delete(objectKey(prepared));
    else fresh.set(objectKey(prepared), prepared);
  }

  /**
   * Swaps in a complete list taken at `resourceVersion`, telling handlers what appeared, changed
   * and vanished meanwhile. Our writes the list has seen are dropped from `assumed`: no event is
   * left to come for them, so one for an object deleted meanwhile would be read forever. A write
   * later than the list stays assumed until the watch from there brings it.
   */
  private replace(fresh: Map<string, T>, resourceVersion: string | undefined): void {
    const later = [...this.assumed].filter(([, o]) =>
      laterVersion(o.metadata.resourceVersion, resourceVersion),
    );
    this.assumed.clear();
    const events: InformerEvent<T>[] = [];
    for (const [key, old] of this.store) {
      if (!fresh.has(key)) {
        this.remove(key);
        events.push({ type: 'delete', object: old });
      }
    }
    for (const [key, object] of fresh) {
      const old = this.store.get(key);
      this.put(key, object);
      if (!old) events.push({ type: 'add', object });
      else if (old.metadata.resourceVersion !== object.metadata.resourceVersion) {
        events.push({ type: 'update', object, old });
      }
    }
    for (const [key, object] of later) this.assumed.set(key, object);
    for (const e of events) this.emit(e);
  }

  private readonly cached = (key: string): T | undefined => this.store.get(key);

  private prepare(raw: T): T {
    const metadata = { ...raw.metadata } as ObjectMetadata & { managedFields?: unknown };
    delete metadata.managedFields;
    const object = { ...raw, metadata };
    const { transform } = this.options;
    return transform ? transform(object, this.store.get(objectKey(object))) : object;
  }

  private put(key: string, object: T): void {
    this.assumed.delete(key);
    this.unindex(key);
    this.store.set(key, object);
    for (const [name, fn] of Object.entries(this.options.indexers ?? {})) {
      const index = this.indexes.get(name);
      if (!index) continue;
      for (const value of fn(object)) {
        let keys = index.get(value);
        if (!keys) index.set(value, (keys = new Set()));
        keys.add(key);
      }
    }
  }

  private remove(key: string): void {
    this.assumed.delete(key);
    this.unindex(key);
    this.store.delete(key);
  }

  private unindex(key: string): void {
    const old = this.store.get(key);
    if (!old) return;
    for (const [name, fn] of Object.entries(this.options.indexers ?? {})) {
      const index = this.indexes.get(name);
      for (const value of fn(old)) {
        const keys = index?.get(value);
        keys?.delete(key);
        if (keys?.size === 0) index?.delete(value);
      }
    }
  }

  private emit(event: InformerEvent<T>): void {
    for (const handler of this.handlers) {
      try {
        handler(event);
      } catch (err) {
        this.options.onError?.(`${this.name}: event handler failed`, err);
      }
    }
  }
}

/**
 * Informers of one resource over several namespaces, read as one store: the operator watches
 * either the whole cluster (one informer) or a list of namespaces (one each, for RBAC scoped by
 * namespace).
 */
export class InformerGroup<T extends KubeObject> {
  private readonly byNamespace: Map<string | undefined, Informer<T>>;

  /** `namespaces` empty means one cluster-wide informer; `pathFor` builds the collection path. */
  constructor(
    namespaces: string[],
    pathFor: (namespace: string | undefined) => string,
    options: Omit<InformerOptions<T>, 'path'>,
  ) {
    const scopes = namespaces.length > 0 ? namespaces : [undefined];
    this.byNamespace = new Map(
      scopes.map((ns) => [ns, new Informer<T>({ ...options, path: pathFor(ns) })]),
    );
  }

  get informers(): Informer<T>[] {
    return [...this.byNamespace.values()];
  }

  get(key: string): T | undefined {
    return this.informerOf(key)?.get(key);
  }

  assume(written: T, basedOn: string | undefined): void {
    this.informerOf(objectKey(written))?.assume(written, basedOn);
  }

  private informerOf(key: string): Informer<T> | undefined {
    const slash = key.indexOf('/');
    const namespace = slash >= 0 ? key.slice(0, slash) : undefined;
    return this.byNamespace.get(namespace) ?? this.byNamespace.get(undefined);
  }

  keys(): string[] {
    return this.informers.flatMap((i) => i.keys());
  }

  get size(): number {
    return this.informers.reduce((n, i) => n + i.size, 0);
  }

  get synced(): boolean {
    return this.informers.every((i) => i.synced);
  }

  get connected(): boolean {
    return this.informers.every((i) => i.connected);
  }

  /** Each watch silent past its limit, named. */
  silentWatches(): string[] {
    return this.informers.flatMap((i) => i.silentWatch() ?? []);
  }

  async whenSynced(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.whenSynced()));
  }

  onEvent(handler: (event: InformerEvent<T>) => void): void {
    for (const i of this.informers) i.onEvent(handler);
  }

  async run(signal: AbortSignal): Promise<void> {
    await Promise.all(this.informers.map((i) => i.run(signal)));
  }
}
