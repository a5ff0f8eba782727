// Command-line flags, each with an environment fallback (flag > environment > default), parsed
// with node:util's parseArgs. A bad value is a ConfigError: main prints it and exits 2.
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import type { OtlpProtocol } from './telemetry/tracing-sdk.ts';
import { timingsProblem, type LeaderElectionTimings } from './runtime/leader-election.ts';
import { DEFAULT_BUCKET_COUNT, bucketCountProblem } from './runtime/sharding/buckets.ts';

export type LogFormat = 'text' | 'json';

export interface Config {
  /** HTTP port of the health endpoints, and of /metrics unless `metrics` gives it a port of its own. */
  port: number;
  /** /metrics on a port of its own; undefined: on `port`, plain HTTP, beside the probes. */
  metrics: MetricsConfig | undefined;
  /** The IP address that port listens on; empty means every interface. */
  bindAddress: string;
  /** `info`, or per-module levels: `info,controller=debug,kube=warn`. */
  logFilter: string;
  logFormat: LogFormat;
  /** OTLP endpoint; tracing is off when empty. */
  otlpEndpoint: string;
  otlpProtocol: OtlpProtocol;
  traceSampleRatio: number;
  /** Namespaces to watch; empty means all. */
  namespaces: string[];
  concurrency: number;
  resyncSeconds: number;
  /** How long one reconcile may run before it is abandoned and retried; 0: no deadline. */
  reconcileTimeoutSeconds: number;
  /** A kubeconfig file; empty means the KUBECONFIG list, in-cluster, then ~/.kube/config. */
  kubeconfig: string;
  /** This replica's name in Events and leases: the pod name in a cluster. */
  instance: string;
  leaderElection: LeaderElectionConfig;
  sharding: ShardingConfig;
}

/**
 * Active-active: every replica takes its share of the Echoes' buckets, on Leases of the leader
 * election's namespace, name (as the group) and timings; `--leader-elect` is then not used.
 */
export interface ShardingConfig {
  enabled: boolean;
  bucketCount: number;
}

export interface LeaderElectionConfig extends LeaderElectionTimings {
  enabled: boolean;
  /** The Lease's namespace; empty means the pod's own (read in main from the ServiceAccount mount). */
  namespace: string;
  leaseName: string;
}

