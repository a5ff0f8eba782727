// The Manager runs controllers, as controller-runtime's does: it owns the client, the informer
// caches (one per resource and selector, shared by every controller that declares the same), the
// readiness checks, the metrics, the HTTP endpoints, leader election, and the order things stop in.
// Controllers are declared with the builder and added; `run` does the rest:
//
//   serve probes → wait for the API server and the resources declared as installable →
//   fill the caches → (elected) → reconcile → on abort: drain the workers, release the lease,
//   flush Events, close the endpoints and the client.
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeClient, defaultUserAgent, type ClientOptions } from '../kube/client.ts';
import { ApiError, isForbidden } from '../kube/errors.ts';
import type { Connection } from '../kube/kubeconfig/types.ts';
import type { KubeObject } from '../kube/object.ts';
import { RequestCounts } from '../kube/request-counts.ts';
import { collectionPath, groupVersionPath, type ResourceType } from '../kube/resource.ts';
import { startHttpServer, type Check, type RunningServer } from '../http/server.ts';
import { errorText, type Logger } from '../telemetry/logger.ts';
import type { Tracer } from '../telemetry/tracing.ts';
import { DEFAULT_BACKOFF, retryDelay } from './backoff.ts';
import {
  primaryKeys,
  relatedKeys,
  controllerOwnerKey,
  type Cache,
  type Caches,
  type ControllerDeclaration,
  type Watched,
} from './builder.ts';
import type { InformerEvent, InformerObserver } from './cache/informer.ts';
import { InformerGroup } from './cache/informer-group.ts';
import {
  Controller,
  DEFAULT_RECONCILE_TIMEOUT_MS,
  type Cause,
  type ControllerObserver,
} from './controller.ts';
import { EventRecorder } from './events.ts';
import { LeaderElector, type LeaderElectionTimings } from './leader-election.ts';
import { Metrics } from './metrics.ts';
import { startMetricsServer, type MetricsServeOptions } from './metrics-server.ts';
import { WorkQueue, type QueueObserver } from './workqueue.ts';
import type { AssignmentStats } from './sharding/assignment.ts';
import { BucketLeases, ShardedMembers } from './sharding/bucket-leases.ts';
import { BucketWork, type BucketController } from './sharding/bucket-work.ts';
import { SLOT_LABEL, bucketFilter, bucketOf, bucketOfSlot } from './sharding/buckets.ts';
import { ShardedCache } from './sharding/sharded-cache.ts';

export interface LeaderElectionOptions extends LeaderElectionTimings {
  namespace: string;
  leaseName: string;
  /** Unique per process: two processes with one identity would both believe they lead. */
  identity: string;
  /**
   * The group of sharded replicas that may have reconciled (ShardingOptions.group): the leader
   * reconciles only while none of them is alive, so a move between the modes never overlaps.
   */
  shardedGroup?: string;
}

/**
 * Active-active: the primary objects are split by FNV-1a 64 of their uid into `bucketCount`
 * buckets, each reconciled by the replica that holds its Lease (docs/sharding.md). Owned objects
 * are cached by their owner's slot label (SLOT_LABEL), which their reconciler stamps.
 */
export interface ShardingOptions extends LeaderElectionTimings {
  namespace: string;
  /** Names the Leases: the replicas of one group share the buckets. */
  group: string;
  /** Unique per process. */
  identity: string;
  bucketCount: number;
  /** The Lease of a leader elected without sharding: no bucket is taken while it is held. */
  leaderLease?: string;
}

export interface ServeOptions {
  /** The port of the health endpoints, and of /metrics too unless `metrics` gives it its own. */
  port: number;
  /** The IP address both ports listen on; empty: every interface. */
  bindAddress: string;
  /** /metrics on a port of its own, secure or not, instead of on `port`. */
  metrics?: MetricsServeOptions;
}

/** Hooks a caller (a test, a benchmark) adds beside the metrics. */
export interface RuntimeObservers {
  queue?: (controller: string) => QueueObserver;
  controller?: (controller: string) => ControllerObserver;
  informer?: (informer: string) => InformerObserver;
}

