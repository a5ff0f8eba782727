// The operator's entry point: configuration, preflight checks with plain-language failures,
// then the operator until SIGTERM or SIGINT, with a graceful drain.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConfigError, parseConfig, usage, type Config } from './config.ts';
import { API_VERSION, GROUP, PLURAL } from './echo/api.ts';
import { KubeClient } from './kube/client.ts';
import { loadConnection } from './kube/kubeconfig.ts';
import { ApiError } from './kube/errors.ts';
import { RequestCounts } from './kube/request-counts.ts';
import { startHttpServer } from './http/server.ts';
import { CONTROLLER_NAME, EchoOperator, errorText } from './operator.ts';
import { createLoggers, textStream, type Loggers } from './telemetry/logger.ts';
import { Metrics } from './telemetry/metrics.ts';
import type { Tracing } from './telemetry/tracing-sdk.ts';

const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;
/** Matches controller-runtime's default graceful shutdown timeout. */
const SHUTDOWN_TIMEOUT_MS = 30_000;

/** Fails with a message a person can act on when the cluster is unreachable or the CRD absent. */
async function preflight(client: KubeClient): Promise<void> {
  let resources: { resources: { name: string }[] };
  try {
    resources = await client.request({ path: `/apis/${API_VERSION}` });
  } catch (err) {
    if (err instanceof ApiError && err.code === 404) {
      throw new Error(
        `the Echo CRD (${PLURAL}.${GROUP}) is not installed in ${client.server.origin}: ` +
          'kubectl apply -f charts/echo-operator/crds/',
        { cause: err },
      );
    }
    if (err instanceof ApiError && err.code === 401) {
      throw new Error(
        `${client.server.origin} rejected the operator's credentials (401 Unauthorized)`,
        { cause: err },
      );
    }
    if (err instanceof ApiError) throw err;
    throw new Error(`cannot reach the API server at ${client.server.origin}: ${errorText(err)}`, {
      cause: err,
    });
  }
  if (!resources.resources.some((r) => r.name === PLURAL)) {
    throw new Error(
      `${API_VERSION} is served but has no ${PLURAL} resource: is the CRD installed?`,
    );
  }
}

async function run(config: Config, loggers: Loggers, tracing?: Tracing): Promise<void> {
  const log = loggers.module('main');
  const counts = new RequestCounts();
  const connection = loadConnection(config.kubeconfig ? { path: config.kubeconfig } : {});
  // The metrics read the operator (built below, with their observers) only when scraped.
  const metrics: Metrics = new Metrics({
    controller: CONTROLLER_NAME,
    concurrency: config.concurrency,
    server: connection.server.href,
    queue: () => operator.queue,
    cacheSizes: () => ({ echoes: operator.echoes.size, deployments: operator.deployments.size }),
    ready: () => operator.synced,
  });
  const client = new KubeClient(connection, {
    onResponse: (event) => {
      counts.record(event);
      metrics.onResponse(event);
    },
    ...(tracing ? { tracer: tracing.tracer } : {}),
  });
  await preflight(client);

  const operator: EchoOperator = new EchoOperator({
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
  const http = await startHttpServer({
    port: config.port,
    readiness: { 'informers-synced': () => operator.synced },
    metrics: (accept) => metrics.render(accept),
  });
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

  log.info(
    {
      version: VERSION,
      server: client.server.origin,
      port: http.port,
      namespaces: config.namespaces.length ? config.namespaces : 'all',
      tracing: config.otlpEndpoint
        ? `${config.otlpProtocol} ${config.otlpEndpoint} ratio ${String(config.traceSampleRatio)}`
        : 'off',
    },
    'echo-operator starting',
  );
  await operator.run(stop.signal);
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