export interface MetricsConfig {
  port: number;
  /** TLS, and only callers the API server authenticates and allows `get` on /metrics. */
  secure: boolean;
  /** tls.crt and tls.key; empty: a self-signed certificate made at start. */
  certDir: string;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

interface Flag {
  /** The environment variable read when the flag is not given. */
  env?: string;
  description: string;
  default: string;
}

const flags = {
  port: {
    env: 'ECHO_OPERATOR_PORT',
    default: '8080',
    description: 'HTTP port for /healthz, /livez and /readyz, and /metrics without --metrics-port',
  },
  // Empty, not a port: `make run`, the benchmark and whatever scrapes --port keep /metrics there.
  'metrics-port': {
    env: 'ECHO_OPERATOR_METRICS_PORT',
    default: '',
    description:
      'port of /metrics alone, secure unless --metrics-secure=false (on --port when empty)',
  },
  'metrics-secure': {
    env: 'ECHO_OPERATOR_METRICS_SECURE',
    default: '',
    description:
      'serve --metrics-port over TLS to callers allowed get on /metrics (default true with --metrics-port)',
  },
  'metrics-cert-dir': {
    env: 'ECHO_OPERATOR_METRICS_CERT_DIR',
    default: '',
    description:
      'directory of tls.crt and tls.key for --metrics-port, reloaded when they change (self-signed when empty)',
  },
  // Empty, not 0.0.0.0: Node then listens on IPv6 and IPv4 both, so an IPv6-only pod's kubelet and
  // Prometheus still reach it.
  'bind-address': {
    env: 'ECHO_OPERATOR_BIND_ADDRESS',
    default: '',
    description: 'IP address the HTTP port listens on, e.g. 127.0.0.1 (every interface when empty)',
  },
  'log-filter': {
    env: 'ECHO_OPERATOR_LOG_FILTER',
    default: 'info',
    description: 'log level, optionally per module: info,controller=debug',
  },
  'log-format': {
    env: 'ECHO_OPERATOR_LOG_FORMAT',
    default: 'text',
    description: 'log format: text or json',
  },
  'otlp-endpoint': {
    env: 'ECHO_OPERATOR_OTLP_ENDPOINT',
    default: '',
    description: 'OTLP endpoint for traces, e.g. http://localhost:4317 (tracing is off when empty)',
  },
  'otlp-protocol': {
    env: 'ECHO_OPERATOR_OTLP_PROTOCOL',
    default: 'grpc',
    description: 'OTLP transport: grpc or http/json',
  },
  'trace-sample-ratio': {
    env: 'ECHO_OPERATOR_TRACE_SAMPLE_RATIO',
    default: '0.1',
    description: 'fraction of reconciles traced, 0 to 1',
  },
  namespaces: {
    env: 'ECHO_OPERATOR_NAMESPACES',
    default: '',
    description: 'comma-separated namespaces to watch (all when empty)',
  },
  concurrency: {
    env: 'ECHO_OPERATOR_CONCURRENCY',
    // Reconciles wait on the API server, not on our CPU: more at once shorten a burst until the
    // server is saturated (docs/benchmark.md, "Concurrency: 16 reconciles at once").
    default: '16',
    description: 'Echoes reconciled at once',
  },
  'resync-period': {
    env: 'ECHO_OPERATOR_RESYNC_PERIOD',
    default: '10m',
    description: 'how often every Echo is re-checked against the cache (e.g. 30s, 10m, 1h)',
  },
  // controller-runtime has no deadline by default; ours is 2 minutes (DEFAULT_RECONCILE_TIMEOUT_MS):
  // a reconcile's requests each give up after 60 s, so one running longer is stuck, not slow.
  'reconcile-timeout': {
    env: 'ECHO_OPERATOR_RECONCILE_TIMEOUT',
    default: '2m',
    description:
      'how long one reconcile may run before it is abandoned and retried with backoff (0: no limit)',
  },
  // No environment fallback: KUBECONFIG is a list of files to merge, which the kubeconfig loader
  // reads itself (as client-go does), not one path.
  kubeconfig: {
    default: '',
    description:
      'kubeconfig file (default: the KUBECONFIG list merged, in-cluster, ~/.kube/config)',
  },
  instance: {
    env: 'POD_NAME',
    default: '',
    description: 'this replica’s name in Events and the lease (default: the host name)',
  },
  'leader-elect': {
    env: 'ECHO_OPERATOR_LEADER_ELECT',
    default: 'false',
    description: 'elect one active replica through a Lease; the others stand by with warm caches',
  },
  'leader-elect-namespace': {
    env: 'ECHO_OPERATOR_LEADER_ELECT_NAMESPACE',
    default: '',
    description: 'namespace of the Lease (default: the pod’s namespace)',
  },
  'leader-elect-lease-name': {
    env: 'ECHO_OPERATOR_LEADER_ELECT_LEASE_NAME',
    default: 'echo-operator',
    description: 'name of the Lease: one per independent instance',
  },
  'leader-elect-lease-duration': {
    env: 'ECHO_OPERATOR_LEADER_ELECT_LEASE_DURATION',
    default: '15s',
    description: 'how long standbys wait after the last renewal before taking over',
  },
  'leader-elect-renew-deadline': {
    env: 'ECHO_OPERATOR_LEADER_ELECT_RENEW_DEADLINE',
    default: '10s',
    description: 'how long the leader tries to renew before it stops and exits',
  },
  'leader-elect-retry-period': {
    env: 'ECHO_OPERATOR_LEADER_ELECT_RETRY_PERIOD',
    default: '2s',
    description: 'time between tries to acquire or renew the Lease',
  },
  sharding: {
    env: 'ECHO_OPERATOR_SHARDING',
    default: 'false',
    description:
      'every replica reconciles a share of the Echoes (buckets held on Leases named after --leader-elect-lease-name, in its namespace, with its timings) instead of one leader',
  },
  'sharding-buckets': {
    env: 'ECHO_OPERATOR_SHARDING_BUCKETS',
    default: String(DEFAULT_BUCKET_COUNT),
    description: 'buckets the Echoes are split into: a power of two, the same on every replica',
  },
} satisfies Record<string, Flag>;

export function usage(version: string): string {
  const lines = Object.entries(flags).map(
    ([name, f]) => `  --${name.padEnd(28)} ${f.description}${fallbacks(f)}`,
  );
  return [
    `echo-operator ${version}: runs a Deployment for every Echo (echoes.example.com/v1)`,
    '',
    'Usage: echo-operator [flags]',
    '',
    ...lines,
    `  --${'help'.padEnd(28)} print this help`,
    `  --${'version'.padEnd(28)} print the version`,
  ].join('\n');
}

function fallbacks(f: Flag): string {
  const parts = [
    ...(f.env ? [`env ${f.env}`] : []),
    ...(f.default ? [`default ${f.default}`] : []),
  ];
  return parts.length ? `\n  ${' '.repeat(30)} ${parts.join(', ')}` : '';
}

export type ParsedArgs = { kind: 'help' } | { kind: 'version' } | { kind: 'run'; config: Config };

export function parseConfig(argv: string[], env: NodeJS.ProcessEnv, hostname: string): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      options: {
        ...Object.fromEntries(
          Object.keys(flags).map((name) => [name, { type: 'string' as const }]),
        ),
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean' },
      },
    });
  } catch (err) {
    throw new ConfigError(err instanceof Error ? err.message : String(err));
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };
  const value = (name: keyof typeof flags): string => {
    const v = values[name];
    if (typeof v === 'string') return v;
    const flag: Flag = flags[name];
    return (flag.env ? env[flag.env] : undefined) ?? flag.default;
  };

  const logFormat = value('log-format');
  if (logFormat !== 'text' && logFormat !== 'json') {
    throw new ConfigError(`--log-format must be text or json, not "${logFormat}"`);
  }
  const ratio = Number(value('trace-sample-ratio'));
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
    throw new ConfigError(
      `--trace-sample-ratio must be a number from 0 to 1, not "${value('trace-sample-ratio')}"`,
    );
  }
  const otlpEndpoint = value('otlp-endpoint');
  if (otlpEndpoint && !URL.canParse(otlpEndpoint)) {
    throw new ConfigError(
      `--otlp-endpoint must be a URL such as http://localhost:4317, not "${otlpEndpoint}"`,
    );
  }
  const otlpProtocol = value('otlp-protocol');
  if (otlpProtocol !== 'grpc' && otlpProtocol !== 'http/json') {
    throw new ConfigError(`--otlp-protocol must be grpc or http/json, not "${otlpProtocol}"`);
  }
  const namespaces = value('namespaces')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const badNamespace = namespaces.find((n) => !isDnsLabel(n));
  if (badNamespace !== undefined)
    throw new ConfigError(`--namespaces: "${badNamespace}" is not a namespace name`);
  const leaderElection = leaderElectionConfig(value);
  const port = integer('port', value('port'), 0, 65535);

  return {
    kind: 'run',
    config: {
      port,
      metrics: metricsConfig(value, port),
      bindAddress: ipAddress('bind-address', value('bind-address')),
      logFilter: value('log-filter'),
      logFormat,
      otlpEndpoint,
      otlpProtocol,
      traceSampleRatio: ratio,
      namespaces,
      concurrency: integer('concurrency', value('concurrency'), 1, 1000),
      resyncSeconds: duration('resync-period', value('resync-period')),
      reconcileTimeoutSeconds: durationOrNone('reconcile-timeout', value('reconcile-timeout')),
      kubeconfig: value('kubeconfig'),
      instance: value('instance') || hostname,
      leaderElection,
      sharding: shardingConfig(value),
    },
  };
}

