// An informer: a list, then a watch from the list's resourceVersion (watcher.ts), feeding an
// in-memory store (store.ts) that the controller reads instead of the API server, and telling its
// handlers of each change.
import type { KubeObject } from '../../kube/object.ts';
import { Store, type InformerEvent } from './store.ts';
import { Watcher, type WatcherObserver, type WatcherOptions } from './watcher.ts';

export type { InformerEvent } from './store.ts';

export type InformerObserver = WatcherObserver;

export interface InformerOptions<T extends KubeObject> extends WatcherOptions {
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
}

export class Informer<T extends KubeObject> {
  private readonly options: InformerOptions<T>;
  private readonly store: Store<T>;
  private readonly watcher: Watcher<T>;
  private readonly handlers: ((event: InformerEvent<T>) => void)[] = [];
  private syncedFlag = false;
  private readonly syncWaiters: (() => void)[] = [];

  constructor(options: InformerOptions<T>) {
    this.options = options;
    const store = new Store<T>(options);
    this.store = store;
    const { protobuf } = options;
    this.watcher = new Watcher<T>(options, {
      prepare: (raw) => store.prepare(raw),
      decode: protobuf ? (raw) => protobuf(raw, store.cached) : undefined,
      replace: (fresh, resourceVersion) => {
        for (const e of store.replace(fresh, resourceVersion)) this.emit(e);
      },
      synced: () => {
        this.syncedFlag = true;
        for (const resolve of this.syncWaiters.splice(0)) resolve();
      },
      event: (type, object) => {
        this.emit(store.apply(type, object));
      },
    });
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
    return this.watcher.connected;
  }

  /** Names the watch if it has been silent past its limit: `/readyz` fails on it. */
  silentWatch(): string | undefined {
    return this.watcher.silentWatch();
  }

  whenSynced(): Promise<void> {
    if (this.syncedFlag) return Promise.resolve();
    return new Promise((resolve) => this.syncWaiters.push(resolve));
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  /** See Store.assume: reads what a write returned until the watch brings the next event. */
  assume(written: T, basedOn: string | undefined): void {
    this.store.assume(written, basedOn);
  }

  keys(): string[] {
    return this.store.keys();
  }

  get size(): number {
    return this.store.size;
  }

  /** Objects whose index function `index` returned `value`. */
  byIndex(index: string, value: string): T[] {
    return this.store.byIndex(index, value);
  }

  /** Handlers run synchronously after the store changed; one that throws is reported, not fatal. */
  onEvent(handler: (event: InformerEvent<T>) => void): void {
    this.handlers.push(handler);
  }

  /** Lists and watches until `signal` aborts. Never rejects for API errors: it retries them. */
  async run(signal: AbortSignal): Promise<void> {
    await this.watcher.run(signal);
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
