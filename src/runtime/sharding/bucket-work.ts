// What a bucket is on a sharded replica: for each sharded controller, an informer group per
// resource it caches by bucket, started when the bucket is taken and stopped when it is given up.
// The controllers' work queues and workers are shared by the buckets: a key is its object's, and
// the object is in one bucket. A bucket joins the caches only once all its groups are synced, then
// its objects are replayed at low priority; it leaves them before its in-flight reconciles are
// waited for, so no new one starts, and its Lease is released only after they have returned.
import type { KubeObject } from '../../kube/object.ts';
import type { InformerGroup } from '../cache/informer-group.ts';
import type { ShardedCache } from './sharded-cache.ts';

/** A sharded controller, as the bucket work sees it. */
export interface BucketController {
  /** Primary first: its objects are the keys a bucket replays and waits for. */
  caches: {
    cache: ShardedCache<KubeObject>;
    /** A new group of the resource narrowed to `bucket`, not yet running. */
    groupFor(bucket: number): InformerGroup<KubeObject>;
  }[];
  replay(keys: Iterable<string>): void;
  idle(keys: ReadonlySet<string>): Promise<void>;
}

interface Running {
  stop: AbortController;
  groups: InformerGroup<KubeObject>[][];
  runs: Promise<unknown>;
}

export class BucketWork {
  private readonly controllers: readonly BucketController[];
  private readonly running = new Map<number, Running>();
  /** Buckets running whose objects are in the caches. */
  private readonly joined = new Set<number>();
  private readonly onError: (bucket: number, err: unknown) => void;

  constructor(
    controllers: readonly BucketController[],
    onError: (bucket: number, err: unknown) => void,
  ) {
    this.controllers = controllers;
    this.onError = onError;
  }

  /** Buckets started and not yet in the caches: what a replica's readiness waits for. */
  get filling(): number[] {
    return [...this.running.keys()].filter((b) => !this.joined.has(b)).sort((a, b) => a - b);
  }

  /** The primary objects of each bucket in the caches, for the metrics. */
  objects(): Map<number, number> {
    const sizes = new Map<number, number>();
    for (const bucket of this.joined) {
      let size = 0;
      for (const c of this.controllers) size += c.caches[0]?.cache.part(bucket)?.size ?? 0;
      sizes.set(bucket, size);
    }
    return sizes;
  }

  /** Starts the bucket's informers; it joins the caches once they are all synced. */
  start(bucket: number): void {
    if (this.running.has(bucket)) return;
    const stop = new AbortController();
    const groups = this.controllers.map((c) => c.caches.map((p) => p.groupFor(bucket)));
    const all = groups.flat();
    const runs = Promise.all(all.map((g) => g.run(stop.signal))).catch((err: unknown) => {
      this.onError(bucket, err);
    });
    const stopped = new Promise<void>((resolve) => {
      stop.signal.addEventListener(
        'abort',
        () => {
          resolve();
        },
        { once: true },
      );
    });
    const synced = Promise.all(all.map((g) => g.whenSynced()));
    void Promise.race([synced, stopped]).then(() => {
      // Stopped meanwhile: a handover aborts only once drained, but it took the bucket off first.
      if (stop.signal.aborted || this.running.get(bucket)?.stop !== stop) return;
      this.controllers.forEach((c, i) => {
        c.caches.forEach((p, j) => {
          const group = groups[i]?.[j];
          if (group) p.cache.add(bucket, group);
        });
      });
      this.joined.add(bucket);
      for (const [i, c] of this.controllers.entries()) c.replay(groups[i]?.[0]?.keys() ?? []);
    });
    this.running.set(bucket, { stop, groups, runs });
  }

  /**
   * Takes the bucket out of the caches and stops its informers; with `drain`, after its
   * reconciles under way have returned (a bucket handed over), else at once (a bucket lost).
   * Its keys are replayed: not found any more, the reconciler forgets them.
   */
  async stop(bucket: number, drain: boolean): Promise<void> {
    const running = this.running.get(bucket);
    if (!running) return;
    this.running.delete(bucket);
    this.joined.delete(bucket);
    const keys = this.controllers.map((c, i) => {
      for (const p of c.caches) p.cache.remove(bucket);
      return new Set(running.groups[i]?.[0]?.keys() ?? []);
    });
    if (drain) await Promise.all(this.controllers.map((c, i) => c.idle(keys[i] ?? new Set())));
    running.stop.abort();
    await running.runs;
    for (const [i, c] of this.controllers.entries()) c.replay(keys[i] ?? []);
  }

  /** Stops every bucket at once: the process is ending without handing over (tests, tools). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.running.keys()].map((b) => this.stop(b, false)));
  }
}
