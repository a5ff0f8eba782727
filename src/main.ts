// The operator's entry point: configuration (a bad one exits with a plain message), the HTTP
// endpoints, a wait for the API server and the CRD (logged plainly, never a crash loop), then
// leader election if on, and the operator until SIGTERM or SIGINT, with a graceful drain.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, parseConfig, usage, type Config } from './config.ts';
import { API_VERSION, PLURAL } from './echo/api.ts';
import {
  CONTROLLER_NAME,
  crdMissing,
  echoController,
  type EchoController,
} from './echo/controller.ts';
import { connectionsFor, KubeClient } from './kube/client.ts';
import { loadConnection } from './kube/kubeconfig/kubeconfig.ts';
import { ApiError } from './kube/errors.ts';
import { RequestCounts } from './kube/request-counts.ts';
import { startHttpServer, type Check } from './http/server.ts';
import { DEFAULT_BACKOFF, retryDelay } from './runtime/backoff.ts';
import { LeaderElector } from './runtime/leader-election.ts';
import type { EventRecorder } from './runtime/events.ts';
import {
  createLoggers,
  errorText,
  textStream,
  type Logger,
  type Loggers,
} from './telemetry/logger.ts';
import { Metrics } from './runtime/metrics.ts';
import type { Tracing } from './telemetry/tracing-sdk.ts';
import { VERSION } from './version.ts';

/** Matches controller-runtime's default graceful shutdown timeout. */
const SHUTDOWN_TIMEOUT_MS = 30_000;

/**
 * Short requests in flight at once besides the reconciles' own: Events being recorded, the lease,
 * a status write overlapping an apply. Past it they wait for a stream, they are never refused.
 */
const REQUEST_HEADROOM = 32;

/**
 * The connections the operator may open: enough for its watches (two per namespace, or two across
 * the cluster) and its requests, at 100 streams a connection.
 */
function connectionLimit(config: Pick<Config, 'namespaces' | 'concurrency'>): number {
  const watches = 2 * Math.max(1, config.namespaces.length);
  return connectionsFor(watches, config.concurrency + REQUEST_HEADROOM);
}

/** Where a pod finds its own namespace. */
const POD_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/**
 * What stops the operator from starting, in words a person can act on, or undefined when the API
 * server answers and serves Echoes.
 */
async function startupProblem(
  client: KubeClient,
  signal: AbortSignal,
): Promise<string | undefined> {
  let resources: { resources: { name: string }[] };
  try {
    resources = await client.request({ path: `/apis/${API_VERSION}`, signal });
  } catch (err) {
    if (err instanceof ApiError && err.code === 404) return crdMissing(client.server.origin);
    if (err instanceof ApiError && err.code === 401) {
      return `${client.server.origin} rejected the operator's credentials (401 Unauthorized)`;
    }
    if (err instanceof ApiError) return errorText(err);
    return `cannot reach the API server at ${client.server.origin}: ${errorText(err)}`;
  }
  if (!resources.resources.some((r) => r.name === PLURAL)) {
    return `${API_VERSION} is served but has no ${PLURAL} resource: is the CRD installed?`;
  }
  return undefined;
}

/**
 * Waits, with the informers' backoff (0.8 s doubling to 30 s, jittered), until the API server
 * answers and the CRD is installed. In a pod, exiting would only trade this wait for a crash loop.
 */
async function waitForApiServer(
  client: KubeClient,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  for (let retry = 0; ; retry++) {
    const problem = await startupProblem(client, signal);
    if (problem === undefined || signal.aborted) return;
    const wait = retryDelay(DEFAULT_BACKOFF, retry, Math.random());
    log.warn({ retryInSeconds: Math.round(wait / 100) / 10 }, `waiting: ${problem}`);
    await sleep(wait, undefined, { signal }).catch(() => undefined);
  }
}

/**
 * The Lease elector. Leadership changes are logged, and recorded as Events about the Lease as
 * client-go does: `kubectl get events` in the lease's namespace tells who led when.
 */
