// Prometheus metrics with prom-client. The controller and work-queue series carry
// controller-runtime's names and labels, so dashboards built for Go operators work unchanged; the
// operator's own series share the `echo_operator_` prefix. Every metric is registered twice, in a
// Prometheus-text registry and an OpenMetrics one, and /metrics answers in the format asked for.
import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type OpenMetricsContentType,
  type RegistryContentType,
} from 'prom-client';
import type { ResponseEvent } from '../kube/client.ts';
import type { ControllerObserver, ReconcileOutcome } from '../runtime/controller.ts';
import type { InformerObserver } from '../runtime/informer.ts';
import type { QueueObserver, WorkQueue } from '../runtime/workqueue.ts';

const PREFIX = 'echo_operator_';
/** controller-runtime's reconcile buckets: 5 ms to 60 s. */
const RECONCILE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60];
/** client-go's request latency buckets. */
const REQUEST_BUCKETS = [0.005, 0.025, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60];
const NON_COUNTER_TOTALS = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];
/** client-go's work-queue buckets: 1 µs to 10 s, by decades. */
const QUEUE_BUCKETS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1, 10];

export interface MetricsSources {
  controller: string;
  concurrency: number;
  queue: () => WorkQueue;
  /** Objects in each informer's cache. */
  cacheSizes: () => Record<string, number>;
  /** The readiness checks pass: what /readyz answers. */
  ready: () => boolean;
  server: string;
  /** With leader election: the lease's name, and whether this replica holds it. */
  leader?: { name: string; leading: () => boolean };
}

export class Metrics {
  readonly text = new Registry();
  readonly openMetrics = new Registry<OpenMetricsContentType>();
  private readonly controller: string;

  private readonly reconcileTotal: Counter<'controller' | 'result'>;
  private readonly reconcileErrors: Counter<'controller'>;
  private readonly reconcileTime: Histogram<'controller'>;
  private readonly activeWorkers: Gauge<'controller'>;
  private readonly queueAdds: Counter<'name' | 'controller'>;
  private readonly queueRetries: Counter<'name' | 'controller'>;
  private readonly queueDuration: Histogram<'name' | 'controller'>;
  private readonly workDuration: Histogram<'name' | 'controller'>;
  private readonly restRequests: Counter<'code' | 'method' | 'host'>;
  private readonly kubeRequests: Counter<'verb' | 'resource' | 'path' | 'code'>;
  private readonly kubeLatency: Histogram<'verb' | 'resource'>;
  private readonly watches: Counter<'informer'>;
  private readonly watchFailures: Counter<'informer'>;
  private readonly relists: Counter<'informer'>;
  private readonly recreates: Counter;
  private readonly desiredReplicas: Gauge<'namespace' | 'name'>;
  private readonly host: string;
  private rendering: Promise<void> = Promise.resolve();

