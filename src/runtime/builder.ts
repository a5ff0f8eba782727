// Declares a controller the way controller-runtime's builder does: the resource it reconciles
// (`for`), the resources it owns (`owns`: an event on one queues its controller owner), others it
// watches with a mapping of its own (`watches`), then the reconciler (`complete`). A declaration is
// only a record of what was asked: the Manager builds it (informers, work queue, Event recorder,
// loop) and runs it. It knows no resource by name.
import type { KubeClient } from '../kube/client.ts';
import { objectKey, type KubeObject } from '../kube/object.ts';
import type { ResourceType } from '../kube/resource.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { InformerEvent } from './cache/informer.ts';
import type { Reconciler } from './controller.ts';
import type { EventRecorder } from './events.ts';
import type { Metrics } from './metrics.ts';

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

/** A watched resource whose objects name the primary objects to queue themselves. */
export interface MappedWatchOptions<
  T extends KubeObject,
  N extends string,
> extends WatchOptions<T> {
  /** The keys (`namespace/name`) of the primary objects an event on `object` concerns. */
  map: (object: T) => string[];
  /** The cache's name in `caches`, logs and metrics (default: the plural): a second cache of a
   * resource already watched, with another selector, needs one of its own. */
  as?: N;
}

/**
 * What a reconciler reads a watched resource through: its informer group, or on a sharded replica
 * the groups of the buckets it holds, read as one.
 */
export interface Cache<T extends KubeObject> {
  readonly name: string;
  get(key: string): T | undefined;
  /** See Store.assume. */
  assume(written: T, basedOn: string | undefined): void;
  keys(): string[];
  readonly size: number;
  readonly synced: boolean;
  whenSynced(): Promise<void>;
  onEvent(handler: (event: InformerEvent<T>) => void): void;
}

/** The cache of each resource a controller watches, by its plural. */
export type Caches<C extends Record<string, KubeObject>> = {
  readonly [K in keyof C]: Cache<C[K]>;
};

/** What a reconciler is built from, handed to `complete`'s factory by the Manager. */
export interface ControllerContext<C extends Record<string, KubeObject>> {
  caches: Caches<C>;
  /** The Manager's client: writes go through it, counted and traced. */
  client: KubeClient;
  recorder: EventRecorder;
  log: (module: string) => Logger;
  /** The Manager's metrics registry, for a controller's own series. */
  metrics: Metrics | undefined;
}

export interface ControllerIdentity {
  /** In metrics, spans, logs and the work queue's name. */
  name: string;
  /** The Events' reportingController, e.g. `example.com/echo-operator`. */
  reportingController: string;
  /** Workers for this controller; the Manager's default otherwise. */
  concurrency?: number;
  /**
   * How long one reconcile may run before its signal aborts and its worker moves on (the key is
   * retried with backoff); 0 for no deadline. The Manager's `reconcileTimeoutMs` otherwise.
   */
  reconcileTimeoutMs?: number;
}

/** How events of a watched resource become keys of the primary resource. */
export type Mapping =
  { kind: 'primary' } | { kind: 'owner' } | { kind: 'map'; map: (object: KubeObject) => string[] };

export interface Watched {
  /** The cache's name: the plural, unless the declaration named it (`as`). */
  name: string;
  type: ResourceType;
  watch: WatchOptions<KubeObject>;
  mapping: Mapping;
}

/** A controller as declared: what the Manager builds and runs. */
export interface ControllerDeclaration<
  C extends Record<string, KubeObject> = Record<string, KubeObject>,
  P extends KubeObject = KubeObject,
> {
  identity: ControllerIdentity;
  /** The primary resource first, then what it owns or watches. */
  watched: readonly Watched[];
  reconciler: (context: ControllerContext<C>) => Reconciler<P>;
}

/**
 * A declared resource, its object type left to the builder's type parameter: its informer only
 * ever hands `watch` objects of that type.
 */