export interface ManagerOptions {
  /** Where the API server is and how to authenticate (loadConnection). */
  connection: Connection;
  client?: ClientOptions;
  /** Namespaces the caches hold; empty for the whole cluster. */
  namespaces: string[];
  /** This replica's name, in Events. */
  instance: string;
  /** The Events' reportingController for what the Manager records itself (leader election). */
  reportingController: string;
  /** Workers per controller, unless its declaration says otherwise. */
  concurrency: number;
  /** Every primary object not settled is reconciled again this often. */
  resyncMs: number;
  /**
   * How long one reconcile may run, unless its declaration says otherwise; 0 for no deadline.
   * Default DEFAULT_RECONCILE_TIMEOUT_MS (2 minutes).
   */
  reconcileTimeoutMs?: number;
  log: (module: string) => Logger;
  /** Builds the Prometheus registry (served at /metrics when `serve` is set). */
  metrics?: { prefix: string };
  /** Serves /healthz, /livez, /readyz and /metrics. */
  serve?: ServeOptions;
  leaderElection?: LeaderElectionOptions;
  /** Instead of leader election: every replica reconciles the buckets it holds. */
  sharding?: ShardingOptions;
  /** Called when the lease could not be renewed in time; the default exits the process. */
  onLeadershipLost?: () => void;
  observers?: RuntimeObservers;
  tracer?: Tracer;
  /** Informer timeouts, shortened by tests that cut the API server off. */
  watchTimeoutSeconds?: number;
  idleTimeoutMs?: number;
}

/**
 * How an informer event is queued: as its `cause` (normal priority), but for what changes nothing,
 * the initial list's adds (the cache not yet synced) and an update of the same resourceVersion (a
 * resync's replay), which are queued as a resync is (low priority).
 */
export function queuedCause(
  event: InformerEvent<KubeObject>,
  synced: boolean,
  cause: Cause,
): Cause {
  const replay =
    !synced ||
    (event.type === 'update' &&
      event.old.metadata.resourceVersion === event.object.metadata.resourceVersion);
  return replay ? 'resync' : cause;
}

/** A controller added to the Manager: its caches, queue and recorder, for tests and tools. */
export interface ManagedController<C extends Record<string, KubeObject>> {
  readonly name: string;
  readonly caches: Caches<C>;
  readonly queue: WorkQueue;
  readonly recorder: EventRecorder;
  /** Re-queues every primary object not settled: what the periodic resync does, on demand. */
  resync(): void;
  whenSynced(): Promise<void>;
}

interface Added {
  controller: Controller;
  recorder: EventRecorder;
  informers: InformerGroup<KubeObject>[];
  declaration: ControllerDeclaration;
  /** With sharding: its caches kept by bucket, primary first. */
  sharded: BucketController['caches'];
}

export class Manager {
  readonly client: KubeClient;
  /** Every request the client sent, by verb: what tests and the stop line count. */
  readonly counts = new RequestCounts();
  readonly metrics: Metrics | undefined;
  private readonly options: ManagerOptions;
  private readonly log: Logger;
  /** One informer group per resource and selector, shared by the controllers declaring it. */
  private readonly informers = new Map<string, InformerGroup<KubeObject>>();
  private readonly controllers: Added[] = [];
  private readonly elector: LeaderElector | undefined;
  private readonly leases: BucketLeases | undefined;
  private buckets: BucketWork | undefined;
  private readonly recorder: EventRecorder;
  private http: RunningServer | undefined;
  private metricsHttp: RunningServer | undefined;
  /** With leader election beside a sharded group: the last list of its members answered. */
  private membersListed = false;
  /** The last answer of the API server was 401: revoked or expired credentials. */
  private credentialsRefused = false;
  private running = false;

