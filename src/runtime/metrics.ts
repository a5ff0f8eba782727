// Prometheus metrics with prom-client. The controller and work-queue series carry
// controller-runtime's names and labels, so dashboards built for Go operators work unchanged; the
// runtime's own series share a prefix (the operator's: `echo_operator_`). Every metric is registered twice, in a
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
import type { AssignmentStats } from './sharding/assignment.ts';
import { DEFAULT_AGING_MS, Priority, type QueueObserver, type WorkQueue } from './workqueue.ts';

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
 * default is most of an idle operator's CPU (docs/benchmark.md, "CPU at rest, found in a
 * profile"); ten samples a second still give a scrape hundreds.
 */
const EVENT_LOOP_SAMPLE_MS = 100;
/**
 * controller-runtime's work-queue buckets (10 ns to 1000 s, by decades), and the queue's aging
 * bound: `workqueue_queue_duration_seconds` then counts the items that waited past it.
 */
const QUEUE_BUCKETS = [
  1e-8,
  1e-7,
  1e-6,
  1e-5,
  1e-4,
  1e-3,
  1e-2,
  1e-1,
  1,
  10,
  100,
  1000,
  DEFAULT_AGING_MS / 1000,
].sort((a, b) => a - b);

export interface MetricsSources {
  /** Of the runtime's own series (informers, requests, readiness), e.g. `echo_operator_`. */
  prefix: string;
  /** Each controller's work queue, by controller name. */
  queues: () => ReadonlyMap<string, WorkQueue>;
  /** Objects in each informer's cache. */
  cacheSizes: () => Record<string, number>;
  /** The readiness checks pass: what /readyz answers. */
  ready: () => boolean;
  server: string;
  /** Connections open to the API server, and the most the client opens. */
  connections?: () => { open: number; max: number };
  /** With leader election: the lease's name, and whether this replica holds it. */
  leader?: { name: string; leading: () => boolean };
  /** With sharding: what the bucket Leases say, and the primary objects of each bucket held. */
  sharding?: { stats: () => AssignmentStats; objects: () => ReadonlyMap<number, number> };
}

export class Metrics {
  readonly text = new Registry();
  readonly openMetrics = new Registry<OpenMetricsContentType>();
  readonly prefix: string;

  private readonly reconciles: ReconcileSeries;
  private readonly queue: QueueSeries;
  private readonly requests: RequestSeries;
  private readonly informers: InformerSeries;
  private readonly host: string;
  private rendering: Promise<void> = Promise.resolve();