function watched<T extends KubeObject>(
  type: ResourceType,
  watch: WatchOptions<T>,
  mapping: Mapping,
  name = type.plural,
): Watched {
  return { name, type, watch: watch as unknown as WatchOptions<KubeObject>, mapping };
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

/** The key of `object`'s controller owner when that owner is of the given kind, else undefined. */
export function controllerOwnerKey(
  object: KubeObject,
  owner: { apiVersion: string; kind: string },
): string | undefined {
  const ref = object.metadata.ownerReferences?.find((r) => r.controller === true);
  if (ref?.apiVersion !== owner.apiVersion || ref.kind !== owner.kind) return undefined;
  return object.metadata.namespace ? `${object.metadata.namespace}/${ref.name}` : ref.name;
}

/**
 * The keys a related object's event queues, by `keysOf` (its controller owner, or a mapping), and
 * on an update the previous keys if they differ: a hand edit that removes or replaces the owner
 * reference must be undone by the owner that lost it.
 */
export function relatedKeys<T extends KubeObject>(
  event: InformerEvent<T>,
  keysOf: (object: T) => (string | undefined)[],
  changed?: (old: T, next: T) => boolean,
): string[] {
  if (event.ownWrite) return [];
  if (event.type === 'update' && changed && !changed(event.old, event.object)) return [];
  const keys = new Set(keysOf(event.object));
  if (event.type === 'update') for (const key of keysOf(event.old)) keys.add(key);
  keys.delete(undefined);
  return [...keys] as string[];
}

/** The keys an owned object's event queues: its controller owner's of type `owner`. */
export function ownerKeys<T extends KubeObject>(
  event: InformerEvent<T>,
  owner: Pick<ResourceType, 'apiVersion' | 'kind'>,
  changed?: (old: T, next: T) => boolean,
): string[] {
  return relatedKeys(event, (object) => [controllerOwnerKey(object, owner)], changed);
}

/** Starts a declaration: `newController(identity).for(...).owns(...).complete(...)`. */
export function newController(identity: ControllerIdentity): {
  for<N extends string, P extends KubeObject>(
    type: ResourceType<N, P>,
    watch?: WatchOptions<P>,
  ): ControllerBuilder<Record<N, P>, P>;
} {
  return {
    for: (type, watch = {}) =>
      new ControllerBuilder(identity, [watched(type, watch, { kind: 'primary' })]),
  };
}

/** `C`: the object type of each watched resource, by plural; `P`: the primary's. */
export class ControllerBuilder<C extends Record<string, KubeObject>, P extends KubeObject> {
  private readonly identity: ControllerIdentity;
  private readonly declared: readonly Watched[];

  constructor(identity: ControllerIdentity, declared: readonly Watched[]) {
    this.identity = identity;
    this.declared = declared;
  }

  /** Watches `type`: an event on one of its objects queues the primary object that controls it. */
  owns<N extends string, T extends KubeObject>(
    type: ResourceType<N, T>,
    watch: WatchOptions<T> = {},
  ): ControllerBuilder<C & Record<N, T>, P> {
    return this.with(watched(type, watch, { kind: 'owner' }));
  }

  /**
   * Watches `type`: an event on one of its objects queues the primary objects `watch.map` names.
   * For relations owner references cannot express (across namespaces, or by label).
   */
  watches<T extends KubeObject, N extends string, A extends string = N>(
    type: ResourceType<N, T>,
    watch: MappedWatchOptions<T, A>,
  ): ControllerBuilder<C & Record<A, T>, P> {
    const map = watch.map as (object: KubeObject) => string[];
    return this.with(watched(type, watch, { kind: 'map', map }, watch.as ?? type.plural));
  }

  /** The declaration, with the factory that builds the reconciler from the controller's parts. */
  complete(
    reconciler: (context: ControllerContext<C>) => Reconciler<P>,
  ): ControllerDeclaration<C, P> {
    return {
      identity: this.identity,
      watched: this.declared,
      reconciler,
    };
  }

  private with<C2 extends Record<string, KubeObject>>(w: Watched): ControllerBuilder<C2, P> {
    if (this.declared.some((d) => d.name === w.name)) {
      throw new Error(`${w.name} is watched already by ${this.identity.name}: name the cache (as)`);
    }
    return new ControllerBuilder<C2, P>(this.identity, [...this.declared, w]);
  }
}