  constructor(options: ManagerOptions) {
    this.options = options;
    this.log = options.log('manager');
    const clientOptions = options.client ?? {};
    const metrics = options.metrics
      ? new Metrics({
          prefix: options.metrics.prefix,
          server: options.connection.server.href,
          queues: () =>
            new Map(this.controllers.map((c) => [c.controller.name, c.controller.queue])),
          cacheSizes: () => this.cacheSizes(),
          ready: () => this.ready,
          connections: () => ({
            open: this.client.openConnections,
            max: clientOptions.maxConnections ?? Infinity,
          }),
          ...(options.leaderElection
            ? {
                leader: {
                  name: options.leaderElection.leaseName,
                  leading: () => this.elector?.isLeader ?? false,
                },
              }
            : {}),
          ...(options.sharding
            ? {
                sharding: {
                  stats: () => this.leases?.stats ?? EMPTY_STATS,
                  objects: () => this.buckets?.objects() ?? new Map(),
                },
              }
            : {}),
        })
      : undefined;
    this.metrics = metrics;
    this.client = new KubeClient(options.connection, {
      // The instance tells replicas apart in the API server's audit log.
      userAgent: `${defaultUserAgent()} instance/${options.instance}`,
      ...clientOptions,
      onResponse: (event) => {
        this.counts.record(event);
        metrics?.onResponse(event);
        clientOptions.onResponse?.(event);
        if (event.code !== 0) this.credentialsRefused = event.code === 401;
      },
      ...(options.tracer ? { tracer: options.tracer } : {}),
    });
    this.recorder = this.eventRecorder(options.reportingController);
    if (options.sharding && options.leaderElection) {
      throw new Error('sharding and leader election exclude each other: choose one');
    }
    this.elector = options.leaderElection && this.leaderElector(options.leaderElection);
    this.leases = options.sharding && this.bucketLeases(options.sharding);
  }

  /** Builds `declaration` on this Manager's client and caches; it runs with `run`. */
  add<C extends Record<string, KubeObject>, P extends KubeObject>(
    declaration: ControllerDeclaration<C, P>,
  ): ManagedController<C> {
    const { identity, watched } = declaration;
    if (this.running) throw new Error(`${identity.name}: controllers are added before run`);
    if (this.controllers.some((c) => c.controller.name === identity.name)) {
      throw new Error(`a controller named ${identity.name} is added already`);
    }
    const { cacheList, groups, sharded } = this.cachesOf(watched);
    const caches = Object.fromEntries(
      watched.map((w, i) => [w.name, cacheList[i]]),
    ) as unknown as Caches<C>;
    const observers = this.options.observers;
    const queue = new WorkQueue(
      undefined,
      both(this.metrics?.queueObserver(identity.name), observers?.queue?.(identity.name)) ?? {},
    );
    const recorder = this.eventRecorder(identity.reportingController);
    const concurrency = identity.concurrency ?? this.options.concurrency;
    const errorLog = this.options.log('controller');
    // Logs name the key by the primary's kind: `{"echo": "team/web"}`.
    const keyField = watched[0]?.type.kind.toLowerCase() ?? 'key';
    const primary = cacheList[0] as unknown as Cache<P>;
    const primaryType = watched[0]?.type ?? { apiVersion: '', kind: '', plural: '' };
    const controller = new Controller<P>({
      name: identity.name,
      queue,
      primary,
      informers: cacheList,
      concurrency,
      resyncMs: this.options.resyncMs,
      reconcileTimeoutMs:
        identity.reconcileTimeoutMs ??
        this.options.reconcileTimeoutMs ??
        DEFAULT_RECONCILE_TIMEOUT_MS,
      reconciler: declaration.reconciler({
        caches,
        client: this.client,
        recorder,
        log: this.options.log,
        metrics: this.metrics,
      }),
      observer:
        both(
          this.metrics?.controllerObserver(identity.name, concurrency),
          observers?.controller?.(identity.name),
        ) ?? {},
      ...(this.options.tracer ? { tracer: this.options.tracer } : {}),
      onError: (key, err, retries) => {
        errorLog.warn(
          { controller: identity.name, [keyField]: key, retries, err: errorText(err) },
          'reconcile failed; retrying with backoff',
        );
      },
    });
    for (const [i, w] of watched.entries()) {
      const cache = cacheList[i];
      if (cache) this.route(w, cache, controller, primaryType);
    }
    this.controllers.push({
      controller,
      recorder,
      informers: groups,
      declaration: declaration as unknown as ControllerDeclaration,
      sharded,
    });
    return {
      name: identity.name,
      caches,
      queue,
      recorder,
      resync: () => {
        controller.resync();
      },
      whenSynced: async () => {
        await Promise.all(cacheList.map((c) => c.whenSynced()));
      },
    };
  }