function shardingConfig(value: (name: keyof typeof flags) => string): ShardingConfig {
  const enabled = value('sharding');
  if (enabled !== 'true' && enabled !== 'false') {
    throw new ConfigError(`--sharding must be true or false, not "${enabled}"`);
  }
  const raw = value('sharding-buckets');
  const bucketCount = /^\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  const problem = bucketCountProblem(bucketCount);
  if (problem)
    throw new ConfigError(`--sharding-buckets: ${problem.replace(String(NaN), `"${raw}"`)}`);
  return { enabled: enabled === 'true', bucketCount };
}

/** A duration, or 0 for none. */
function durationOrNone(flag: string, raw: string): number {
  return raw.trim() === '0' ? 0 : duration(flag, raw);
}

function isDnsLabel(name: string): boolean {
  return /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(name);
}

function leaderElectionConfig(value: (name: keyof typeof flags) => string): LeaderElectionConfig {
  const enabled = value('leader-elect');
  if (enabled !== 'true' && enabled !== 'false') {
    throw new ConfigError(`--leader-elect must be true or false, not "${enabled}"`);
  }
  const namespace = value('leader-elect-namespace');
  if (namespace && !isDnsLabel(namespace))
    throw new ConfigError(`--leader-elect-namespace: "${namespace}" is not a namespace name`);
  const leaseName = value('leader-elect-lease-name');
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(leaseName))
    throw new ConfigError(`--leader-elect-lease-name: "${leaseName}" is not a valid object name`);
  const timings = {
    leaseDurationMs:
      duration('leader-elect-lease-duration', value('leader-elect-lease-duration')) * 1000,
    renewDeadlineMs:
      duration('leader-elect-renew-deadline', value('leader-elect-renew-deadline')) * 1000,
    retryPeriodMs: duration('leader-elect-retry-period', value('leader-elect-retry-period')) * 1000,
  };
  const problem = timingsProblem(timings);
  if (problem) throw new ConfigError(`leader election timings: ${problem}`);
  return { enabled: enabled === 'true', namespace, leaseName, ...timings };
}