  constructor(sources: MetricsSources) {
    this.openMetrics.setContentType(Registry.OPENMETRICS_CONTENT_TYPE);
    const registers: Registry<RegistryContentType>[] = [this.text, this.openMetrics];
    this.prefix = sources.prefix;
    this.host = new URL(sources.server).host;
    for (const register of registers) {
      collectDefaultMetrics({ register, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
      // Gauges that prom-client names with a `_total` suffix, which Prometheus keeps for counters.
      for (const name of NON_COUNTER_TOTALS) register.removeSingleMetric(name);
    }
    this.reconciles = reconcileSeries(this.text, this.openMetrics);
    this.queue = queueSeries(registers, sources);
    this.requests = requestSeries(registers, sources.prefix);
    this.informers = informerSeries(registers, sources);
    readinessSeries(registers, sources);
    if (sources.sharding) shardingSeries(registers, sources.prefix, sources.sharding);
  }

  readonly onResponse = (e: ResponseEvent): void => {
    const code = String(e.code);
    this.requests.rest.inc({ code, method: e.method, host: this.host });
    this.requests.kube.inc({ verb: e.verb, resource: e.resource, path: e.pathTemplate, code });
    this.requests.latency.observe({ verb: e.verb, resource: e.resource }, e.durationSeconds);
  };

  /** Both registries: where a controller registers series of its own. */
  get registers(): Registry<RegistryContentType>[] {
    return [this.text, this.openMetrics];
  }

  queueObserver(controller: string): QueueObserver {
    const labels = { name: controller, controller };
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

  controllerObserver(controller: string, concurrency: number): ControllerObserver {
    const labels = { controller };
    this.reconciles.maxWorkers.set(labels, concurrency);
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
    const { watches, failures, relists, events } = this.informers;
    for (const counter of [watches, failures, relists]) counter.inc({ informer }, 0);
    return {
      received: (type) => {
        events.inc({ informer, type: type.toLowerCase() });
      },
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
  maxWorkers: Gauge<'controller'>;
}

function reconcileSeries(
  text: Registry,
  openMetrics: Registry<OpenMetricsContentType>,
): ReconcileSeries {
  const registers: Registers = [text, openMetrics];
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
  const maxWorkers = new Gauge({
    name: 'controller_runtime_max_concurrent_reconciles',
    help: 'Maximum number of concurrent reconciles per controller',
    labelNames: ['controller'],
    registers,
  });
  return { total, errors, time, activeWorkers, maxWorkers };
}

/** client-go's work-queue series, with controller-runtime's labels. */
interface QueueSeries {
  adds: Counter<'name' | 'controller'>;
  retries: Counter<'name' | 'controller'>;
  queueDuration: Histogram<'name' | 'controller'>;
  workDuration: Histogram<'name' | 'controller'>;
}

function queueSeries(registers: Registers, sources: MetricsSources): QueueSeries {
  /** Sets `gauge` for each controller's queue from `read`. */
  const each = (gauge: Gauge<'name' | 'controller'>, read: (queue: WorkQueue) => number) => {
    for (const [controller, queue] of sources.queues()) {
      gauge.set({ name: controller, controller }, read(queue));
    }
  };
  queuePrioritySeries(registers, sources);
  new Gauge({
    name: 'workqueue_unfinished_work_seconds',
    help: 'How many seconds of work has been done that is in progress and hasn’t been observed by work_duration',
    labelNames: ['name', 'controller'],
    registers,
    collect() {
      each(this, (queue) => queue.runningSeconds().total);
    },
  });
  new Gauge({
    name: 'workqueue_longest_running_processor_seconds',
    help: 'How many seconds has the longest running processor for workqueue been running',
    labelNames: ['name', 'controller'],
    registers,
    collect() {
      each(this, (queue) => queue.runningSeconds().longest);
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

/** The queue's series by priority: controller-runtime's depth, and our longest wait. */
function queuePrioritySeries(registers: Registers, sources: MetricsSources): void {
  /** Sets `gauge` for each controller's queue and priority from `read`. */
  const byPriority = (
    gauge: Gauge<'name' | 'controller' | 'priority'>,
    read: (queue: WorkQueue, priority: Priority) => number,
  ) => {
    for (const [controller, queue] of sources.queues()) {
      for (const priority of [Priority.normal, Priority.low]) {
        gauge.set(
          { name: controller, controller, priority: String(priority) },
          read(queue, priority),
        );
      }
    }
  };
  // controller-runtime's name, labels and values: priority "0" (events) and "-100" (replays).
  new Gauge({
    name: 'workqueue_depth',
    help: 'Current depth of workqueue by workqueue and priority',
    labelNames: ['name', 'controller', 'priority'],
    registers,
    collect() {
      byPriority(this, (queue, priority) => queue.depth(priority));
    },
  });
  new Gauge({
    name: `${sources.prefix}workqueue_longest_wait_seconds`,
    help: 'How long the key waiting longest at each priority has waited (0 when none waits)',
    labelNames: ['name', 'controller', 'priority'],
    registers,
    collect() {
      byPriority(this, (queue, priority) => queue.longestWaitSeconds(priority));
    },
  });
}

/** client-go's request counter, and the operator's own by verb, resource and path. */
interface RequestSeries {
  rest: Counter<'code' | 'method' | 'host'>;
  kube: Counter<'verb' | 'resource' | 'path' | 'code'>;
  latency: Histogram<'verb' | 'resource'>;
}

function requestSeries(registers: Registers, prefix: string): RequestSeries {
  const rest = new Counter({
    name: 'rest_client_requests_total',
    help: 'Number of HTTP requests, partitioned by status code, method, and host',
    labelNames: ['code', 'method', 'host'],
    registers,
  });
  const kube = new Counter({
    name: `${prefix}kubernetes_requests_total`,
    help: 'Kubernetes API requests by verb, resource, path template and status code (0: no response)',
    labelNames: ['verb', 'resource', 'path', 'code'],
    registers,
  });
  const latency = new Histogram({
    name: `${prefix}kubernetes_request_duration_seconds`,
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
  events: Counter<'informer' | 'type'>;
}

function informerSeries(registers: Registers, sources: MetricsSources): InformerSeries {
  const prefix = sources.prefix;
  const watches = new Counter({
    name: `${prefix}informer_watches_total`,
    help: 'Watches started by each informer: the first, every restart, and attempts that failed',
    labelNames: ['informer'],
    registers,
  });
  const failures = new Counter({
    name: `${prefix}informer_failures_total`,
    help: 'Lists and watches that failed and were retried with backoff',
    labelNames: ['informer'],
    registers,
  });
  const relists = new Counter({
    name: `${prefix}informer_relists_total`,
    help: 'Full relists forced by 410 Gone (a resourceVersion too old to resume from)',
    labelNames: ['informer'],
    registers,
  });
  new Gauge({
    name: `${prefix}informer_objects`,
    help: 'Objects held in each informer cache',
    labelNames: ['informer'],
    registers,
    collect() {
      for (const [informer, size] of Object.entries(sources.cacheSizes()))
        this.set({ informer }, size);
    },
  });
  // On a sharded replica, the Echo watch's share: what the API server sent, before any filter.
  const events = new Counter({
    name: `${prefix}informer_events_total`,
    help: 'Watch events received by each informer, by type (added, modified, deleted)',
    labelNames: ['informer', 'type'],
    registers,
  });
  return { watches, failures, relists, events };
}

/**
 * Readiness, the API server connections, and with leader election whether this replica leads:
 * read when scraped.
 */
function readinessSeries(registers: Registers, sources: MetricsSources): void {
  const prefix = sources.prefix;
  const connections = sources.connections;
  if (connections) {
    new Gauge({
      name: `${prefix}kubernetes_connections`,
      help: 'HTTP connections open to the API server (HTTP/2: up to 100 streams each)',
      registers,
      collect() {
        this.set(connections().open);
      },
    });
    new Gauge({
      name: `${prefix}kubernetes_connections_max`,
      help: 'The most HTTP connections the client opens to the API server, from the watch count',
      registers,
      collect() {
        this.set(connections().max);
      },
    });
  }
  new Gauge({
    name: `${prefix}ready`,
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

/** Sharding, read when scraped: the buckets this replica works on, and how they came and went. */
function shardingSeries(
  registers: Registers,
  prefix: string,
  sharding: NonNullable<MetricsSources['sharding']>,
): void {
  const gauges = { held: 'Buckets this replica reconciles', draining: 'Buckets being handed over' };
  for (const [field, help] of Object.entries(gauges) as [keyof typeof gauges, string][]) {
    new Gauge({
      name: `${prefix}sharding_buckets_${field}`,
      help,
      registers,
      collect() {
        this.set(sharding.stats()[field]);
      },
    });
  }
  const counters = {
    acquired: 'Buckets taken, free or from a replica that stopped renewing',
    takeovers: 'Buckets taken from a replica that stopped renewing their Lease',
    handovers: 'Buckets drained and released for another replica',
    lost: 'Buckets whose work stopped at once: Lease not renewed in time, or taken',
  };
  for (const [field, help] of Object.entries(counters) as [keyof typeof counters, string][]) {
    new Counter({
      name: `${prefix}sharding_${field}_total`,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(sharding.stats()[field]);
      },
    });
  }
  new Gauge({
    name: `${prefix}sharding_bucket_objects`,
    help: 'Objects reconciled in each bucket this replica holds',
    labelNames: ['bucket'],
    registers,
    collect() {
      this.reset();
      for (const [bucket, size] of sharding.objects()) this.set({ bucket: String(bucket) }, size);
    },
  });
}