function leaderElector(
  config: Config,
  client: KubeClient,
  identity: string,
  recorder: EventRecorder,
  loggers: Loggers,
): LeaderElector {
  const election = config.leaderElection;
  const log = loggers.module('main');
  const elector: LeaderElector = new LeaderElector({
    ...election,
    client,
    name: election.leaseName,
    identity,
    onLeading: (leading) => {
      if (leading) log.info({ lease: election.leaseName }, 'became leader: reconciling');
      const lease = elector.leaseReference;
      if (lease) {
        recorder.record(
          lease,
          'Normal',
          'LeaderElection',
          leading ? 'Acquire' : 'Release',
          `${identity} ${leading ? 'became leader' : 'stopped leading'}`,
        );
      }
    },
    onHolder: (holder) => {
      log.info({ lease: election.leaseName, holder: holder || 'nobody' }, 'lease holder');
    },
    onError: (message, err) => {
      loggers.module('leader-election').warn({ err: errorText(err) }, message);
    },
  });
  return elector;
}

/**
 * Aborts on the first SIGTERM or SIGINT, for a graceful drain bounded by SHUTDOWN_TIMEOUT_MS; a
 * second signal exits at once.
 */
function stopOnSignals(log: Logger): AbortSignal {
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stop.signal.aborted) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    log.info({ signal }, 'shutting down: finishing in-flight reconciles');
    stop.abort();
    setTimeout(() => {
      log.error('graceful shutdown timed out; exiting');
      process.exit(1);
    }, SHUTDOWN_TIMEOUT_MS).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return stop.signal;
}

function logStarting(config: Config, server: string, port: number, log: Logger): void {
  const election = config.leaderElection;
  log.info(
    {
      version: VERSION,
      server,
      port,
      namespaces: config.namespaces.length ? config.namespaces : 'all',
      maxConnections: connectionLimit(config),
      leaderElection: election.enabled ? `${election.namespace}/${election.leaseName}` : 'off',
      tracing: config.otlpEndpoint
        ? `${config.otlpProtocol} ${config.otlpEndpoint} ratio ${String(config.traceSampleRatio)}`
        : 'off',
    },
    'echo-operator starting',
  );
}

/**
 * Runs the controller until `signal` aborts: at once without leader election, else once elected,
 * exiting if leadership is lost; the lease is renewed through the drain and released after it.
 */
async function runWhileLeading(
  controller: EchoController,
  elector: LeaderElector | undefined,
  config: Config,
  signal: AbortSignal,
  log: Logger,
): Promise<void> {
  const election = config.leaderElection;
  const elected = elector ? elector.acquire(signal) : Promise.resolve(true);
  // Renewing goes on through the drain: a reconcile still writing is still the leader's.
  const drained = new AbortController();
  let holding: Promise<unknown> = Promise.resolve();
  if (elector) {
    log.info({ lease: election.leaseName }, 'standing by until elected; caches filling');
    holding = elected.then(async (won) => {
      if (won && (await elector.hold(drained.signal)) === 'lost') {
        // Another replica may lead already: stop writing now, as client-go's callers do.
        log.error(
          { lease: election.leaseName, renewDeadlineSeconds: election.renewDeadlineMs / 1000 },
          'leadership lost: the lease could not be renewed in time; exiting',
        );
        process.exit(1);
      }
    });
  }
  await controller.run(signal, elected);
  drained.abort();
  await holding;
  await elector?.release();
  await controller.recorder.flush();
}