function metricsConfig(
  value: (name: keyof typeof flags) => string,
  port: number,
): MetricsConfig | undefined {
  const rawPort = value('metrics-port');
  const secure = value('metrics-secure');
  const certDir = value('metrics-cert-dir');
  if (secure !== '' && secure !== 'true' && secure !== 'false') {
    throw new ConfigError(`--metrics-secure must be true or false, not "${secure}"`);
  }
  if (!rawPort) {
    if (secure === 'true' || certDir) {
      throw new ConfigError(
        `--${secure === 'true' ? 'metrics-secure' : 'metrics-cert-dir'} needs --metrics-port: without it /metrics is served on --port, plain, beside the probes`,
      );
    }
    return undefined;
  }
  const metricsPort = integer('metrics-port', rawPort, 0, 65535);
  // 0 picks a free port, for each of the two.
  if (metricsPort !== 0 && metricsPort === port) {
    throw new ConfigError(
      `--metrics-port must differ from --port (${String(port)}): the probes stay on --port and /metrics moves`,
    );
  }
  if (secure === 'false' && certDir) {
    throw new ConfigError(
      '--metrics-cert-dir needs --metrics-secure: plain metrics use no certificate',
    );
  }
  return { port: metricsPort, secure: secure !== 'false', certDir };
}

function integer(flag: string, raw: string, min: number, max: number): number {
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < min || n > max) {
    throw new ConfigError(
      `--${flag} must be a whole number from ${String(min)} to ${String(max)}, not "${raw}"`,
    );
  }
  return n;
}

/** An IPv4 or IPv6 address, or empty. */
function ipAddress(flag: string, raw: string): string {
  if (raw && !isIP(raw)) {
    throw new ConfigError(`--${flag} must be an IP address such as 127.0.0.1 or ::, not "${raw}"`);
  }
  return raw;
}

/**
 * The longest a Node timer waits (2^31 - 1 ms, about 596 h): a longer one fires after 1 ms, so a
 * resync period past it would resync in a tight loop.
 */
const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** `90`, `90s`, `15m`, `1h` → seconds; at least one second, at most what a timer can wait. */
export function duration(flag: string, raw: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(raw.trim());
  const unit = { s: 1, m: 60, h: 3600 };
  const seconds = m ? Number(m[1]) * unit[(m[2] ?? 's') as keyof typeof unit] : NaN;
  if (!Number.isFinite(seconds) || seconds < 1) {
    throw new ConfigError(`--${flag} must be a duration such as 30s, 10m or 1h, not "${raw}"`);
  }
  if (seconds > MAX_TIMER_SECONDS) {
    throw new ConfigError(`--${flag} must be at most 596h, not "${raw}"`);
  }
  return seconds;
}
