// Wires the Echo domain into the generic runtime: two informer groups (Echoes, and the
// Deployments the operator manages), a work queue, the controller, the reconciler, Events.
import { isDeepStrictEqual } from 'node:util';
import type { KubeClient } from './kube/client.ts';
import { API_VERSION, GROUP, KIND, PLURAL, type Echo } from './echo/api.ts';
import { isNotFound } from './kube/errors.ts';
import { MANAGED_BY_SELECTOR } from './echo/desired.ts';
import { trimDeployment, trimEcho, type CachedDeployment } from './echo/cache.ts';
import { echoReconciler } from './echo/reconciler.ts';
import { Controller, controllerOwnerKey, type ControllerObserver } from './runtime/controller.ts';
import { EventRecorder } from './runtime/events.ts';
import { InformerGroup, objectKey, type InformerObserver } from './runtime/informer.ts';
import { WorkQueue, type QueueObserver } from './runtime/workqueue.ts';
import type { Logger } from './telemetry/logger.ts';
import type { Tracer } from './telemetry/tracing.ts';

export interface OperatorOptions {
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
  onRecreate?: () => void;
  onDesiredReplicas?: (key: string, replicas: number | undefined) => void;
  /** Informer timeouts, shortened by tests that cut the API server off. */
  watchTimeoutSeconds?: number;
  idleTimeoutMs?: number;
  /** Tracing on: a span per reconcile. */
  tracer?: Tracer;
}

export const CONTROLLER_NAME = 'echo';

export class EchoOperator {
  readonly echoes: InformerGroup<Echo>;
  readonly deployments: InformerGroup<CachedDeployment>;
  readonly queue: WorkQueue;
  readonly recorder: EventRecorder;
  private readonly controller: Controller;
  private readonly options: OperatorOptions;
  /** Events queue work only while leading: a standby keeps its caches warm and writes nothing. */
  private leading = false;

