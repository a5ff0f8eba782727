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
import type { ControllerObserver, ReconcileOutcome } from './controller.ts';
import type { InformerObserver } from './cache/informer.ts';
import type { QueueObserver, WorkQueue } from './workqueue.ts';

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
/**
 * How often the event loop's delay is sampled (`nodejs_eventloop_lag_*`). prom-client's 10 ms
 * woke an idle operator 100 times a second: 5 ms of CPU each second, more than all the rest of
 * its idle work (docs/benchmark.md, "CPU at rest, found in a profile"). Ten samples a second
 * still give a scrape hundreds.
 */
const EVENT_LOOP_SAMPLE_MS = 100;
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
  /** Connections open to the API server, and the most the client opens. */
  connections?: () => { open: number; max: number };
  /** With leader election: the lease's name, and whether this replica holds it. */
  leader?: { name: string; leading: () => boolean };
}

export class Metrics {
  readonly text = new Registry();
  readonly openMetrics = new Registry<OpenMetricsContentType>();
  private readonly controller: string;

  private readonly reconciles: ReconcileSeries;
  private readonly queue: QueueSeries;
  private readonly requests: RequestSeries;
  private readonly informers: InformerSeries;
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
      collectDefaultMetrics({ register, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
      // Gauges that prom-client names with a `_total` suffix, which Prometheus keeps for counters.
      for (const name of NON_COUNTER_TOTALS) register.removeSingleMetric(name);
    }
    this.reconciles = reconcileSeries(this.text, this.openMetrics, sources);
    this.queue = queueSeries(registers, sources);
    this.requests = requestSeries(registers);
    this.informers = informerSeries(registers, sources);
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
    readinessSeries(registers, sources);
  }

  readonly onResponse = (e: ResponseEvent): void => {
    const code = String(e.code);
    this.requests.rest.inc({ code, method: e.method, host: this.host });
    this.requests.kube.inc({ verb: e.verb, resource: e.resource, path: e.pathTemplate, code });
    this.requests.latency.observe({ verb: e.verb, resource: e.resource }, e.durationSeconds);
  };

  queueObserver(): QueueObserver {
    const labels = { name: this.controller, controller: this.controller };
    this.queue.adds.inc(labels, 0);
    this.queue.retries.inc(labels, 0);
    return {
      added: () => {
        this.queue.adds.inc(labels);
      },
      started: (wait) => {
        this.queue.queueDuration.observe(labels, wait);
      },
      finished: (work) => {
        this.queue.workDuration.observe(labels, work);
      },
      retried: () => {
        this.queue.retries.inc(labels);
      },
    };
  }

  controllerObserver(): ControllerObserver {
    const labels = { controller: this.controller };
    // As controller-runtime does: every result and the error count exist at zero from the start.
    for (const result of ['success', 'requeue_after', 'error'] satisfies ReconcileOutcome[])
      this.reconciles.total.inc({ ...labels, result }, 0);
    this.reconciles.errors.inc(labels, 0);
    return {
      reconciled: (outcome: ReconcileOutcome, seconds: number, traceId?: string) => {
        this.reconciles.total.inc({ ...labels, result: outcome });
        if (outcome === 'error') this.reconciles.errors.inc(labels);
        this.reconciles.time.observe({
          labels,
          value: seconds,
          // prom-client types exemplar labels as metric labels; they are a separate set.
          ...(traceId ? { exemplarLabels: { trace_id: traceId } as object } : {}),
        });
      },
      activeWorkers: (count) => {
        this.reconciles.activeWorkers.set(labels, count);
      },
    };
  }