  constructor(sources: MetricsSources) {
    this.openMetrics.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const registers: Registry<RegistryContentType>[] = [this.text, this.openMetrics];
    this.controller = sources.controller;
    this.host = new URL(sources.server).host;
    for (const register of registers) {
      collectDefaultMetrics({ register });
      // Gauges that prom-client names with a `_total` suffix, which Prometheus keeps for counters.
      for (const name of NON_COUNTER_TOTALS) register.removeSingleMetric(name);
    }

    this.reconcileTotal = new Counter({
      name: 'controller_runtime_reconcile_total',
      help: 'Total number of reconciliations per controller',
      labelNames: ['controller', 'result'],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: 'controller_runtime_reconcile_errors_total',
      help: 'Total number of reconciliation errors per controller',
      labelNames: ['controller'],
      registers,
    });
    // Exemplars (the trace of a reconcile in each bucket) exist only in OpenMetrics; prom-client
    // refuses them in a text registry's constructor, though the text rendering just leaves them out.
    this.reconcileTime = new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'],
      buckets: RECONCILE_BUCKETS,
      enableExemplars: true,
      registers: [this.openMetrics],
    });
    this.text.registerMetric(this.reconcileTime);
    this.activeWorkers = new Gauge({
      name: 'controller_runtime_active_workers',
      help: 'Number of currently used workers per controller',
      labelNames: ['controller'],
      registers,
    });
    new Gauge({
      name: 'controller_runtime_max_concurrent_reconciles',
      help: 'Maximum number of concurrent reconciles per controller',
      labelNames: ['controller'],
      registers,
    }).set({ controller: this.controller }, sources.concurrency);

    const queueLabels = { name: this.controller, controller: this.controller };
    new Gauge({
      name: 'workqueue_depth',
      help: 'Current depth of workqueue',
      labelNames: ['name', 'controller'],
      registers,
      collect() {
        this.set(queueLabels, sources.queue().length);
      },
    });
    new Gauge({
      name: 'workqueue_unfinished_work_seconds',
      help: 'How many seconds of work has been done that is in progress and hasn’t been observed by work_duration',
      labelNames: ['name', 'controller'],
      registers,
      collect() {
        this.set(queueLabels, sources.queue().runningSeconds().total);
      },
    });
    new Gauge({
      name: 'workqueue_longest_running_processor_seconds',
      help: 'How many seconds has the longest running processor for workqueue been running',
      labelNames: ['name', 'controller'],
      registers,
      collect() {
        this.set(queueLabels, sources.queue().runningSeconds().longest);
      },
    });
    this.queueAdds = new Counter({
      name: 'workqueue_adds_total',
      help: 'Total number of adds handled by workqueue',
      labelNames: ['name', 'controller'],
      registers,
    });
    this.queueRetries = new Counter({
      name: 'workqueue_retries_total',
      help: 'Total number of retries handled by workqueue',
      labelNames: ['name', 'controller'],
      registers,
    });
    this.queueDuration = new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames: ['name', 'controller'],
      buckets: QUEUE_BUCKETS,
      registers,
    });
    this.workDuration = new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes',
      labelNames: ['name', 'controller'],
      buckets: QUEUE_BUCKETS,
      registers,
    });

    this.restRequests = new Counter({
      name: 'rest_client_requests_total',
      help: 'Number of HTTP requests, partitioned by status code, method, and host',
      labelNames: ['code', 'method', 'host'],
      registers,
    });
    this.kubeRequests = new Counter({
      name: `${PREFIX}kubernetes_requests_total`,
      help: 'Kubernetes API requests by verb, resource, path template and status code (0: no response)',
      labelNames: ['verb', 'resource', 'path', 'code'],
      registers,
    });
    this.kubeLatency = new Histogram({
      name: `${PREFIX}kubernetes_request_duration_seconds`,
      help: 'Kubernetes API request latency until the response headers, by verb and resource',
      labelNames: ['verb', 'resource'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.watches = new Counter({
      name: `${PREFIX}informer_watches_total`,
      help: 'Watches started by each informer: the first, every restart, and attempts that failed',
      labelNames: ['informer'],
      registers,
    });
    this.watchFailures = new Counter({
      name: `${PREFIX}informer_failures_total`,
      help: 'Lists and watches that failed and were retried with backoff',
      labelNames: ['informer'],
      registers,
    });
    this.relists = new Counter({
      name: `${PREFIX}informer_relists_total`,
      help: 'Full relists forced by 410 Gone (a resourceVersion too old to resume from)',
      labelNames: ['informer'],
      registers,
    });
    new Gauge({
      name: `${PREFIX}informer_objects`,
      help: 'Objects held in each informer cache',
      labelNames: ['informer'],
      registers,
      collect() {
        for (const [informer, size] of Object.entries(sources.cacheSizes()))
          this.set({ informer }, size);
      },
    });
    this.recreates = new Counter({
      name: `${PREFIX}deployment_recreates_total`,
      help: 'Deployments deleted and created again because an immutable field differed',
      registers,
    });
    this.desiredReplicas = new Gauge({
      name: `${PREFIX}echo_desired_replicas`,
      help: 'spec.replicas of each Echo; the series goes when the Echo does',
      labelNames: ['namespace', 'name'],
      registers,
    });
    new Gauge({
      name: `${PREFIX}ready`,
      help: '1 while the readiness checks pass (caches synced and connected, credentials accepted), else 0',
      registers,
      collect() {
        this.set(sources.ready() ? 1 : 0);
      },
    });
    const leader = sources.leader;
    if (leader) {
      // client-go's name and meaning, so leader dashboards built for Go operators work unchanged.
      new Gauge({
        name: 'leader_election_master_status',
        help: 'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master',
        labelNames: ['name'],
        registers,
        collect() {
          this.set({ name: leader.name }, leader.leading() ? 1 : 0);
        },
      });
    }
  }

  readonly onResponse = (e: ResponseEvent): void => {
    const code = String(e.code);
    this.restRequests.inc({ code, method: e.method, host: this.host });
    this.kubeRequests.inc({ verb: e.verb, resource: e.resource, path: e.pathTemplate, code });
    this.kubeLatency.observe({ verb: e.verb, resource: e.resource }, e.durationSeconds);
  };

  queueObserver(): QueueObserver {
    const labels = { name: this.controller, controller: this.controller };
    this.queueAdds.inc(labels, 0);
    this.queueRetries.inc(labels, 0);
    return {
      added: () => {
        this.queueAdds.inc(labels);
      },
      started: (wait) => {
        this.queueDuration.observe(labels, wait);
      },
      finished: (work) => {
        this.workDuration.observe(labels, work);
      },
      retried: () => {
        this.queueRetries.inc(labels);
      },
    };
  }

  controllerObserver(): ControllerObserver {
    const labels = { controller: this.controller };
    // As controller-runtime does: every result and the error count exist at zero from the start.
    for (const result of ['success', 'requeue_after', 'error'] satisfies ReconcileOutcome[])
      this.reconcileTotal.inc({ ...labels, result }, 0);
    this.reconcileErrors.inc(labels, 0);
    return {
      reconciled: (outcome: ReconcileOutcome, seconds: number, traceId?: string) => {
        this.reconcileTotal.inc({ ...labels, result: outcome });
        if (outcome === 'error') this.reconcileErrors.inc(labels);
        this.reconcileTime.observe({
          labels,
          value: seconds,
          // prom-client types exemplar labels as metric labels; they are a separate set.
          ...(traceId ? { exemplarLabels: { trace_id: traceId } as object } : {}),
        });
      },
      activeWorkers: (count) => {
        this.activeWorkers.set(labels, count);
      },
    };
  }

  informerObserver(informer: string): InformerObserver {
    // Zero from the start, so rate() and alerts see the series before the first failure.
    for (const counter of [this.watches, this.watchFailures, this.relists])
      counter.inc({ informer }, 0);
    return {
      watchStarted: () => {
        this.watches.inc({ informer });
      },
      failed: () => {
        this.watchFailures.inc({ informer });
      },
      relisted: () => {
        this.relists.inc({ informer });
      },
    };
  }

  readonly recreated = (): void => {
    this.recreates.inc();
  };

  /** Sets the desired-replicas series of an Echo, or removes it (undefined) once the Echo is gone. */
  readonly desired = (key: string, replicas: number | undefined): void => {
    const [namespace = '', name = ''] = key.split('/');
    if (replicas === undefined) this.desiredReplicas.remove({ namespace, name });
    else this.desiredReplicas.set({ namespace, name }, replicas);
  };

  /** The exposition in the format the Accept header prefers: OpenMetrics if asked for. */
  render(accept: string | undefined): Promise<{ contentType: string; body: string }> {
    // One render at a time: an OpenMetrics render renames counters while it runs (below).
    const next = this.rendering.then(() => this.renderNow(accept));
    this.rendering = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private async renderNow(
    accept: string | undefined,
  ): Promise<{ contentType: string; body: string }> {
    if (!accept?.includes('application/openmetrics-text')) {
      return { contentType: this.text.contentType, body: await this.text.metrics() };
    }
    // prom-client's OpenMetrics rendering strips `_total` from the name of each counter object it
    // renders, in place; the objects are shared with the text registry, so put the names back.
    const names = this.openMetrics.getMetricsAsArray().map((m) => [m, m.name] as const);
    try {
      return { contentType: this.openMetrics.contentType, body: await this.openMetrics.metrics() };
    } finally {
      for (const [metric, name] of names) (metric as { name: string }).name = name;
    }
  }
}