  constructor(options: OperatorOptions) {
    this.options = options;
    const { client, namespaces } = options;
    const informerLog = options.log('informer');
    const common = {
      client,
      ...(options.watchTimeoutSeconds ? { watchTimeoutSeconds: options.watchTimeoutSeconds } : {}),
      ...(options.idleTimeoutMs ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
      onError: (message: string, err: unknown) => {
        informerLog.warn({ err: errorText(err) }, message);
      },
    };
    const observe = (informer: string): InformerObserver => {
      const metrics = options.informerObserver?.(informer);
      return {
        ...metrics,
        relisted: () => {
          // Rare and costly (a full list): worth a line, not only a counter.
          informerLog.info({ informer }, 'resourceVersion compacted away (410 Gone): relisting');
          metrics?.relisted?.();
        },
      };
    };
    this.echoes = new InformerGroup<Echo>(
      namespaces,
      (ns) =>
        ns ? `/apis/${API_VERSION}/namespaces/${ns}/${PLURAL}` : `/apis/${API_VERSION}/${PLURAL}`,
      {
        ...common,
        name: PLURAL,
        onError: (message, err) => {
          common.onError(message, err);
          // The CRD went away under a running operator: say so plainly; the informer keeps trying.
          if (isNotFound(err)) informerLog.error(crdMissing(client.server.origin));
        },
        transform: trimEcho,
        observer: observe(PLURAL),
      },
    );
    this.deployments = new InformerGroup<CachedDeployment>(
      namespaces,
      (ns) => (ns ? `/apis/apps/v1/namespaces/${ns}/deployments` : '/apis/apps/v1/deployments'),
      {
        ...common,
        name: 'deployments',
        labelSelector: MANAGED_BY_SELECTOR,
        transform: trimDeployment,
        observer: observe('deployments'),
      },
    );
    this.queue = new WorkQueue(undefined, options.queueObserver);
    this.recorder = new EventRecorder({
      client,
      controller: `${API_VERSION.split('/')[0] ?? ''}/echo-operator`,
      instance: options.instance,
      onError: (err) => {
        options.log('events').warn({ err: errorText(err) }, 'could not record an Event');
      },
    });

    // The watch's copy of the operator's own write changes nothing: reconciles already read it.
    this.echoes.onEvent((e) => {
      if (!this.leading || e.ownWrite) return;
      if (e.type === 'update' && !echoChanged(e.old, e.object)) return;
      this.queue.add(objectKey(e.object));
    });
    // A Deployment event wakes only the Echo that controls it, or did before the change: a hand
    // edit that removes or replaces the owner reference must be undone by the Echo that lost it.
    const echoKind = { apiVersion: API_VERSION, kind: KIND };
    this.deployments.onEvent((e) => {
      if (!this.leading || e.ownWrite) return;
      const owner = controllerOwnerKey(e.object, echoKind);
      if (owner) this.queue.add(owner);
      const previous = e.type === 'update' ? controllerOwnerKey(e.old, echoKind) : undefined;
      if (previous && previous !== owner) this.queue.add(previous);
    });

    const controllerLog = options.log('controller');
    this.controller = new Controller({
      name: CONTROLLER_NAME,
      queue: this.queue,
      primary: this.echoes,
      informers: [this.echoes, this.deployments],
      concurrency: options.concurrency,
      resyncMs: options.resyncMs,
      reconcile: echoReconciler({
        client,
        echoes: this.echoes,
        deployments: this.deployments,
        recorder: this.recorder,
        log: options.log('reconciler'),
        ...(options.onRecreate ? { onRecreate: options.onRecreate } : {}),
        ...(options.onDesiredReplicas ? { onDesiredReplicas: options.onDesiredReplicas } : {}),
      }),
      ...(options.controllerObserver ? { observer: options.controllerObserver } : {}),
      ...(options.tracer ? { tracer: options.tracer } : {}),
      onError: (key, err, retries) => {
        controllerLog.warn(
          { echo: key, retries, err: errorText(err) },
          'reconcile failed; retrying with backoff',
        );
      },
    });
  }

  /** True once both caches hold a complete list. */
  get synced(): boolean {
    return this.echoes.synced && this.deployments.synced;
  }

  /** False while a list or watch is failing (the API server unreachable, the CRD gone, 401). */
  get connected(): boolean {
    return this.echoes.connected && this.deployments.connected;
  }

  /** Re-queues every Echo now: what the periodic resync does, on demand. */
  resync(): void {
    for (const key of this.echoes.keys()) this.queue.add(key);
  }

  /**
   * Runs until `signal` aborts; in-flight reconciles and Events finish first. The caches fill at
   * once; reconciling starts when `elected` resolves true (at once without leader election), with
   * every cached Echo queued, as a new leader must check what happened while it stood by.
   */
  async run(signal: AbortSignal, elected: Promise<boolean> = Promise.resolve(true)): Promise<void> {
    const log = this.options.log('operator');
    const informers = Promise.all([this.echoes.run(signal), this.deployments.run(signal)]);
    void this.echoes.whenSynced().then(async () => {
      await this.deployments.whenSynced();
      log.info({ echoes: this.echoes.size, deployments: this.deployments.size }, 'caches synced');
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
}

/**
 * Whether an Echo update needs a reconcile: a change of spec, labels or deletion, or of status
 * (the operator's own status writes arrive flagged `ownWrite` and are dropped before this): a
 * status edited by someone else, or changed while a watch was down, is put right at once.
 */
export function echoChanged(old: Echo, next: Echo): boolean {
  return (
    old.metadata.generation !== next.metadata.generation ||
    old.metadata.deletionTimestamp !== next.metadata.deletionTimestamp ||
    !isDeepStrictEqual(old.metadata.labels ?? {}, next.metadata.labels ?? {}) ||
    !isDeepStrictEqual(old.status ?? {}, next.status ?? {})
  );
}

export function crdMissing(server: string): string {
  return (
    `the Echo CRD (${PLURAL}.${GROUP}) is not installed in ${server}: ` +
    'kubectl apply -f charts/echo-operator/crds/'
  );
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
