// Declares a controller the way controller-runtime's builder does: the resource it reconciles
// (`for`), the resources it owns (`owns`: an event on one wakes its controller owner), a filter per
// resource, then the reconciler (`complete`). The result builds the informers, the work queue, the
// Event recorder and the controller loop, and queues nothing until it leads. It knows no resource
// by name: what it watches comes from the declaration.
import type { KubeClient } from '../kube/client.ts';
import { isNotFound } from '../kube/errors.ts';
import { errorText, type Logger } from '../telemetry/logger.ts';
import type { Tracer } from '../telemetry/tracing.ts';
import {
  Controller,
  controllerOwnerKey,
  type ControllerObserver,
  type Reconcile,
} from './controller.ts';
import { EventRecorder } from './events.ts';
import { InformerGroup } from './cache/informer-group.ts';
import { objectKey, type KubeObject } from '../kube/object.ts';
import type { InformerEvent, InformerObserver } from './cache/informer.ts';
import { WorkQueue, type QueueObserver } from './workqueue.ts';

/** A namespaced resource type as the API server serves it. */
export interface ResourceType<Plural extends string = string> {
  /** `apps/v1`, `example.com/v1`; `v1` for the core group. */
  apiVersion: string;
  kind: string;
  /** The resource's name in URLs; also its informer's name in logs and metrics. */
  plural: Plural;
}

/** The collection path of `type` in `namespace`, or across the cluster when it is undefined. */
export function collectionPath(type: ResourceType, namespace: string | undefined): string {
  const group = type.apiVersion.includes('/')
    ? `/apis/${type.apiVersion}`
    : `/api/${type.apiVersion}`;
  return namespace ? `${group}/namespaces/${namespace}/${type.plural}` : `${group}/${type.plural}`;
}

/** How one resource is watched and which of its events matter. */
export interface WatchOptions<T extends KubeObject> {
  labelSelector?: string;
  /** Keeps only what the reconciler reads, before the object is cached (InformerOptions). */
  transform?: (object: T, cached: T | undefined) => T;
  /** Decodes the watch's objects from protobuf (built-in types only: InformerOptions). */
  protobuf?: (object: Buffer, cached: (key: string) => T | undefined) => T;
  /** Whether an update is worth a reconcile; without it, every update is. */
  changed?: (old: T, next: T) => boolean;
  /** What to log when the API server does not serve the resource (404): how to install it. */
  notServed?: (server: string) => string;
}

/** What the controllers of one process share: client, scope, timings, logs, observers. */
export interface RuntimeOptions {
  client: KubeClient;
  /** Namespaces to watch; empty for the whole cluster. */
  namespaces: string[];
  concurrency: number;
  resyncMs: number;
  /** This replica's name, in Events. */
  instance: string;
  log: (module: string) => Logger;
  queueObserver?: QueueObserver;
  controllerObserver?: ControllerObserver;
  informerObserver?: (informer: string) => InformerObserver;
  /** Informer timeouts, shortened by tests that cut the API server off. */
  watchTimeoutSeconds?: number;
  idleTimeoutMs?: number;
  /** Tracing on: a span per reconcile. */
  tracer?: Tracer;
}

export interface ControllerIdentity {
  /** In metrics, spans and the work queue's name. */
  name: string;
  /** The Events' reportingController, e.g. `example.com/echo-operator`. */
  reportingController: string;
}

/** The informer cache of each resource a controller watches, by its plural. */
export type Caches<C extends Record<string, KubeObject>> = {
  readonly [K in keyof C]: InformerGroup<C[K]>;
};

/** What a reconciler is built from. */
export interface ControllerParts<C extends Record<string, KubeObject>> {
  caches: Caches<C>;
  recorder: EventRecorder;
}

interface Watched {
  type: ResourceType;
  watch: WatchOptions<KubeObject>;
}

/**
 * A declared resource, its object type left to the builder's type parameter: its informer only
 * ever hands `watch` objects of that type.
 */
function watched<T extends KubeObject>(type: ResourceType, watch: WatchOptions<T>): Watched {
  return { type, watch: watch as unknown as WatchOptions<KubeObject> };
}

interface Declaration<C extends Record<string, KubeObject>> {
  identity: ControllerIdentity;
  runtime: RuntimeOptions;
  primary: Watched;
  owned: Watched[];
  reconciler: (parts: ControllerParts<C>) => Reconcile;
}

/** The keys a primary object's event queues: its own, unless the event brings nothing new. */
export function primaryKeys<T extends KubeObject>(
  event: InformerEvent<T>,
  changed?: (old: T, next: T) => boolean,
): string[] {
  // The watch's copy of the operator's own write changes nothing: reconciles already read it.
  if (event.ownWrite) return [];
  if (event.type === 'update' && changed && !changed(event.old, event.object)) return [];
  return [objectKey(event.object)];
}

