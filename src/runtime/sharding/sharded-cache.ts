// One resource's cache on a sharded replica: an informer group per bucket held, read as one. The
// Manager adds a bucket's group once it is synced and removes it when the bucket is handed over;
// reads and events then see only the buckets held, and a bucket given up leaves no object behind.
import { objectKey, type KubeObject } from '../../kube/object.ts';
import type { InformerEvent } from '../cache/informer.ts';
import type { InformerGroup } from '../cache/informer-group.ts';

export class ShardedCache<T extends KubeObject> {
  readonly name: string;
  private readonly parts = new Map<number, InformerGroup<T>>();
  private readonly handlers: ((event: InformerEvent<T>) => void)[] = [];
  /** The bucket an object is in, for a write the cache does not hold yet (a created object). */
  private readonly bucketOf: (object: T) => number | undefined;

  constructor(name: string, bucketOf: (object: T) => number | undefined) {
    this.name = name;
    this.bucketOf = bucketOf;
  }

  /** The buckets whose objects are read here. */
  get buckets(): number[] {
    return [...this.parts.keys()];
  }

  /** Reads `group` as bucket `bucket`'s, and tells the handlers of its events from now on. */
  add(bucket: number, group: InformerGroup<T>): void {
    this.parts.set(bucket, group);
    group.onEvent((event) => {
      // A group removed stops running soon after; its last events are not this cache's.
      if (this.parts.get(bucket) !== group) return;
      for (const handler of this.handlers) handler(event);
    });
  }

  /** Stops reading bucket `bucket`'s group; returns it, to be stopped. */
  remove(bucket: number): InformerGroup<T> | undefined {
    const group = this.parts.get(bucket);
    this.parts.delete(bucket);
    return group;
  }

  /** The group of bucket `bucket`, if it is read here. */
  part(bucket: number): InformerGroup<T> | undefined {
    return this.parts.get(bucket);
  }

  get(key: string): T | undefined {
    for (const group of this.parts.values()) {
      const object = group.get(key);
      if (object) return object;
    }
    return undefined;
  }

  assume(written: T, basedOn: string | undefined): void {
    const bucket = this.bucketOf(written);
    const key = objectKey(written);
    const group =
      bucket === undefined
        ? [...this.parts.values()].find((g) => g.get(key))
        : this.parts.get(bucket);
    group?.assume(written, basedOn);
  }

  keys(): string[] {
    return [...this.parts.values()].flatMap((g) => g.keys());
  }

  get size(): number {
    let size = 0;
    for (const group of this.parts.values()) size += group.size;
    return size;
  }

  /** Groups are added synced: what is read here is always complete for the buckets held. */
  readonly synced = true;

  async whenSynced(): Promise<void> {
    await Promise.resolve();
  }

  get connected(): boolean {
    return [...this.parts.values()].every((g) => g.connected);
  }

  silentWatches(): string[] {
    return [...this.parts.values()].flatMap((g) => g.silentWatches());
  }

  onEvent(handler: (event: InformerEvent<T>) => void): void {
    this.handlers.push(handler);
  }
}