  informerObserver(informer: string): InformerObserver {
    // Zero from the start, so rate() and alerts see the series before the first failure.
    const { watches, failures, relists } = this.informers;
    for (const counter of [watches, failures, relists]) counter.inc({ informer }, 0);
    return {
      watchStarted: () => {
        watches.inc({ informer });
      },
      failed: () => {
        failures.inc({ informer });
      },
      relisted: () => {
        relists.inc({ informer });
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

type Registers = Registry<RegistryContentType>[];

/** controller-runtime's reconcile series. */
interface ReconcileSeries {
  total: Counter<'controller' | 'result'>;
  errors: Counter<'controller'>;
  time: Histogram<'controller'>;
  activeWorkers: Gauge<'controller'>;
}

function reconcileSeries(
  text: Registry,
  openMetrics: Registry<OpenMetricsContentType>,
  sources: MetricsSources,
): ReconcileSeries {
  const registers: Registers = [text, openMetrics];
  const controller = sources.controller;
  const total = new Counter({
    name: 'controller_runtime_reconcile_total',
    help: 'Total number of reconciliations per controller',
    labelNames: ['controller', 'result'],
    registers,
  });
  const errors = new Counter({
    name: 'controller_runtime_reconcile_errors_total',
    help: 'Total number of reconciliation errors per controller',
    labelNames: ['controller'],
    registers,
  });
  // Exemplars (the trace of a reconcile in each bucket) exist only in OpenMetrics; prom-client
  // refuses them in a text registry's constructor, though the text rendering just leaves them out.
  const time = new Histogram({
    name: 'controller_runtime_reconcile_time_seconds',
    help: 'Length of time per reconciliation per controller',
    labelNames: ['controller'],
    buckets: RECONCILE_BUCKETS,
    enableExemplars: true,
    registers: [openMetrics],
  });
  text.registerMetric(time);
  const activeWorkers = new Gauge({
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
  }).set({ controller }, sources.concurrency);
  return { total, errors, time, activeWorkers };
}

/** client-go's work-queue series, with controller-runtime's labels. */
interface QueueSeries {
  adds: Counter<'name' | 'controller'>;
  retries: Counter<'name' | 'controller'>;
  queueDuration: Histogram<'name' | 'controller'>;
  workDuration: Histogram<'name' | 'controller'>;
}

function queueSeries(registers: Registers, sources: MetricsSources): QueueSeries {
  const queueLabels = { name: sources.controller, controller: sources.controller };
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
  const adds = new Counter({
    name: 'workqueue_adds_total',
    help: 'Total number of adds handled by workqueue',
    labelNames: ['name', 'controller'],
    registers,
  });
  const retries = new Counter({
    name: 'workqueue_retries_total',
    help: 'Total number of retries handled by workqueue',
    labelNames: ['name', 'controller'],
    registers,
  });
  const queueDuration = new Histogram({
    name: 'workqueue_queue_duration_seconds',
    help: 'How long in seconds an item stays in workqueue before being requested',
    labelNames: ['name', 'controller'],
    buckets: QUEUE_BUCKETS,
    registers,
  });
  const workDuration = new Histogram({
    name: 'workqueue_work_duration_seconds',
    help: 'How long in seconds processing an item from workqueue takes',
    labelNames: ['name', 'controller'],
    buckets: QUEUE_BUCKETS,
    registers,
  });
  return { adds, retries, queueDuration, workDuration };
}

/** client-go's request counter, and the operator's own by verb, resource and path. */
interface RequestSeries {
  rest: Counter<'code' | 'method' | 'host'>;
  kube: Counter<'verb' | 'resource' | 'path' | 'code'>;
  latency: Histogram<'verb' | 'resource'>;
}

function requestSeries(registers: Registers): RequestSeries {
  const rest = new Counter({
    name: 'rest_client_requests_total',
    help: 'Number of HTTP requests, partitioned by status code, method, and host',
    labelNames: ['code', 'method', 'host'],
    registers,
  });
  const kube = new Counter({
    name: `${PREFIX}kubernetes_requests_total`,
    help: 'Kubernetes API requests by verb, resource, path template and status code (0: no response)',
    labelNames: ['verb', 'resource', 'path', 'code'],
    registers,
  });
  const latency = new Histogram({
    name: `${PREFIX}kubernetes_request_duration_seconds`,
    help: 'Kubernetes API request latency until the response headers, by verb and resource',
    labelNames: ['verb', 'resource'],
    buckets: REQUEST_BUCKETS,
    registers,
  });
  return { rest, kube, latency };
}

interface InformerSeries {
  watches: Counter<'informer'>;
  failures: Counter<'informer'>;
  relists: Counter<'informer'>;
}

function informerSeries(registers: Registers, sources: MetricsSources): InformerSeries {
  const watches = new Counter({
    name: `${PREFIX}informer_watches_total`,
    help: 'Watches started by each informer: the first, every restart, and attempts that failed',
    labelNames: ['informer'],
    registers,
  });
  const failures = new Counter({
    name: `${PREFIX}informer_failures_total`,
    help: 'Lists and watches that failed and were retried with backoff',
    labelNames: ['informer'],
    registers,
  });
  const relists = new Counter({
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
  return { watches, failures, relists };
}

/**
 * Readiness, the API server connections, and with leader election whether this replica leads:
 * read when scraped.
 */
function readinessSeries(registers: Registers, sources: MetricsSources): void {
  const connections = sources.connections;
  if (connections) {
    new Gauge({
      name: `${PREFIX}kubernetes_connections`,
      help: 'HTTP connections open to the API server (HTTP/2: up to 100 streams each)',
      registers,
      collect() {
        this.set(connections().open);
      },
    });
    new Gauge({
      name: `${PREFIX}kubernetes_connections_max`,
      help: 'The most HTTP connections the client opens to the API server, from the watch count',
      registers,
      collect() {
        this.set(connections().max);
      },
    });
  }
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