/**
 * The keys an owned object's event queues: its controller owner's of type `owner`, and on an update
 * the previous one if it differs: a hand edit that removes or replaces the owner reference must be
 * undone by the owner that lost it.
 */
export function ownerKeys<T extends KubeObject>(
  event: InformerEvent<T>,
  owner: Pick<ResourceType, 'apiVersion' | 'kind'>,
  changed?: (old: T, next: T) => boolean,
): string[] {
  if (event.ownWrite) return [];
  if (event.type === 'update' && changed && !changed(event.old, event.object)) return [];
  const current = controllerOwnerKey(event.object, owner);
  const previous = event.type === 'update' ? controllerOwnerKey(event.old, owner) : undefined;
  return [current, previous === current ? undefined : previous].filter((k) => k !== undefined);
}

/** Starts a declaration: `newController(identity, runtime).for(...).owns(...).complete(...)`. */
export function newController(
  identity: ControllerIdentity,
  runtime: RuntimeOptions,
): {
  for<N extends string, P extends KubeObject>(
    type: ResourceType<N>,
    watch?: WatchOptions<P>,
  ): ControllerBuilder<Record<N, P>>;
} {
  return {
    for: (type, watch = {}) => new ControllerBuilder(identity, runtime, watched(type, watch)),
  };
}

/** `C`: the object type of each watched resource, by plural. */
export class ControllerBuilder<C extends Record<string, KubeObject>> {
  private readonly identity: ControllerIdentity;
  private readonly runtime: RuntimeOptions;
  private readonly primary: Watched;
  private readonly owned: Watched[];

  constructor(
    identity: ControllerIdentity,
    runtime: RuntimeOptions,
    primary: Watched,
    owned: Watched[] = [],
  ) {
    this.identity = identity;
    this.runtime = runtime;
    this.primary = primary;
    this.owned = owned;
  }

  /** Watches `type`: an event on one of its objects queues the primary object that controls it. */
  owns<N extends string, T extends KubeObject>(
    type: ResourceType<N>,
    watch: WatchOptions<T> = {},
  ): ControllerBuilder<C & Record<N, T>> {
    if ([this.primary, ...this.owned].some((w) => w.type.plural === type.plural)) {
      throw new Error(`${type.plural} is watched already`);
    }
    return new ControllerBuilder(this.identity, this.runtime, this.primary, [
      ...this.owned,
      watched(type, watch),
    ]);
  }

  /** Builds the controller; `reconciler` is given the caches it reads and the Event recorder. */
  complete(reconciler: (parts: ControllerParts<C>) => Reconcile): ManagedController<C> {
    const { identity, runtime, primary, owned } = this;
    return new ManagedController<C>({ identity, runtime, primary, owned, reconciler });
  }
}

/**
 * A declared controller, built: one informer group per watched resource, a work queue fed by their
 * events while leading, the Event recorder and the controller loop.
 */
export class ManagedController<C extends Record<string, KubeObject>> {
  readonly caches: Caches<C>;
  readonly queue: WorkQueue;
  readonly recorder: EventRecorder;
  /** Every watched resource's informers, the primary's first. */
  readonly informers: readonly InformerGroup<KubeObject>[];
  private readonly primary: InformerGroup<KubeObject>;
  private readonly byPlural: Map<string, InformerGroup<KubeObject>>;
  private readonly controller: Controller;
  private readonly log: Logger;
  /** Events queue work only while leading: a standby keeps its caches warm and writes nothing. */
  private leading = false;

  constructor(declaration: Declaration<C>) {
    const { runtime, primary, owned } = declaration;
    this.primary = informerGroup(runtime, primary);
    const ownedInformers = owned.map((w) => ({ ...w, informer: informerGroup(runtime, w) }));
    this.byPlural = new Map([
      [primary.type.plural, this.primary],
      ...ownedInformers.map((o) => [o.type.plural, o.informer] as const),
    ]);
    this.informers = [...this.byPlural.values()];
    this.caches = Object.fromEntries(this.byPlural) as unknown as Caches<C>;
    this.queue = new WorkQueue(undefined, runtime.queueObserver);
    this.recorder = new EventRecorder({
      client: runtime.client,
      controller: declaration.identity.reportingController,
      instance: runtime.instance,
      onError: (err) => {
        runtime.log('events').warn({ err: errorText(err) }, 'could not record an Event');
      },
    });
    this.log = runtime.log('operator');
    this.primary.onEvent((e) => {
      if (this.leading) this.enqueue(primaryKeys(e, primary.watch.changed));
    });
    for (const { informer, watch } of ownedInformers) {
      informer.onEvent((e) => {
        if (this.leading) this.enqueue(ownerKeys(e, primary.type, watch.changed));
      });
    }
    this.controller = this.loop(declaration);
  }

