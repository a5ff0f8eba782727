// The benchmark run: a local control plane of its own with audit logging, the operator under test
// with the chart's RBAC through a ServiceAccount token, then the scenarios in order, each measured
// from watch events (times), the audit log (API calls of the operator's identity), our client's
// counters when the operator is ours (a cross-check) and /proc (memory, CPU).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { execFileSync } from 'node:child_process';
import { LocalCluster, toolsBinDir, writeKubeconfig } from '../hack/cluster/cluster.ts';
import { installCrd } from '../hack/cluster/crd.ts';
import { startJaeger, type Jaeger } from '../hack/cluster/jaeger.ts';
import { diesWithParent, freePorts } from '../hack/cluster/process.ts';
import { desiredDeployment } from '../src/echo/desired.ts';
import type { Echo } from '../src/echo/api.ts';
import { KubeClient } from '../src/kube/client.ts';
import { callsByVerb, type VerbCounts } from './audit.ts';
import { ProcessStats, type RssSample } from './process-stats.ts';
import { Tracker, type BenchDeployment, type BenchEcho, type Reached } from './tracker.ts';

export interface BenchOptions {
  n: number;
  replicas: number;
  /** Deployments edited by hand in the drift scenario. */
  drift: number;
  /** Seconds of idling in the steady-state scenario; it spans at least one resync. */
  idleSeconds: number;
  /** Our operator's resync period, shorter than the idle time so one falls inside it. */
  resyncSeconds: number;
  concurrency: number;
  /** Trace this fraction of reconciles into a Jaeger of the run's own; undefined: tracing off. */
  traceRatio: number | undefined;
  /** Another operator: a shell command line. Undefined: ours. */
  operatorCmd: string | undefined;
  /** Node flags for our operator (e.g. --max-old-space-size=64), as a memory limit would set. */
  nodeOptions: string | undefined;
  /** The environment variable through which the operator under test takes its kubeconfig. */
  kubeconfigEnv: string;
  /** Where the operator's log, the JSON and the SVG go. */
  outDir: string;
  /** Objects created or patched at once by the harness. */
  clientParallelism: number;
  progress: (message: string) => void;
}

export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface ScenarioResult {
  name: string;
  /** Seconds until the scenario's goal was reached (undefined for steady state). */
  seconds?: number;
  /** Further times the scenario reports (e.g. until every status is written). */
  times?: Record<string, number>;
  latencyMs?: Latency;
  /** API calls of the operator's identity during the scenario, by verb, from the audit log. */
  apiCalls: VerbCounts;
  /** The same counted by our client, when the operator is ours. */
  clientCalls?: VerbCounts;
  rssBytesAtEnd: number;
  cpuSeconds: number;
}

export interface FloorResult {
  /** Seconds for a bare client to apply N Deployments and see them all through its watch. */
  applySeconds: number;
  latencyMs: Latency;
  /** Seconds for the API server to take N Echo creates from the harness. */
  echoCreateSeconds: number;
}

export interface BenchResult {
  options: Omit<BenchOptions, 'progress'>;
  operator: string;
  scenarios: ScenarioResult[];
  floor: FloorResult;
  memory: { peakRssBytes: number; finalRssBytes: number; cpuSeconds: number };
  rss: RssSample[];
  /** Create-burst latencies (ms), sorted, for the chart. */
  createLatenciesMs: number[];
  floorLatenciesMs: number[];
}

const NAMESPACE = 'echo-bench';
const RELEASE = 'bench';
const SERVICE_ACCOUNT = `${RELEASE}-echo-operator`;
const USERNAME = `system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}`;
const CHART = fileURLToPath(new URL('../charts/echo-operator', import.meta.url));
/** Our operator as it ships: compiled by `make build`. */
const MAIN = fileURLToPath(new URL('../dist/operator/src/main.js', import.meta.url));

export function percentiles(values: number[]): Latency {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number =>
    sorted.length === 0
      ? 0
      : (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0);
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), max: sorted.at(-1) ?? 0 };
}

/** Runs `fn` over `items`, at most `limit` at a time. */
export async function inParallel<T>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<unknown>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** How long nothing must change before steady state is measured. */
const QUIET_MS = 3000;

