// An InformerGroup for unit tests of what reads and runs groups (ShardedCache, BucketWork): a store
// set by hand, events emitted by hand, a sync that happens when the test says, and a run that
// lasts until aborted and records when it was.
import { objectKey, type KubeObject } from '../../src/kube/object.ts';
import type { InformerEvent } from '../../src/runtime/cache/informer.ts';
import type { InformerGroup } from '../../src/runtime/cache/informer-group.ts';

export class FakeGroup<T extends KubeObject = KubeObject> {
  readonly name: string;
  readonly objects = new Map<string, T>();
  /** What assume() was told, in order. */
  readonly assumed: { written: T; basedOn: string | undefined }[] = [];
  /** Set when the signal given to run() aborts. */
  aborted = false;
  /** Set when run() has returned. */
  returned = false;
  private readonly handlers: ((event: InformerEvent<T>) => void)[] = [];
  private readonly syncedAt = Promise.withResolvers<undefined>();
  private syncedFlag = false;
  /** What happens, across groups: `name aborted`, `name returned`. */
  private readonly log: string[];

  constructor(name: string, objects: T[] = [], log: string[] = []) {
    this.name = name;
    this.log = log;
    for (const object of objects) this.objects.set(objectKey(object), object);
  }

  /** This as an InformerGroup, for code that takes one: only what it reads is here. */
  get group(): InformerGroup<T> {
    return this as unknown as InformerGroup<T>;
  }

  get(key: string): T | undefined {
    return this.objects.get(key);
  }

  assume(written: T, basedOn: string | undefined): void {
    this.assumed.push({ written, basedOn });
    this.objects.set(objectKey(written), written);
  }

  keys(): string[] {
    return [...this.objects.keys()];
  }

  get size(): number {
    return this.objects.size;
  }

  get synced(): boolean {
    return this.syncedFlag;
  }

  readonly connected = true;

  silentWatches(): string[] {
    return [];
  }

  whenSynced(): Promise<void> {
    return this.syncedAt.promise;
  }

  /** The first list is in. */
  sync(): void {
    this.syncedFlag = true;
    this.syncedAt.resolve(undefined);
  }

  onEvent(handler: (event: InformerEvent<T>) => void): void {
    this.handlers.push(handler);
  }

  /** Tells the handlers of `event`, as the informers do. */
  emit(event: InformerEvent<T>): void {
    for (const handler of this.handlers) handler(event);
  }

  /** Runs until `signal` aborts, then returns a tick later, as an informer's watch ends. */
  async run(signal: AbortSignal): Promise<void> {
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      signal.addEventListener('abort', () => {
        resolve();
      });
    });
    this.aborted = true;
    this.log.push(`${this.name} aborted`);
    await new Promise((resolve) => setImmediate(resolve));
    this.returned = true;
    this.log.push(`${this.name} returned`);
  }
}