  /** True once every cache holds a complete list. */
  get synced(): boolean {
    return this.informers.every((i) => i.synced);
  }

  /** False while a list or watch is failing (the API server unreachable, a CRD gone, 401). */
  get connected(): boolean {
    return this.informers.every((i) => i.connected);
  }

  /** Each watch silent past its limit, named: a stuck stream `/readyz` reports. */
  silentWatches(): string[] {
    return this.informers.flatMap((i) => i.silentWatches());
  }

  async whenSynced(): Promise<void> {
    await Promise.all(this.informers.map((i) => i.whenSynced()));
  }

  /** Objects in each cache, by resource plural. */
  cacheSizes(): Record<string, number> {
    return Object.fromEntries(
      [...this.byPlural].map(([plural, informer]) => [plural, informer.size]),
    );
  }

  /** Re-queues every primary object now: what the periodic resync does, on demand. */
  resync(): void {
    for (const key of this.primary.keys()) this.queue.add(key);
  }

  /**
   * Runs until `signal` aborts; in-flight reconciles and Events finish first. The caches fill at
   * once; reconciling starts when `elected` resolves true (at once without leader election), with
   * every cached primary object queued, as a new leader must check what happened while it stood by.
   */
  async run(signal: AbortSignal, elected: Promise<boolean> = Promise.resolve(true)): Promise<void> {
    const informers = Promise.all(this.informers.map((i) => i.run(signal)));
    void this.whenSynced().then(() => {
      this.log.info(this.cacheSizes(), 'caches synced');
    });
    if (await elected) {
      this.leading = true;
      this.resync();
      await this.controller.run(signal);
    } else {
      await this.queue.shutDown();
    }
    await informers;
    await this.recorder.flush();
  }

  private enqueue(keys: string[]): void {
    for (const key of keys) this.queue.add(key);
  }

  private loop(declaration: Declaration<C>): Controller {
    const { identity, runtime, primary, reconciler } = declaration;
    const log = runtime.log('controller');
    // Logs name the key by the primary's kind: `{"echo": "team/web"}`.
    const keyField = primary.type.kind.toLowerCase();
    return new Controller({
      name: identity.name,
      queue: this.queue,
      primary: this.primary,
      informers: [...this.informers],
      concurrency: runtime.concurrency,
      resyncMs: runtime.resyncMs,
      reconcile: reconciler({ caches: this.caches, recorder: this.recorder }),
      ...(runtime.controllerObserver ? { observer: runtime.controllerObserver } : {}),
      ...(runtime.tracer ? { tracer: runtime.tracer } : {}),
      onError: (key, err, retries) => {
        log.warn(
          { [keyField]: key, retries, err: errorText(err) },
          'reconcile failed; retrying with backoff',
        );
      },
    });
  }
}

/** The informers of one watched resource: one per namespace, or one for the cluster. */
function informerGroup(
  runtime: RuntimeOptions,
  { type, watch }: Watched,
): InformerGroup<KubeObject> {
  const { client } = runtime;
  const log = runtime.log('informer');
  const metrics = runtime.informerObserver?.(type.plural);
  return new InformerGroup<KubeObject>(runtime.namespaces, (ns) => collectionPath(type, ns), {
    client,
    name: type.plural,
    ...(watch.labelSelector ? { labelSelector: watch.labelSelector } : {}),
    ...(watch.transform ? { transform: watch.transform } : {}),
    ...(watch.protobuf ? { protobuf: watch.protobuf } : {}),
    ...(runtime.watchTimeoutSeconds ? { watchTimeoutSeconds: runtime.watchTimeoutSeconds } : {}),
    ...(runtime.idleTimeoutMs ? { idleTimeoutMs: runtime.idleTimeoutMs } : {}),
    onError: (message, err) => {
      log.warn({ err: errorText(err) }, message);
      // A resource gone under a running operator (a CRD deleted): say so plainly; it keeps trying.
      if (watch.notServed && isNotFound(err)) log.error(watch.notServed(client.server.origin));
    },
    observer: {
      ...metrics,
      relisted: () => {
        // Rare and costly (a full list): worth a line, not only a counter.
        log.info({ informer: type.plural }, 'resourceVersion compacted away (410 Gone): relisting');
        metrics?.relisted?.();
      },
      protobufRefused: (err) => {
        log.warn(
          { informer: type.plural, err: errorText(err) },
          "could not decode the API server's protobuf: watching in JSON",
        );
      },
      watchListRefused: (err) => {
        log.info(
          { informer: type.plural, err: errorText(err) },
          'the API server does not stream lists (WatchList): listing in pages',
        );
      },
    },
  });
}