const echoName = (i: number): string => `echo-${String(i).padStart(5, '0')}`;

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const { n, replicas, progress } = options;
  mkdirSync(options.outDir, { recursive: true });
  if (!options.operatorCmd && !existsSync(MAIN))
    throw new Error(`${MAIN} does not exist: run make build (make bench does)`);
  progress('starting a local control plane with audit logging');
  const cluster = await LocalCluster.start({ auditLog: true });
  const auditLog = cluster.state.auditLog ?? '';
  const admin = KubeClient.fromFile(cluster.kubeconfig);
  const tracker = new Tracker(admin);
  let jaeger: Jaeger | undefined;
  let operator: ChildProcess | undefined;
  try {
    await installCrd(admin);
    for (const ns of [NAMESPACE, 'bench-a', 'bench-b', 'bench-floor'])
      await admin.request({
        method: 'POST',
        path: '/api/v1/namespaces',
        body: { metadata: { name: ns } },
      });
    const kubeconfig = await operatorIdentity(cluster, admin);
    await tracker.start();

    const createEchoes = async (
      namespace: string,
      sent?: Map<string, number>,
    ): Promise<string[]> => {
      const names = Array.from({ length: n }, (_, i) => echoName(i));
      await inParallel(names, options.clientParallelism, async (name) => {
        sent?.set(`${namespace}/${name}`, performance.now());
        await admin.request({
          method: 'POST',
          path: `/apis/example.com/v1/namespaces/${namespace}/echoes`,
          body: {
            apiVersion: 'example.com/v1',
            kind: 'Echo',
            metadata: { name },
            spec: { replicas },
          },
        });
      });
      return names.map((name) => `${namespace}/${name}`);
    };
    const hasReplicas =
      (want: number) =>
      (d: BenchDeployment): boolean =>
        d.spec?.replicas === want;
    const statusWritten = (e: BenchEcho): boolean =>
      (e.status?.observedGeneration ?? 0) >= (e.metadata.generation ?? 1);
    const report =
      (what: string) =>
      (done: number): void => {
        progress(`  ${what}: ${String(done)}/${String(n)}`);
      };

    // Scenario 1: cold start.
    progress(`cold start: creating ${String(n)} Echoes before the operator starts`);
    const coldKeys = await createEchoes('bench-a');
    if (options.traceRatio !== undefined) jaeger = await startJaeger();
    const [metricsPort] = (await freePorts(1)) as [number];
    const ours = options.operatorCmd === undefined;
    const scrape = ours ? () => clientCounts(metricsPort) : undefined;

    const started = performance.now();
    let windowStart = Date.now();
    operator = startOperator(options, kubeconfig, metricsPort, jaeger);
    if (operator.pid === undefined) throw new Error('the operator under test did not start');
    const stats = new ProcessStats(operator.pid);
    let cpuBefore = 0;
    const results: ScenarioResult[] = [];
    const windows: [number, number][] = [];
    let countsBefore: VerbCounts = {};
    const finish = async (
      name: string,
      extra: Omit<ScenarioResult, 'name' | 'apiCalls' | 'rssBytesAtEnd' | 'cpuSeconds'>,
    ): Promise<void> => {
      const end = Date.now();
      const counts = scrape ? await scrape() : undefined;
      const cpu = stats.cpuSeconds();
      windows.push([windowStart, end]);
      results.push({
        name,
        ...extra,
        // Counted once the run is over: the API server logs a request after answering it.
        apiCalls: {},
        ...(counts ? { clientCalls: subtract(counts, countsBefore) } : {}),
        rssBytesAtEnd: stats.rssNow(),
        cpuSeconds: cpu - cpuBefore,
      });
      countsBefore = counts ?? {};
      cpuBefore = cpu;
      windowStart = end;
    };

    const coldDeployments = tracker.deployments.until(
      coldKeys,
      hasReplicas(replicas),
      report('Deployments'),
    );
    const coldStatus = tracker.echoes.until(coldKeys, statusWritten);
    const deployed = await coldDeployments.reached;
    const statused = await coldStatus.reached;
    await finish('cold start', {
      seconds: (Math.max(...deployed.values()) - started) / 1000,
      times: { untilEveryStatusSeconds: (Math.max(...statused.values()) - started) / 1000 },
    });

    // Scenario 2: create burst on an idle, synced operator.
    await settle();
    progress(`create burst: ${String(n)} Echoes as fast as the API server takes them`);
    const sent = new Map<string, number>();
    const burstStart = performance.now();
    const burstKeys = Array.from({ length: n }, (_, i) => `bench-b/${echoName(i)}`);
    const burst = tracker.deployments.until(
      burstKeys,
      hasReplicas(replicas),
      report('Deployments'),
    );
    await createEchoes('bench-b', sent);
    const echoCreateSeconds = (performance.now() - burstStart) / 1000;
    const burstReached = await burst.reached;
    const createLatencies = burstKeys.map((k) => (burstReached.get(k) ?? 0) - (sent.get(k) ?? 0));
    await finish('create burst', {
      seconds: (Math.max(...burstReached.values()) - burstStart) / 1000,
      times: { echoCreatesSeconds: echoCreateSeconds },
      latencyMs: percentiles(createLatencies),
    });

    // Scenario 3: scale burst.
    await settle();
    progress(`scale burst: every Echo of the burst to ${String(replicas + 1)} replicas`);
    const scaleStart = performance.now();
    const scaled = tracker.deployments.until(
      burstKeys,
      hasReplicas(replicas + 1),
      report('Deployments'),
    );
    const scaleSent = new Map<string, number>();
    await inParallel(burstKeys, options.clientParallelism, async (key) => {
      const [ns = '', name = ''] = key.split('/');
      scaleSent.set(key, performance.now());
      await admin.request({
        method: 'PATCH',
        path: `/apis/example.com/v1/namespaces/${ns}/echoes/${name}`,
        contentType: 'application/merge-patch+json',
        body: { spec: { replicas: replicas + 1 } },
      });
    });
    const scaleReached = await scaled.reached;
    // The scenario lasts until the new pods are ready and the Echoes say so: the status writes
    // that follow belong to it, and the next scenario starts on a quiet operator.
    progress('  waiting for every Echo to report its pods ready, then for quiet');
    const ready = await tracker.echoes.until(
      [...coldKeys, ...burstKeys],
      (e) =>
        e.status?.observedGeneration === e.metadata.generation &&
        (e.status?.readyReplicas ?? 0) === e.spec?.replicas,
    ).reached;
    await tracker.quiet(QUIET_MS);
    await finish('scale burst', {
      seconds: (Math.max(...scaleReached.values()) - scaleStart) / 1000,
      times: { untilEveryEchoReadySeconds: (Math.max(...ready.values()) - scaleStart) / 1000 },
      latencyMs: percentiles(
        burstKeys.map((k) => (scaleReached.get(k) ?? 0) - (scaleSent.get(k) ?? 0)),
      ),
    });

    // Scenario 4: drift repair.
    const driftKeys = burstKeys.slice(0, Math.min(options.drift, n));
    progress(`drift repair: ${String(driftKeys.length)} Deployments scaled by hand`);
    const driftStart = performance.now();
    const editedAt = new Map<string, bigint>();
    const driftSent = new Map<string, number>();
    await inParallel(driftKeys, options.clientParallelism, async (key) => {
      const [ns = '', name = ''] = key.split('/');
      driftSent.set(key, performance.now());
      const edited = await admin.request<BenchDeployment>({
        method: 'PATCH',
        path: `/apis/apps/v1/namespaces/${ns}/deployments/${name}`,
        contentType: 'application/merge-patch+json',
        body: { spec: { replicas: replicas + 5 } },
      });
      editedAt.set(key, BigInt(edited.metadata.resourceVersion ?? '0'));
    });
    const reverted = await tracker.deployments.until(
      driftKeys,
      (d) =>
        d.spec?.replicas === replicas + 1 &&
        BigInt(d.metadata.resourceVersion ?? '0') >
          (editedAt.get(`${d.metadata.namespace ?? ''}/${d.metadata.name}`) ?? 0n),
    ).reached;
    // Until the surplus pods are gone and the Echoes' status says so, as after the scale burst.
    await tracker.deployments.until(
      driftKeys,
      (d) =>
        d.status?.observedGeneration === d.metadata.generation &&
        d.status?.replicas === d.spec?.replicas &&
        d.status?.readyReplicas === d.spec?.replicas,
    ).reached;
    await tracker.echoes.until(
      driftKeys,
      (e) => (e.status?.readyReplicas ?? 0) === e.spec?.replicas,
    ).reached;
    await tracker.quiet(QUIET_MS);
    await finish('drift repair', {
      seconds: (Math.max(...reverted.values()) - driftStart) / 1000,
      latencyMs: percentiles(
        driftKeys.map((k) => (reverted.get(k) ?? 0) - (driftSent.get(k) ?? 0)),
      ),
    });

    // Scenario 5: steady state across a resync.
    progress(
      `steady state: idle for ${String(options.idleSeconds)} s (resync every ${String(options.resyncSeconds)} s)`,
    );
    await new Promise((r) => setTimeout(r, options.idleSeconds * 1000));
    await finish('steady state', {});

    // Scenario 6: delete everything; the garbage collector removes the Deployments.
    progress('delete: every Echo, then wait for the garbage collector');
    const deleteStart = performance.now();
    // One DELETE per Echo: a deletecollection of thousands outlasts the API server's own
    // 60 s request timeout.
    await inParallel([...coldKeys, ...burstKeys], options.clientParallelism, async (key) => {
      const [ns = '', name = ''] = key.split('/');
      await admin.request({
        method: 'DELETE',
        path: `/apis/example.com/v1/namespaces/${ns}/echoes/${name}`,
      });
    });
    await tracker.deployments.gone([...coldKeys, ...burstKeys]);
    await finish('delete', { seconds: (performance.now() - deleteStart) / 1000 });

    // The floor: the same Deployments applied by a bare client, no operator logic.
    progress(`floor: ${String(n)} Deployments applied directly`);
    const floor = await measureFloor(admin, tracker, options);

    await new Promise((r) => setTimeout(r, 1000));
    const calls = await callsByVerb(auditLog, USERNAME, windows);
    for (const [i, result] of results.entries()) result.apiCalls = calls[i] ?? {};

    const memory = {
      peakRssBytes: stats.peakRss(),
      finalRssBytes: stats.rssNow(),
      cpuSeconds: stats.cpuSeconds(),
    };
    stats.stop();
    const { progress: _progress, ...recorded } = options;
    return {
      options: recorded,
      operator: options.operatorCmd ?? `echo-operator (node ${MAIN})`,
      scenarios: results,
      floor: { ...floor.result, echoCreateSeconds },
      memory,
      rss: stats.samples,
      createLatenciesMs: createLatencies.sort((a, b) => a - b),
      floorLatenciesMs: floor.latencies.sort((a, b) => a - b),
    };
  } finally {
    if (operator?.exitCode === null) {
      operator.kill('SIGTERM');
      await once(operator, 'exit');
    }
    await tracker.close();
    await jaeger?.stop();
    await admin.close();
    await cluster.stop();
  }
}