  /**
   * The caches of `watched`, in order: informer groups shared by resource and selector; sharded,
   * the primary resource and those it owns are cached by bucket (by each controller for itself).
   */
  private cachesOf(watched: readonly Watched[]): {
    cacheList: Cache<KubeObject>[];
    groups: InformerGroup<KubeObject>[];
    sharded: BucketController['caches'];
  } {
    const sharding = this.options.sharding;
    const groups: InformerGroup<KubeObject>[] = [];
    const sharded: BucketController['caches'] = [];
    const cacheList = watched.map((w): Cache<KubeObject> => {
      if (!sharding || w.mapping.kind === 'map') {
        const group = this.informerFor(w);
        groups.push(group);
        return group;
      }
      const part = this.shardedCache(w, sharding);
      sharded.push(part);
      return part.cache;
    });
    return { cacheList, groups, sharded };
  }

  /** Queues on `controller` the keys each event of `w`'s informers concerns (see queuedCause). */
  private route(
    w: Watched,
    group: Pick<Cache<KubeObject>, 'onEvent' | 'synced'>,
    controller: Controller,
    primary: ResourceType,
  ): void {
    const { changed } = w.watch;
    const { mapping } = w;
    if (mapping.kind === 'primary') {
      group.onEvent((e) => {
        for (const key of primaryKeys(e, changed))
          controller.enqueue(key, queuedCause(e, group.synced, 'primary'));
      });
      return;
    }
    const keysOf =
      mapping.kind === 'map'
        ? mapping.map
        : (object: KubeObject) => [controllerOwnerKey(object, primary)];
    group.onEvent((e) => {
      for (const key of relatedKeys(e, keysOf, changed)) {
        controller.enqueue(key, queuedCause(e, group.synced, 'related'));
      }
    });
  }

  /** True once every cache holds a complete list. */
  get synced(): boolean {
    return this.groups().every((i) => i.synced);
  }

  /** False while a list or watch is failing (the API server unreachable, a CRD gone, 401). */
  get connected(): boolean {
    return (
      this.groups().every((i) => i.connected) && this.shardedCaches().every((c) => c.connected)
    );
  }

  /** With leader election: whether this replica leads; without, always. */
  get leading(): boolean {
    return this.elector?.isLeader ?? true;
  }

  /** What /readyz checks, by name: each true, or a reason it is not. */
  get checks(): Record<string, Check> {
    const elector = this.elector;
    return {
      'informers-synced': () => this.synced,
      'informers-connected': () => this.connected,
      // A watch whose stream stopped without failing: the watchdog reopens it; if it could not.
      'watches-heard': () =>
        [...this.groups(), ...this.shardedCaches()].flatMap((g) => g.silentWatches()).join('; ') ||
        true,
      'credentials-accepted': () => !this.credentialsRefused,
      // Standing by beside sharded replicas is healthy while their Leases can be listed.
      ...(elector ? { 'leader-election': () => elector.healthy || this.membersListed } : {}),
      ...(this.leases ? this.shardingChecks(this.leases) : {}),
    };
  }

  get ready(): boolean {
    return Object.values(this.checks).every((check) => check() === true);
  }

  /** Objects in each cache, by its name. */
  cacheSizes(): Record<string, number> {
    return Object.fromEntries(
      [...this.informers.values(), ...this.shardedCaches()].map((g) => [g.name, g.size]),
    );
  }

  async whenSynced(): Promise<void> {
    await Promise.all(this.groups().map((g) => g.whenSynced()));
  }