async function run(config: Config, loggers: Loggers, tracing?: Tracing): Promise<void> {
  const log = loggers.module('main');
  const counts = new RequestCounts();
  const connection = loadConnection(config.kubeconfig ? { path: config.kubeconfig } : {});
  const election = config.leaderElection;
  // The metrics read the operator, the elector and readiness (all built below) only when scraped.
  const metrics: Metrics = new Metrics({
    controller: CONTROLLER_NAME,
    concurrency: config.concurrency,
    server: connection.server.href,
    queue: () => operator.queue,
    cacheSizes: () => operator.cacheSizes(),
    ready: () => Object.values(readiness).every((check) => check() === true),
    connections: () => ({ open: client.openConnections, max: maxConnections }),
    ...(election.enabled
      ? { leader: { name: election.leaseName, leading: () => elector?.isLeader ?? false } }
      : {}),
  });
  // The last answer of the API server was 401: revoked or expired credentials.
  let credentialsRefused = false;
  const maxConnections = connectionLimit(config);
  const client = new KubeClient(connection, {
    maxConnections,
    onResponse: (event) => {
      counts.record(event);
      metrics.onResponse(event);
      if (event.code !== 0) credentialsRefused = event.code === 401;
    },
    ...(tracing ? { tracer: tracing.tracer } : {}),
  });
  const operator = echoController({
    client,
    namespaces: config.namespaces,
    concurrency: config.concurrency,
    resyncMs: config.resyncSeconds * 1000,
    instance: config.instance,
    log: loggers.module,
    queueObserver: metrics.queueObserver(),
    controllerObserver: metrics.controllerObserver(),
    informerObserver: (informer) => metrics.informerObserver(informer),
    onRecreate: metrics.recreated,
    onDesiredReplicas: metrics.desired,
    ...(tracing ? { tracer: tracing.tracer } : {}),
  });
  // The process, not just the pod: a restarted container must not inherit the old one's lease.
  const identity = `${config.instance}_${randomUUID()}`;
  const elector = election.enabled
    ? leaderElector(config, client, identity, operator.recorder, loggers)
    : undefined;
  const readiness: Record<string, Check> = {
    'informers-synced': () => operator.synced,
    'informers-connected': () => operator.connected,
    // A watch whose stream stopped without failing: the watchdog reopens it; if it could not.
    'watches-heard': () => operator.silentWatches().join('; ') || true,
    'credentials-accepted': () => !credentialsRefused,
    ...(elector ? { 'leader-election': () => elector.healthy } : {}),
  };
  const http = await startHttpServer({
    port: config.port,
    bindAddress: config.bindAddress,
    readiness,
    metrics: (accept) => metrics.render(accept),
  });
  const stop = stopOnSignals(log);
  logStarting(config, client.server.origin, http.port, log);
  await waitForApiServer(client, stop, log);
  if (!stop.aborted) await runWhileLeading(operator, elector, config, stop, log);
  await http.close();
  await client.close();
  log.info({ requests: counts.total(), writes: counts.writes() }, 'stopped');
}

let config: Config;
try {
  const parsed = parseConfig(process.argv.slice(2), process.env, hostname());
  if (parsed.kind === 'help') {
    console.log(usage(VERSION));
    process.exit(0);
  }
  if (parsed.kind === 'version') {
    console.log(VERSION);
    process.exit(0);
  }
  config = parsed.config;
  if (config.leaderElection.enabled && !config.leaderElection.namespace) {
    if (!existsSync(POD_NAMESPACE_FILE)) {
      throw new ConfigError('--leader-elect needs --leader-elect-namespace outside a cluster');
    }
    config.leaderElection.namespace = readFileSync(POD_NAMESPACE_FILE, 'utf8').trim();
  }
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(`echo-operator: ${err.message}\nRun with --help for the flags.`);
  process.exit(2);
}

let loggers: Loggers;
try {
  loggers = createLoggers(
    config.logFilter,
    config.logFormat === 'text' ? await textStream() : undefined,
    Boolean(config.otlpEndpoint),
  );
} catch (err) {
  console.error(`echo-operator: --log-filter: ${errorText(err)}`);
  process.exit(2);
}

const tracing = config.otlpEndpoint
  ? (await import('./telemetry/tracing-sdk.ts')).startTracing({
      endpoint: config.otlpEndpoint,
      protocol: config.otlpProtocol,
      sampleRatio: config.traceSampleRatio,
      version: VERSION,
      instance: config.instance,
    })
  : undefined;
try {
  await run(config, loggers, tracing);
} catch (err) {
  loggers.root.fatal({ err: errorText(err) }, 'echo-operator cannot run');
  process.exitCode = 1;
} finally {
  // Spans still batched are sent before exit; an unreachable collector must not hold it up.
  await tracing?.shutdown().catch((err: unknown) => {
    loggers.root.warn({ err: errorText(err) }, 'could not flush the last spans');
  });
}
