// The operator's composition root: the configuration (a bad one exits with a plain message), the
// loggers and tracing it asks for, a Manager with the Echo controller, run until SIGTERM or SIGINT
// (or the caller's signal) with a graceful drain. `main` runs in-process as well as from the shell.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { ConfigError, parseConfig, usage, type Config } from './config.ts';
import { REPORTING_CONTROLLER, echoController } from './echo/controller.ts';
import { connectionsFor } from './kube/client.ts';
import { loadConnection } from './kube/kubeconfig/kubeconfig.ts';
import { Manager, type ManagerOptions } from './runtime/manager.ts';
import { createLoggers, errorText, textStream, type Logger } from './telemetry/logger.ts';
import type { Tracing } from './telemetry/tracing-sdk.ts';
import { VERSION } from './version.ts';

/** Matches controller-runtime's default graceful shutdown timeout. */
const SHUTDOWN_TIMEOUT_MS = 30_000;

/**
 * Short requests in flight at once besides the reconciles' own: Events being recorded, the lease,
 * a status write overlapping an apply. Past it they wait for a stream, they are never refused.
 */
const REQUEST_HEADROOM = 32;

/** Where a pod finds its own namespace. */
const POD_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/**
 * The connections the operator may open: enough for its watches (two per namespace, or two across
 * the cluster) and its requests, at 100 streams a connection.
 */
function connectionLimit(config: Pick<Config, 'namespaces' | 'concurrency'>): number {
  const watches = 2 * Math.max(1, config.namespaces.length);
  return connectionsFor(watches, config.concurrency + REQUEST_HEADROOM);
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

/** The configuration from the command line, or the exit code when there is nothing to run. */
function configure(argv: string[], env: NodeJS.ProcessEnv): Config | number {
  try {
    const parsed = parseConfig(argv, env, hostname());
    if (parsed.kind !== 'run') {
      console.log(parsed.kind === 'help' ? usage(VERSION) : VERSION);
      return 0;
    }
    const config = parsed.config;
    const leases = config.sharding.enabled || config.leaderElection.enabled;
    if (leases && !config.leaderElection.namespace) {
      if (!existsSync(POD_NAMESPACE_FILE)) {
        const flag = config.sharding.enabled ? '--sharding' : '--leader-elect';
        throw new ConfigError(`${flag} needs --leader-elect-namespace outside a cluster`);
      }
      config.leaderElection.namespace = readFileSync(POD_NAMESPACE_FILE, 'utf8').trim();
    }
    return config;
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`echo-operator: ${err.message}\nRun with --help for the flags.`);
    return 2;
  }
}

/**
 * Sharding or leader election, on Leases named after the lease name. Either side knows of the
 * other, so a helm upgrade between the two modes never has two replicas reconcile one Echo.
 */
function leases(config: Config): Pick<ManagerOptions, 'leaderElection' | 'sharding'> {
  const { leaseName, enabled, ...election } = config.leaderElection;
  // The process, not just the pod: a restarted container must not inherit the old Leases.
  const identity = `${config.instance}_${randomUUID()}`;
  if (config.sharding.enabled) {
    const { bucketCount } = config.sharding;
    return {
      sharding: { ...election, group: leaseName, identity, bucketCount, leaderLease: leaseName },
    };
  }
  if (!enabled) return {};
  return { leaderElection: { ...election, leaseName, identity, shardedGroup: leaseName } };
}

/** The Manager the configuration describes, with the Echo controller added. */
export function operatorManager(
  config: Config,
  log: (module: string) => Logger,
  tracing?: Tracing,
): Manager {
  const manager = new Manager({
    connection: loadConnection(config.kubeconfig ? { path: config.kubeconfig } : {}),
    client: { maxConnections: connectionLimit(config) },
    namespaces: config.namespaces,
    instance: config.instance,
    reportingController: REPORTING_CONTROLLER,
    concurrency: config.concurrency,
    resyncMs: config.resyncSeconds * 1000,
    reconcileTimeoutMs: config.reconcileTimeoutSeconds * 1000,
    log,
    metrics: { prefix: 'echo_operator_' },
    serve: {
      port: config.port,
      bindAddress: config.bindAddress,
      ...(config.metrics
        ? {
            metrics: {
              port: config.metrics.port,
              secure: config.metrics.secure,
              ...(config.metrics.certDir ? { certDir: config.metrics.certDir } : {}),
            },
          }
        : {}),
    },
    ...leases(config),
    ...(tracing ? { tracer: tracing.tracer } : {}),
  });
  manager.add(echoController());
  return manager;
}

/**
 * Runs the operator as the command line says until `signal` aborts (by default: SIGTERM or
 * SIGINT); resolves with the process's exit code.
 */
export async function main(
  argv: string[],
  env: NodeJS.ProcessEnv,
  signal?: AbortSignal,
): Promise<number> {
  const config = configure(argv, env);
  if (typeof config === 'number') return config;
  let loggers;
  try {
    loggers = createLoggers(
      config.logFilter,
      config.logFormat === 'text' ? await textStream() : undefined,
      Boolean(config.otlpEndpoint),
    );
  } catch (err) {
    console.error(`echo-operator: --log-filter: ${errorText(err)}`);
    return 2;
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
  const log = loggers.module('main');
  try {
    const manager = operatorManager(config, loggers.module, tracing);
    const stop = signal ?? stopOnSignals(log);
    const port = await manager.listen();
    logStarting(config, manager, port ?? config.port, log);
    await manager.run(stop);
    return 0;
  } catch (err) {
    loggers.root.fatal({ err: errorText(err) }, 'echo-operator cannot run');
    return 1;
  } finally {
    // Spans still batched are sent before exit; an unreachable collector must not hold it up.
    await tracing?.shutdown().catch((err: unknown) => {
      loggers.root.warn({ err: errorText(err) }, 'could not flush the last spans');
    });
  }
}

function logStarting(config: Config, manager: Manager, port: number, log: Logger): void {
  const election = config.leaderElection;
  log.info(
    {
      version: VERSION,
      server: manager.client.server.origin,
      port,
      metricsPort: manager.metricsPort,
      metrics: config.metrics?.secure ? 'https, authorized by the API server' : 'http',
      namespaces: config.namespaces.length ? config.namespaces : 'all',
      maxConnections: connectionLimit(config),
      leaderElection:
        election.enabled && !config.sharding.enabled
          ? `${election.namespace}/${election.leaseName}`
          : 'off',
      sharding: config.sharding.enabled
        ? `${String(config.sharding.bucketCount)} buckets, Leases ${election.namespace}/${election.leaseName}-*`
        : 'off',
      tracing: config.otlpEndpoint
        ? `${config.otlpProtocol} ${config.otlpEndpoint} ratio ${String(config.traceSampleRatio)}`
        : 'off',
    },
    'echo-operator starting',
  );
}

if (import.meta.main) process.exitCode = await main(process.argv.slice(2), process.env);