  /**
   * Starts the HTTP endpoints, if any; resolves with the health endpoints' port. Called by `run`
   * if not before. Rejects, listening on nothing, when the metrics certificate cannot be used.
   */
  async listen(): Promise<number | undefined> {
    const serve = this.options.serve;
    if (!serve) return undefined;
    if (this.http) return this.http.port;
    const metrics = this.metrics;
    const render = metrics
      ? (accept: string | undefined) => metrics.render(accept)
      : () => Promise.resolve({ contentType: 'text/plain', body: '' });
    const own = serve.metrics;
    // The metrics port first: a certificate it cannot load stops the start before a probe passes.
    const metricsHttp = own
      ? await startMetricsServer(own, {
          bindAddress: serve.bindAddress,
          render,
          client: this.client,
          log: this.log,
        })
      : undefined;
    try {
      this.http = await startHttpServer({
        port: serve.port,
        bindAddress: serve.bindAddress,
        readiness: this.checks,
        ...(own ? {} : { metrics: render }),
      });
    } catch (err) {
      await metricsHttp?.close();
      throw err;
    }
    this.metricsHttp = metricsHttp;
    return this.http.port;
  }

  /** The port /metrics is served on, once listening: its own, or the health endpoints'. */
  get metricsPort(): number | undefined {
    return this.metricsHttp?.port ?? this.http?.port;
  }

  /**
   * Runs every added controller until `signal` aborts, then stops in order: the workers drain
   * (the lease is renewed meanwhile: a reconcile still writing is still the leader's), the lease
   * is released, Events flushed, the endpoints and the client closed.
   */
  async run(signal: AbortSignal): Promise<void> {
    this.running = true;
    await this.listen();
    await this.waitForApiServer(signal);
    if (!signal.aborted) await this.runControllers(signal);
    await this.metricsHttp?.close();
    await this.http?.close();
    await this.client.close();
    this.log.info({ requests: this.counts.total(), writes: this.counts.writes() }, 'stopped');
  }

  /** Fills and keeps the caches until `signal` aborts, with no controller running: for tools. */
  async fillCaches(signal: AbortSignal): Promise<void> {
    await Promise.all(this.groups().map((g) => g.run(signal)));
  }

  private async runControllers(signal: AbortSignal): Promise<void> {
    if (this.leases) {
      await this.runSharded(this.leases, signal);
      return;
    }
    const informers = this.fillCaches(signal);
    void this.whenSynced().then(() => {
      this.log.info(this.cacheSizes(), 'caches synced');
    });
    const elector = this.elector;
    const elected = elector ? this.elect(elector, signal) : Promise.resolve(true);
    const drained = new AbortController();
    let holding: Promise<unknown> = Promise.resolve();
    if (elector) {
      const lease = this.options.leaderElection?.leaseName;
      this.log.info({ lease }, 'standing by until elected; caches filling');
      holding = elected.then(async (won) => {
        if (won && (await elector.hold(drained.signal)) === 'lost') this.leadershipLost();
      });
    }
    if (await elected) {
      await Promise.all(this.controllers.map((c) => c.controller.run(signal)));
    } else {
      await Promise.all(this.controllers.map((c) => c.controller.queue.shutDown()));
    }
    drained.abort();
    await holding;
    await elector?.release();
    await informers;
    await Promise.all(
      [this.recorder, ...this.controllers.map((c) => c.recorder)].map((r) => r.flush()),
    );
  }

  /**
   * Runs the controllers on the buckets this replica holds until `signal` aborts; then hands every
   * bucket over (drained, released) before the controllers' workers are let go.
   */
  private async runSharded(leases: BucketLeases, signal: AbortSignal): Promise<void> {
    const informers = this.fillCaches(signal);
    const log = this.log;
    const buckets = new BucketWork(
      this.controllers
        .filter((c) => c.sharded.length > 0)
        .map(({ controller, sharded }) => ({
          caches: sharded,
          replay: (keys) => {
            controller.replay(keys);
          },
          idle: (keys) => controller.idle(keys),
        })),
      (bucket, err) => {
        log.warn({ bucket, err: errorText(err) }, 'the caches of a bucket failed');
      },
    );
    this.buckets = buckets;
    const waiting = setInterval(() => {
      const reason = leases.waitingFor;
      if (reason !== undefined) log.info({ held: leases.held.length }, `waiting for ${reason}`);
    }, 30_000);
    waiting.unref();
    const controllersStop = new AbortController();
    const controllers = Promise.all(
      this.controllers.map((c) => c.controller.run(controllersStop.signal)),
    );
    await leases.run(signal);
    clearInterval(waiting);
    await buckets.stopAll();
    controllersStop.abort();
    await controllers;
    await informers;
    await Promise.all(
      [this.recorder, ...this.controllers.map((c) => c.recorder)].map((r) => r.flush()),
    );
  }