/** A moment for in-flight status writes to land before the next scenario starts counting. */
async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 2000));
}

/** The chart's ServiceAccount and RBAC in the bench namespace, and a kubeconfig with its token. */
async function operatorIdentity(cluster: LocalCluster, admin: KubeClient): Promise<string> {
  const rendered = execFileSync(
    join(toolsBinDir(), 'helm'),
    [
      'template',
      RELEASE,
      CHART,
      '--namespace',
      NAMESPACE,
      '--show-only',
      'templates/serviceaccount.yaml',
      '--show-only',
      'templates/rbac.yaml',
    ],
    { encoding: 'utf8' },
  );
  for (const doc of parseAllDocuments(rendered)) {
    const object = doc.toJS() as {
      apiVersion: string;
      kind: string;
      metadata: { name: string; namespace?: string };
    } | null;
    if (!object) continue;
    const plural = `${object.kind.toLowerCase()}s`;
    const base = object.apiVersion.includes('/')
      ? `/apis/${object.apiVersion}`
      : `/api/${object.apiVersion}`;
    const path = object.metadata.namespace
      ? `${base}/namespaces/${object.metadata.namespace}/${plural}/${object.metadata.name}`
      : `${base}/${plural}/${object.metadata.name}`;
    await admin.apply(path, object, 'echo-bench');
  }
  const review = await admin.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${NAMESPACE}/serviceaccounts/${SERVICE_ACCOUNT}/token`,
    body: {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 86400 },
    },
  });
  const path = join(cluster.state.dir, 'operator.kubeconfig');
  await writeKubeconfig(path, cluster.state.server, cluster.caCert, { token: review.status.token });
  return path;
}

function startOperator(
  options: BenchOptions,
  kubeconfig: string,
  metricsPort: number,
  jaeger: Jaeger | undefined,
): ChildProcess {
  const env = { ...process.env, [options.kubeconfigEnv]: kubeconfig };
  // Dies with the harness, however it ends (same pid: setpriv execs, so /proc stats stay its own).
  const [file, args] = options.operatorCmd
    ? diesWithParent('bash', ['-c', `exec ${options.operatorCmd}`])
    : diesWithParent(process.execPath, [
        ...(options.nodeOptions ? options.nodeOptions.split(/\s+/).filter(Boolean) : []),
        MAIN,
        `--kubeconfig=${kubeconfig}`,
        `--port=${String(metricsPort)}`,
        '--log-format=json',
        '--log-filter=info',
        `--resync-period=${String(options.resyncSeconds)}s`,
        `--concurrency=${String(options.concurrency)}`,
        ...(jaeger
          ? [
              `--otlp-endpoint=${jaeger.grpcEndpoint}`,
              `--trace-sample-ratio=${String(options.traceRatio)}`,
            ]
          : []),
      ]);
  return spawnLogged(file, args, env, join(options.outDir, 'operator.log'));
}

/**
 * Starts a process whose stdout and stderr go straight to `logFile`. The harness stays out of the
 * path of the output: a pipe it had to drain would make the operator under test wait on the
 * harness's event loop (a write to a full pipe blocks), and the harness's progress on the
 * operator's log volume.
 */
export function spawnLogged(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  logFile: string,
): ChildProcess {
  const log = openSync(logFile, 'a');
  try {
    return spawn(file, args, { env, stdio: ['ignore', log, log] });
  } finally {
    closeSync(log);
  }
}

/** Our operator's own request counters by verb, from its /metrics. */
async function clientCounts(port: number): Promise<VerbCounts> {
  const res = await fetch(`http://127.0.0.1:${String(port)}/metrics`);
  const counts: VerbCounts = {};
  for (const line of (await res.text()).split('\n')) {
    if (!line.startsWith('echo_operator_kubernetes_requests_total{')) continue;
    const verb = /verb="([^"]*)"/.exec(line)?.[1] ?? '';
    counts[verb] = (counts[verb] ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return counts;
}

