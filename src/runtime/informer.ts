// An informer: a paginated list, then a watch from the list's resourceVersion, feeding an
// in-memory store that the controller reads instead of the API server. It follows client-go's
// reflector: bookmarks on, a server-side watch timeout, resume from the last resourceVersion
// seen, relist on 410 Gone, reconnect backoff with jitter; plus a client-side inactivity timeout
// so a stream that goes silent is noticed.
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient, WatchEvent } from '../kube/client.ts';
import { ApiError, isGone, type Status } from '../kube/errors.ts';

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
  /** Keeps only what the controller reads; managedFields are dropped before it runs. */
  transform?: (object: T) => T;
  /** Named index functions: each returns the index values of an object. */
  indexers?: Record<string, (object: T) => string[]>;
  pageSize?: number;
  /** Server-side watch timeout, jittered per watch so reconnects of many clients spread out. */
  watchTimeoutSeconds?: number;
  /** Silence after which a watch is presumed dead (bookmarks come about once a minute). */
  idleTimeoutMs?: number;
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

export function objectKey(object: KubeObject): string {
  const { namespace, name } = object.metadata;
  return namespace ? `${namespace}/${name}` : name;
}

interface ObjectList<T> {
  metadata: { resourceVersion?: string; continue?: string };
  items: T[];
}

export class Informer<T extends KubeObject> {
  private readonly options: Required<
    Pick<InformerOptions<T>, 'pageSize' | 'watchTimeoutSeconds' | 'idleTimeoutMs' | 'backoff'>
  > &
    InformerOptions<T>;
  private readonly store = new Map<string, T>();
  /** Objects a write returned, read in place of the store's until the next event for their key. */
  private readonly assumed = new Map<string, T>();
  private readonly indexes = new Map<string, Map<string, Set<string>>>();
  private readonly handlers: ((event: InformerEvent<T>) => void)[] = [];
  private resourceVersion: string | undefined;
  private syncedFlag = false;
  private failing = false;
  private readonly syncWaiters: (() => void)[] = [];

  constructor(options: InformerOptions<T>) {
    this.options = {
      pageSize: 500,
      watchTimeoutSeconds: 290,
      idleTimeoutMs: 150_000,
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
    let needList = true;
    while (!signal.aborted) {
      const started = Date.now();
      try {
        if (needList) {
          await this.listAll(signal);
          needList = false;
        }
        await this.watchOnce(signal);
        // A clean end (the server's timeout) resumes at once from the last resourceVersion.
        retry = 0;
        continue;
      } catch (err) {
        if (aborted(signal)) break;
        if (isGone(err)) {
          // Not a failure: the server answered, and a relist follows at once.
          // Our resourceVersion is older than etcd's compaction: only a fresh list can resync.
          this.options.observer?.relisted?.();
          needList = true;
          continue;
        }
        this.failing = true;
        this.options.observer?.failed?.(err);
        this.options.onError?.(
          `${this.name}: ${needList ? 'list' : 'watch'} failed, retrying`,
          err,
        );
        if (Date.now() - started > backoff.resetAfterMs) retry = 0;
      }
      await sleep(retryDelay(backoff, retry, Math.random()), undefined, { signal }).catch(
        () => undefined,
      );
      retry++;
    }
  }

  private async listAll(signal: AbortSignal): Promise<void> {
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
    this.replace(fresh);
    this.resourceVersion = resourceVersion;
    this.failing = false;
    this.options.observer?.listed?.(fresh.size);
    if (!this.syncedFlag) {
      this.syncedFlag = true;
      for (const resolve of this.syncWaiters.splice(0)) resolve();
    }
  }

  private async watchOnce(signal: AbortSignal): Promise<void> {
    const timeout = Math.round(this.options.watchTimeoutSeconds * (1 + Math.random() / 5));
    const events = this.options.client.watch<T | Status>({
      path: this.options.path,
      query: {
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        timeoutSeconds: timeout,
        labelSelector: this.options.labelSelector,
      },
      signal,
      idleTimeoutMs: this.options.idleTimeoutMs,
      onOpen: () => {
        this.failing = false;
      },
    });
    this.options.observer?.watchStarted?.();
    for await (const event of events) this.apply(event);
  }

  private apply(event: WatchEvent<T | Status>): void {
    if (event.type === 'ERROR') {
      const status = event.object as Status;
      throw new ApiError(status.code ?? 500, status, 'watch', this.options.path);
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

  /** Swaps in a complete list, telling handlers what appeared, changed and vanished meanwhile. */
  private replace(fresh: Map<string, T>): void {
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
    for (const e of events) this.emit(e);
  }

  private prepare(raw: T): T {
    const metadata = { ...raw.metadata } as ObjectMetadata & { managedFields?: unknown };
    delete metadata.managedFields;
    const object = { ...raw, metadata };
    return this.options.transform ? this.options.transform(object) : object;
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