  /**
   * Acquires the leader Lease, and keeps it only if no replica of `shardedGroup` is alive: each
   * side writes its own Lease before it reads the other's, so of a leader and sharded replicas
   * starting at once one always sees the other, and the leader is the one that stands back.
   */
  private async elect(elector: LeaderElector, signal: AbortSignal): Promise<boolean> {
    const election = this.options.leaderElection;
    const group = election?.shardedGroup;
    if (!election || group === undefined) return elector.acquire(signal);
    const members = new ShardedMembers({
      client: this.client,
      namespace: election.namespace,
      group,
    });
    let listRefused = false;
    const alive = async (): Promise<string[]> => {
      try {
        const live = await members.live(signal);
        this.membersListed = true;
        return live;
      } catch (err) {
        // Without `list` on Leases no replica of this identity can shard: an RBAC from before
        // sharding. The leader goes on as before, and says what a safe switch would need.
        if (isForbidden(err)) {
          this.membersListed = true;
          if (!listRefused) {
            listRefused = true;
            this.log.warn(
              { err: errorText(err) },
              'cannot list Leases: not looking for sharded replicas (grant `list` on leases before turning sharding on)',
            );
          }
          return [];
        }
        this.membersListed = false;
        this.log.warn({ err: errorText(err) }, 'could not list the sharded replicas; waiting');
        return ['(unknown)'];
      }
    };
    while (!signal.aborted) {
      let live = await alive();
      if (live.length === 0) {
        if (!(await elector.acquire(signal))) return false;
        live = await alive();
        if (live.length === 0) return true;
        await elector.release();
      }
      this.log.info({ group, replicas: live }, 'sharded replicas are alive: standing by');
      await sleep(election.retryPeriodMs, undefined, { signal }).catch(() => undefined);
    }
    return false;
  }

  private shardingChecks(leases: BucketLeases): Record<string, Check> {
    return {
      'bucket-leases': () => leases.healthy || 'the bucket Leases could not be listed',
      'buckets-synced': () => {
        const filling = this.buckets?.filling ?? [];
        return filling.length === 0 || `caches of buckets ${filling.join(', ')} filling`;
      },
    };
  }

  private shardedCaches(): ShardedCache<KubeObject>[] {
    return this.controllers.flatMap((c) => c.sharded.map((p) => p.cache));
  }

  /**
   * A watched resource cached by bucket: the primary one through `shardSelector` on its uid
   * (filtered here too, for a server that ignores it), one it owns by its owner's slot label.
   */
  private shardedCache(
    w: Watched,
    { bucketCount }: ShardingOptions,
  ): BucketController['caches'][number] {
    const primary = w.mapping.kind === 'primary';
    const bucketOfObject = (object: KubeObject): number | undefined => {
      if (!primary) return bucketOfSlot(object.metadata.labels?.[SLOT_LABEL], bucketCount);
      return object.metadata.uid === undefined
        ? undefined
        : bucketOf(object.metadata.uid, bucketCount);
    };
    return {
      cache: new ShardedCache<KubeObject>(w.name, bucketOfObject),
      groupFor: (bucket) => {
        const filter = bucketFilter([bucket], bucketCount, SLOT_LABEL);
        const { labelSelector } = w.watch;
        return this.newInformerGroup(
          w,
          primary
            ? {
                shardSelector: filter.shardSelector,
                keep: (o) => filter.matches(o.metadata.uid ?? ''),
              }
            : {
                labelSelector: labelSelector
                  ? `${labelSelector},${filter.labelSelector}`
                  : filter.labelSelector,
              },
        );
      },
    };
  }

