// An informer's store: the objects by key as the last list and the watch since left them, their
// indexes, and the objects our own writes returned (`assume`), read in place of the cached ones
// until the watch catches up. What `get`, `keys`, `size` and `byIndex` read; the watcher changes
// it, and the informer tells its handlers what changed.
import { objectKey, type KubeObject, type ObjectMetadata } from '../../kube/object.ts';

/**
 * `ownWrite`: the object is the one a write returned and `assume` was told of; a reader that
 * reads through `get` has seen it already, so the event brings nothing new.
 */
export type InformerEvent<T> =
  | { type: 'add'; object: T; ownWrite?: true }
  | { type: 'update'; object: T; old: T; ownWrite?: true }
  | { type: 'delete'; object: T; ownWrite?: undefined };

export interface StoreOptions<T extends KubeObject> {
  /** See InformerOptions.transform. */
  transform?: (object: T, cached: T | undefined) => T;
  /** Named index functions: each returns the index values of an object. */
  indexers?: Record<string, (object: T) => string[]>;
}

/**
 * Whether resourceVersion `a` is later than `b`, both integers as the API server writes them,
 * compared as client-go's resourceversion.CompareResourceVersion does; false when either is not.
 */
function laterVersion(a: string | undefined, b: string | undefined): boolean {
  const integer = /^[1-9][0-9]*$/;
  if (a === undefined || b === undefined || !integer.test(a) || !integer.test(b)) return false;
  return a.length === b.length ? a > b : a.length > b.length;
}

export class Store<T extends KubeObject> {
  private readonly objects = new Map<string, T>();
  /** Objects a write returned, read in place of the store's until the next event for their key. */
  private readonly assumed = new Map<string, T>();
  private readonly indexes = new Map<string, Map<string, Set<string>>>();
  private readonly options: StoreOptions<T>;

  constructor(options: StoreOptions<T>) {
    this.options = options;
    for (const name of Object.keys(options.indexers ?? {})) this.indexes.set(name, new Map());
  }

  get(key: string): T | undefined {
    return this.assumed.get(key) ?? this.objects.get(key);
  }

  /** The object the store holds under `key`, never an assumed one. */
  readonly cached = (key: string): T | undefined => this.objects.get(key);

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
    return [...this.objects.keys()];
  }

  get size(): number {
    return this.objects.size;
  }

  /** Objects whose index function `index` returned `value`. */
  byIndex(index: string, value: string): T[] {
    const keys = this.indexes.get(index)?.get(value);
    if (!keys) return [];
    return [...keys].flatMap((k) => {
      const o = this.objects.get(k);
      return o ? [o] : [];
    });
  }

  /** An object as read from the server, as the store keeps it: no managedFields, transformed. */
  prepare(raw: T): T {
    const metadata = { ...raw.metadata } as ObjectMetadata & { managedFields?: unknown };
    delete metadata.managedFields;
    const object = { ...raw, metadata };
    const { transform } = this.options;
    return transform ? transform(object, this.objects.get(objectKey(object))) : object;
  }

  /** A watch event for a `prepare`d object: the store changes, and says how. */
  apply(type: 'ADDED' | 'MODIFIED' | 'DELETED', prepared: T): InformerEvent<T> {
    const key = objectKey(prepared);
    const old = this.objects.get(key);
    if (type === 'DELETED') {
      const assumed = this.assumed.get(key);
      this.remove(key);
      // The delete of the object a write replaced (deleted and created again) leaves it assumed.
      if (assumed?.metadata.uid && assumed.metadata.uid !== prepared.metadata.uid) {
        this.assumed.set(key, assumed);
      }
      return { type: 'delete', object: old ?? prepared };
    }
    const version = prepared.metadata.resourceVersion;
    const own =
      version !== undefined && this.assumed.get(key)?.metadata.resourceVersion === version;
    this.put(key, prepared);
    const flag = own ? { ownWrite: true as const } : {};
    return old
      ? { type: 'update', object: prepared, old, ...flag }
      : { type: 'add', object: prepared, ...flag };
  }

  /**
   * Swaps in a complete list taken at `resourceVersion`, returning what appeared, changed and
   * vanished meanwhile. Our writes the list has seen are dropped from `assumed`: no event is
   * left to come for them, so one for an object deleted meanwhile would be read forever. A write
   * later than the list stays assumed until the watch from there brings it.
   */
  replace(fresh: Map<string, T>, resourceVersion: string | undefined): InformerEvent<T>[] {
    const later = [...this.assumed].filter(([, o]) =>
      laterVersion(o.metadata.resourceVersion, resourceVersion),
    );
    this.assumed.clear();
    const events: InformerEvent<T>[] = [];
    for (const [key, old] of this.objects) {
      if (!fresh.has(key)) {
        this.remove(key);
        events.push({ type: 'delete', object: old });
      }
    }
    for (const [key, object] of fresh) {
      const old = this.objects.get(key);
      this.put(key, object);
      if (!old) events.push({ type: 'add', object });
      else if (old.metadata.resourceVersion !== object.metadata.resourceVersion) {
        events.push({ type: 'update', object, old });
      }
    }
    for (const [key, object] of later) this.assumed.set(key, object);
    return events;
  }

  private put(key: string, object: T): void {
    this.assumed.delete(key);
    this.unindex(key);
    this.objects.set(key, object);
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
    this.objects.delete(key);
  }

  private unindex(key: string): void {
    const old = this.objects.get(key);
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
}