function subtract(after: VerbCounts, before: VerbCounts): VerbCounts {
  const out: VerbCounts = {};
  for (const [verb, count] of Object.entries(after)) {
    const d = count - (before[verb] ?? 0);
    if (d > 0) out[verb] = d;
  }
  return out;
}

async function measureFloor(
  admin: KubeClient,
  tracker: Tracker,
  options: BenchOptions,
): Promise<{ result: Omit<FloorResult, 'echoCreateSeconds'>; latencies: number[] }> {
  const names = Array.from({ length: options.n }, (_, i) => echoName(i));
  const keys = names.map((name) => `bench-floor/${name}`);
  const sent = new Map<string, number>();
  const start = performance.now();
  const seen = tracker.deployments.until(keys, (d) => d.spec?.replicas === options.replicas);
  await inParallel(names, options.clientParallelism, async (name) => {
    const echo = {
      apiVersion: 'example.com/v1',
      kind: 'Echo',
      metadata: { name, namespace: 'bench-floor', uid: 'floor', generation: 1 },
      spec: { replicas: options.replicas },
    } as Echo;
    // What the operator applies, minus the owner reference (no Echo owns these).
    const { metadata, ...rest } = desiredDeployment(echo);
    const { ownerReferences: _owner, ...bareMetadata } = metadata;
    sent.set(`bench-floor/${name}`, performance.now());
    await admin.apply(
      `/apis/apps/v1/namespaces/bench-floor/deployments/${name}`,
      { ...rest, metadata: bareMetadata },
      'echo-bench-floor',
    );
  });
  const reached: Reached = await seen.reached;
  const latencies = keys.map((k) => (reached.get(k) ?? 0) - (sent.get(k) ?? 0));
  return {
    result: {
      applySeconds: (Math.max(...reached.values()) - start) / 1000,
      latencyMs: percentiles(latencies),
    },
    latencies,
  };
}