  private bucketLeases(sharding: ShardingOptions): BucketLeases {
    const log = this.options.log('sharding');
    const leases: BucketLeases = new BucketLeases({
      ...sharding,
      client: this.client,
      listener: {
        started: (bucket) => {
          log.info({ bucket }, 'bucket taken: filling its caches');
          this.buckets?.start(bucket);
        },
        stopping: (bucket) => {
          log.info({ bucket }, 'bucket handed over: draining its reconciles');
          void this.buckets?.stop(bucket, true).then(() => {
            leases.drained(bucket);
          });
        },
        lost: (bucket) => {
          log.warn({ bucket }, 'bucket lost: its Lease was not renewed in time; stopping its work');
          void this.buckets?.stop(bucket, false);
        },
      },
      onError: (message, err) => {
        log.warn({ err: errorText(err) }, message);
      },
    });
    return leases;
  }

  private leadershipLost(): void {
    const election = this.options.leaderElection;
    if (this.options.onLeadershipLost) {
      this.options.onLeadershipLost();
      return;
    }
    // Another replica may lead already: stop writing now, as client-go's callers do.
    this.log.error(
      { lease: election?.leaseName, renewDeadlineSeconds: (election?.renewDeadlineMs ?? 0) / 1000 },
      'leadership lost: the lease could not be renewed in time; exiting',
    );
    process.exit(1);
  }

  private groups(): InformerGroup<KubeObject>[] {
    return [...this.informers.values()];
  }

  /**
   * The informers of a declared resource: shared with any controller that declared the same
   * resource, selector and transforms (an own write's echo is dropped for every one of them).
   */
  private informerFor({ name, type, watch }: Watched): InformerGroup<KubeObject> {
    const shareKey = `${type.apiVersion}/${type.plural}?${watch.labelSelector ?? ''}`;
    const shared = this.informers.get(shareKey);
    if (shared) {
      if (shared.name !== name || shared.options.transform !== watch.transform) {
        throw new Error(
          `${name}: ${type.plural} with selector "${watch.labelSelector ?? ''}" is cached already as ${shared.name}, with other options`,
        );
      }
      return shared;
    }
    const group = this.newInformerGroup({ name, type, watch });
    this.informers.set(shareKey, group);
    return group;
  }

  /** The informers of a declared resource, narrowed by `narrow` when given (a bucket's). */
  private newInformerGroup(
    { name, type, watch }: Pick<Watched, 'name' | 'type' | 'watch'>,
    narrow: {
      labelSelector?: string;
      shardSelector?: string;
      keep?: (o: KubeObject) => boolean;
    } = {},
  ): InformerGroup<KubeObject> {
    const { client } = this;
    const log = this.options.log('informer');
    const metrics = both(
      this.metrics?.informerObserver(name),
      this.options.observers?.informer?.(name),
    );
    return new InformerGroup<KubeObject>(
      this.options.namespaces,
      (ns) => collectionPath(type, ns),
      {
        client,
        name,
        ...(watch.labelSelector ? { labelSelector: watch.labelSelector } : {}),
        ...narrow,
        ...(watch.transform ? { transform: watch.transform } : {}),
        ...(watch.protobuf ? { protobuf: watch.protobuf } : {}),
        ...(this.options.watchTimeoutSeconds
          ? { watchTimeoutSeconds: this.options.watchTimeoutSeconds }
          : {}),
        ...(this.options.idleTimeoutMs ? { idleTimeoutMs: this.options.idleTimeoutMs } : {}),
        onError: (message, err) => {
          log.warn({ err: errorText(err) }, message);
          // A resource gone under a running operator (a CRD deleted): say so plainly.
          if (watch.notServed && err instanceof ApiError && err.code === 404) {
            log.error(watch.notServed(client.server.origin));
          }
        },
        observer: {
          ...metrics,
          relisted: () => {
            // Rare and costly (a full list): worth a line, not only a counter.
            log.info({ informer: name }, 'resourceVersion compacted away (410 Gone): relisting');
            metrics?.relisted?.();
          },
          protobufRefused: (err) => {
            log.warn(
              { informer: name, err: errorText(err) },
              "could not decode the API server's protobuf: watching in JSON",
            );
          },
          watchListRefused: (err) => {
            log.info(
              { informer: name, err: errorText(err) },
              'the API server does not stream lists (WatchList): listing in pages',
            );
          },
        },
      },
    );
  }

  /**
   * What stops the controllers from starting, in words a person can act on, or undefined when the
   * API server answers and serves every resource a declaration says how to install (notServed).
   */
  private async startupProblem(signal: AbortSignal): Promise<string | undefined> {
    const origin = this.client.server.origin;
    const installable = this.controllers.flatMap((c) =>
      c.declaration.watched.filter((w) => w.watch.notServed),
    );
    // Without one, the API server's version answers whether it is reachable and accepts us.
    const probes = installable.length > 0 ? installable : [undefined];
    for (const w of probes) {
      const path = w ? groupVersionPath(w.type) : '/version';
      let answer: { resources?: { name: string }[] };
      try {
        answer = await this.client.request({ path, signal });
      } catch (err) {
        if (err instanceof ApiError && err.code === 404 && w?.watch.notServed) {
          return w.watch.notServed(origin);
        }
        if (err instanceof ApiError && err.code === 401) {
          return `${origin} rejected the operator's credentials (401 Unauthorized)`;
        }
        if (err instanceof ApiError) return errorText(err);
        return `cannot reach the API server at ${origin}: ${errorText(err)}`;
      }
      if (w && !answer.resources?.some((r) => r.name === w.type.plural)) {
        return `${w.type.apiVersion} is served but has no ${w.type.plural} resource: is the CRD installed?`;
      }
    }
    return undefined;
  }

  /**
   * Waits, with the informers' backoff (0.8 s doubling to 30 s, jittered), until the API server
   * answers and the resources are installed. In a pod, exiting would only trade this wait for a
   * crash loop.
   */
  private async waitForApiServer(signal: AbortSignal): Promise<void> {
    for (let retry = 0; ; retry++) {
      const problem = await this.startupProblem(signal);
      if (problem === undefined || signal.aborted) return;
      const wait = retryDelay(DEFAULT_BACKOFF, retry, Math.random());
      this.log.warn({ retryInSeconds: Math.round(wait / 100) / 10 }, `waiting: ${problem}`);
      await sleep(wait, undefined, { signal }).catch(() => undefined);
    }
  }

  private eventRecorder(reportingController: string): EventRecorder {
    return new EventRecorder({
      client: this.client,
      controller: reportingController,
      instance: this.options.instance,
      onError: (err) => {
        this.options.log('events').warn({ err: errorText(err) }, 'could not record an Event');
      },
    });
  }

  /**
   * The Lease elector. Leadership changes are logged, and recorded as Events about the Lease as
   * client-go does: `kubectl get events` in the lease's namespace tells who led when.
   */
  private leaderElector(election: LeaderElectionOptions): LeaderElector {
    const { identity, leaseName } = election;
    const log = this.log;
    const elector: LeaderElector = new LeaderElector({
      ...election,
      client: this.client,
      name: leaseName,
      onLeading: (leading) => {
        if (leading) log.info({ lease: leaseName }, 'became leader: reconciling');
        const lease = elector.leaseReference;
        if (lease) {
          this.recorder.record(
            lease,
            'Normal',
            'LeaderElection',
            leading ? 'Acquire' : 'Release',
            `${identity} ${leading ? 'became leader' : 'stopped leading'}`,
          );
        }
      },
      onHolder: (holder) => {
        log.info({ lease: leaseName, holder: holder || 'nobody' }, 'lease holder');
      },
      onError: (message, err) => {
        this.options.log('leader-election').warn({ err: errorText(err) }, message);
      },
    });
    return elector;
  }
}

const EMPTY_STATS: AssignmentStats = {
  held: 0,
  draining: 0,
  acquired: 0,
  takeovers: 0,
  handovers: 0,
  lost: 0,
};

/** One observer that tells both of each call. */
function both<O extends object>(a: O | undefined, b: O | undefined): O | undefined {
  if (!a || !b) return a ?? b;
  const merged: Record<string, (...args: unknown[]) => void> = {};
  for (const name of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const fa = (a as Record<string, ((...args: unknown[]) => void) | undefined>)[name];
    const fb = (b as Record<string, ((...args: unknown[]) => void) | undefined>)[name];
    merged[name] = (...args) => {
      fa?.(...args);
      fb?.(...args);
    };
  }
  return merged as O;
}
