// The benchmark run: a local control plane of its own with audit logging, the operator under test
// with the chart's RBAC through a ServiceAccount token, then the scenarios in order, each measured
// from watch events (times), the audit log (API calls of the operator's identity), our client's
// counters when the operator is ours (a cross-check) and /proc (memory, CPU).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { execFileSync } from 'node:child_process';
import { LocalCluster, toolsBinDir, writeKubeconfig } from '../hack/cluster/cluster.ts';
import { installCrd } from '../hack/cluster/crd.ts';
import { startJaeger, type Jaeger } from '../hack/cluster/jaeger.ts';
import { diesWithParent, freePorts } from '../hack/cluster/process.ts';
import { desiredDeployment } from '../src/echo/desired.ts';
import { KubeClient } from '../src/kube/client.ts';
import { objectKey } from '../src/kube/object.ts';
import { echo as cachedEcho, echoManifest } from '../test/support/echo.ts';
import { bucketOf } from '../src/runtime/sharding/buckets.ts';
import { callsOf, overlapsIn, type OverlapCount, type Rejected, type VerbCounts } from './audit.ts';
import { ProcessStats, type RssSample } from './process-stats.ts';
import {
  bucketCountOf,
  describeOwnership,
  fairShare,
  instanceName,
  LEASE_DURATION_MS,
  ownership,
  owns,
  replicaFlags,
  summed,
  victimOf,
  writesBeforeKill,
  type LeaseView,
  type Ownership,
  type ProcessMemory,
  type ReplicaOptions,
} from './replicas.ts';
import { lastOf, ScenarioClock, type Shortfall } from './deadline.ts';
import {
  Tracker,
  type BenchDeployment,
  type BenchEcho,
  type Reached,
  type Waiting,
} from './tracker.ts';
import { SCENARIOS, type ScenarioKey } from './scenarios.ts';
import { DEFAULT_AGING_MS } from '../src/runtime/workqueue.ts';

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
  /** Our operator's NODE_OPTIONS: the chart's (shippedNodeOptions) unless a run tries others. */
  nodeOptions: string;
  /** The environment variable through which the operator under test takes its kubeconfig. */
  kubeconfigEnv: string;
  /** Where the operator's log, the JSON and the SVG go. */
  outDir: string;
  /** Objects created or patched at once by the harness. */
  clientParallelism: number;
  /** A scenario not reached in this time is reported as not converged, and the run goes on. */
  scenarioTimeoutSeconds: number;
  /**
   * The memory-fit mode (--memory-fit): the cold start only, then a rest of `restSeconds` once
   * nothing changes, and the run ends (scenarios 'cold start' and 'rest'). Our operator's metrics
   * are not scraped, so that it is measured as any other operator is. Undefined: every scenario.
   */
  memoryFit?: { restSeconds: number };
  /** The scenarios after the cold start (--scenarios), in run order; undefined: every one. */
  scenarios?: ScenarioKey[];
  /** Processes of our operator (--operator-replicas) and the kill; undefined: one. */
  operatorReplicas?: ReplicaOptions;
  progress: (message: string) => void;
}

export interface Latency {
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  max: number;
}

export interface ScenarioResult {
  name: string;
  /** Seconds until the scenario's goal was reached (undefined for steady state, or not reached). */
  seconds?: number | undefined;
  /** Further times the scenario reports (e.g. until every status is written); undefined: not reached. */
  times?: Record<string, number | undefined>;
  latencyMs?: Latency;
  /** API calls of the operator's identity during the scenario, by verb, from the audit log. */
  apiCalls: VerbCounts;
  /** Calls of the operator's identity the API server refused, by call and code (audit log). */
  rejectedCalls?: Rejected[];
  /** The same counted by our client, when the operator is ours. */
  clientCalls?: VerbCounts;
  /** Our operator's reconciles by result (success, requeue_after, error), from its metrics. */
  reconciles?: VerbCounts;
  /**
   * Our operator's work-queue items picked (`picked`), and of them those that had waited longer
   * than the queue's aging bound (`pastAgingBound`), from its queue-duration histogram.
   */
  queueWaits?: VerbCounts;
  /** Set when the scenario did not converge within the time limit: what it was short of. */
  didNotConverge?: Shortfall;
  /** Summed over the replicas when there are several. */
  rssBytesAtEnd: number;
  cpuSeconds: number;
  /** Each replica's part, when there are several. */
  replicas?: ReplicaScenario[];
  /** The replica killed in this scenario (--kill-replica-at), and how its Echoes fared. */
  kill?: KillResult;
  /** The replica that joined in this scenario (--join-replica-at), and how it got its share. */
  join?: JoinResult;
}

export interface ReplicaScenario {
  instance: string;
  rssBytesAtEnd: number;
  cpuSeconds: number;
  /** Echoes in its cache at the scenario's end (its informer's size): its share. */
  echoesCached?: number;
  /** Keys its work queue took in during the scenario: the events it acted on. */
  queueAdds?: number;
  /** Echo watch events the API server sent it during the scenario (before its own filter). */
  echoEvents?: number;
}

export interface KillResult {
  instance: string;
  /** Seconds from the scenario's start to the SIGKILL. */
  afterSeconds: number;
  /** The scenario's harness writes sent before it (the rest wait for it), of all its writes. */
  writesBefore: number;
  of: number;
  /** What the victim reconciled, from the Leases it held just before. */
  owned: Ownership;
  /**
   * The victim's Echoes (by the Leases) written after the kill: sent → reached, in ms; the first
   * one sent is the edit "right after the kill". Target: max within the lease duration + 5 s.
   */
  edits: { count: number; converged: number; firstMs?: number; p50Ms?: number; maxMs?: number };
}

export interface JoinResult {
  /** The newcomer: bench-replica-<R+1>. */
  instance: string;
  /** Seconds from the scenario's start to the newcomer's start. */
  afterSeconds: number;
  /** The scenario's harness writes sent before it started (the rest wait for the start). */
  writesBefore: number;
  of: number;
  bucketCount: number;
  /** Its fair share: floor(buckets / live replicas, itself among them). */
  share: number;
  /**
   * Seconds from its start until its `echo_operator_sharding_buckets_held` reached the share
   * (polled every 200 ms); undefined: not by the scenario's end.
   */
  heldShareSeconds?: number;
  /**
   * Seconds from its start until it held a first bucket: the part of the wait that is its own
   * start (Node, caches, its member Lease seen by the others) rather than the handovers.
   */
  firstBucketSeconds?: number;
  /** Its buckets held when the scenario ended. */
  heldAtEnd?: number;
  /**
   * `echo_operator_sharding_takeovers_total` summed over the live replicas just before the start
   * and at the scenario's end: a join must take no bucket after a lease expiry (target: equal).
   */
  takeovers: { before: number; after: number };
  /** Buckets handed over in the scenario (`_handovers_total`, summed over the replicas). */
  handovers: number;
}

/** One replica's figures over the run. */
export interface ReplicaResult extends ProcessMemory {
  instance: string;
  port: number;
  rss: RssSample[];
  killed?: { scenario: string; afterSeconds: number };
  /** Started in the middle of a scenario (--join-replica-at), not with the others. */
  joined?: { scenario: string; afterSeconds: number };
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
  /** Every scenario the run got to, converged or not. */
  scenarios: ScenarioResult[];
  /** Missing when the run failed before it. */
  floor?: FloorResult;
  /** Summed over the replicas when there are several (peaks: the sum of each one's). */
  memory: ProcessMemory;
  /** The single operator's; with several replicas, each has its own below. */
  rss: RssSample[];
  /** Each replica's figures, when there are several. */
  replicas?: ReplicaResult[];
  /** Echoes written by two replicas within a lease duration (audit log), when there are several. */
  overlaps?: OverlapCount;
  /** Create-burst latencies (ms), sorted, for the chart. */
  createLatenciesMs: number[];
  floorLatenciesMs: number[];
  /** Why the run stopped early; what it measured until then is above. */
  error?: string;
}

const NAMESPACE = 'echo-bench';
/** Where the harness creates Echoes: the cold start's, and the create burst's. */
const ECHO_NAMESPACES = ['bench-a', 'bench-b'];
const RELEASE = 'bench';
const SERVICE_ACCOUNT = `${RELEASE}-echo-operator`;
const USERNAME = `system:serviceaccount:${NAMESPACE}:${SERVICE_ACCOUNT}`;
const CHART = fileURLToPath(new URL('../charts/echo-operator', import.meta.url));
/** Our operator's Node flags as the chart sets them (the image sets the same). */
export function shippedNodeOptions(): string {
  const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as {
    operator: { nodeOptions?: string };
  };
  return values.operator.nodeOptions ?? '';
}

/** Our operator as it ships: compiled by `make build`. */
const MAIN = fileURLToPath(new URL('../dist/operator/src/main.js', import.meta.url));

export function percentiles(values: number[]): Latency {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number): number =>
    sorted.length === 0
      ? 0
      : (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0);
  return { p50: at(0.5), p90: at(0.9), p95: at(0.95), p99: at(0.99), max: sorted.at(-1) ?? 0 };
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

/** Echoes edited right after the operator restarts, in 'edit during a restart'. */
const RESTART_EDITS = 50;

const echoName = (i: number): string => `echo-${String(i).padStart(5, '0')}`;

const hasReplicas =
  (want: number) =>
  (d: BenchDeployment): boolean =>
    d.spec?.replicas === want;
const statusWritten = (e: BenchEcho): boolean =>
  (e.status?.observedGeneration ?? 0) >= (e.metadata.generation ?? 1);
const echoReady = (e: BenchEcho): boolean =>
  e.status?.observedGeneration === e.metadata.generation &&
  (e.status?.readyReplicas ?? 0) === e.spec?.replicas;

/** What a run has measured so far: all of it is reported, even when the run fails midway. */
interface Measured {
  scenarios: ScenarioResult[];
  /** Wall-clock [from, to) of each scenario, for the audit log. */
  windows: [number, number][];
  /** Our operator's processes: one, unless --operator-replicas. */
  replicas: Replica[];
  createLatenciesMs: number[];
  /** Each Echo's uid, by `namespace/name`, as created: which bucket it is in. */
  uids: Map<string, string>;
  echoCreateSeconds?: number;
  floor?: { result: Omit<FloorResult, 'echoCreateSeconds'>; latencies: number[] };
}

/** One process of the operator under test, and what is measured of it. */
interface Replica {
  instance: string;
  /** Its health and metrics port. */
  port: number;
  process?: ChildProcess;
  stats?: ProcessStats;
  /** Its counters when the current scenario began. */
  countsBefore: OperatorCounts;
  /** Its CPU seconds when the current scenario began. */
  cpuBefore: number;
  killed?: { scenario: string; afterSeconds: number };
  joined?: { scenario: string; afterSeconds: number };
}

/** The processes a run starts besides the control plane, stopped however it ends. */
interface Started {
  jaeger?: Jaeger;
}

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  mkdirSync(options.outDir, { recursive: true });
  if (!options.operatorCmd && !existsSync(MAIN))
    throw new Error(`${MAIN} does not exist: run make build (make bench does)`);
  options.progress('starting a local control plane with audit logging');
  // The CRD before the controllers: the garbage collector watches Echoes from its start, so the
  // delete scenario times the collector's work, not its wait for its next resource discovery.
  const cluster = await LocalCluster.start({
    auditLog: true,
    beforeControllers: (admin) => installCrd(admin),
  });
  const admin = KubeClient.fromFile(cluster.kubeconfig);
  const tracker = new Tracker(admin);
  const started: Started = {};
  const measured: Measured = {
    scenarios: [],
    windows: [],
    replicas: [],
    createLatenciesMs: [],
    uids: new Map(),
  };
  try {
    let error: string | undefined;
    try {
      await new BenchRun(options, admin, tracker, measured).all(cluster, started);
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      options.progress(`the run failed; what it measured is kept: ${error}`);
    }
    return await collect(options, cluster, measured, error);
  } finally {
    await Promise.all(measured.replicas.map((r) => stopOperator(r.process)));
    await tracker.close();
    await started.jaeger?.stop();
    await admin.close();
    await cluster.stop();
  }
}

/** The result of a run, finished or not, with the API calls of each scenario's window. */
async function collect(
  options: BenchOptions,
  cluster: LocalCluster,
  measured: Measured,
  error: string | undefined,
): Promise<BenchResult> {
  // The API server logs a request after answering it: a moment for the last ones.
  await new Promise((r) => setTimeout(r, 1000));
  const calls = await callsOf(cluster.state.auditLog ?? '', USERNAME, measured.windows);
  for (const [i, result] of measured.scenarios.entries()) {
    result.apiCalls = calls[i]?.byVerb ?? {};
    const rejected = calls[i]?.rejected ?? [];
    if (rejected.length > 0) result.rejectedCalls = rejected;
  }
  const several = measured.replicas.length > 1;
  const replicaOptions = options.operatorReplicas;
  const bucketCount = replicaOptions
    ? bucketCountOf(replicaFlags(replicaOptions, 0, NAMESPACE))
    : undefined;
  const overlaps = several
    ? await overlapsIn(cluster.state.auditLog ?? '', {
        username: USERNAME,
        namespaces: ECHO_NAMESPACES,
        windowMs: LEASE_DURATION_MS,
        bucketOf: (object) => {
          const uid = measured.uids.get(object);
          return uid === undefined || bucketCount === undefined
            ? undefined
            : bucketOf(uid, bucketCount);
        },
        from: measured.windows[0]?.[0] ?? 0,
        to: measured.windows.at(-1)?.[1] ?? Date.now(),
      })
    : undefined;
  const { floor, echoCreateSeconds } = measured;
  const replicas: ReplicaResult[] = measured.replicas.map((r) => ({
    instance: r.instance,
    port: r.port,
    peakRssBytes: r.stats?.peakRss() ?? 0,
    finalRssBytes: r.stats?.rssNow() ?? 0,
    cpuSeconds: r.stats?.cpuSeconds() ?? 0,
    rss: r.stats?.samples ?? [],
    ...(r.killed ? { killed: r.killed } : {}),
    ...(r.joined ? { joined: r.joined } : {}),
  }));
  for (const r of measured.replicas) r.stats?.stop();
  const { progress: _progress, ...recorded } = options;
  return {
    options: recorded,
    operator: options.operatorCmd ?? `echo-operator (node ${MAIN})`,
    scenarios: measured.scenarios,
    ...(floor && echoCreateSeconds !== undefined
      ? { floor: { ...floor.result, echoCreateSeconds } }
      : {}),
    memory: summed(replicas),
    rss: several ? [] : (replicas[0]?.rss ?? []),
    ...(overlaps ? { replicas, overlaps } : {}),
    createLatenciesMs: measured.createLatenciesMs.sort((a, b) => a - b),
    floorLatenciesMs: (floor?.latencies ?? []).sort((a, b) => a - b),
    ...(error === undefined ? {} : { error }),
  };
}

/** The scenarios of one run, in order, each within the scenario time limit. */
class BenchRun {
  private readonly options: BenchOptions;
  private readonly admin: KubeClient;
  private readonly tracker: Tracker;
  private readonly measured: Measured;
  /** Fires when the operator exits: nothing more can be measured. */
  private readonly operatorGone = new AbortController();
  private readonly clock: ScenarioClock;
  private readonly coldKeys: string[];
  private readonly burstKeys: string[];
  /** Our operator's own counters, scraped from each replica; false for another operator. */
  private scrapes = false;
  /**
   * What processes stopped (a restart) or killed counted in the current scenario: a successor
   * starts at 0, and a killed one is not scraped again.
   */
  private carried: OperatorCounts = noCounts();
  private windowStart = Date.now();
  /** How replica i of the operator under test is started (again). */
  private launch: ((replica: Replica) => ChildProcess) | undefined;
  /** The current scenario's kill (--kill-replica-at), under way or done. */
  private kill: Promise<Kill> | undefined;
  /** The current scenario's join (--join-replica-at), started or done. */
  private join: Promise<Join> | undefined;
  /** performance.now() at the first operator start: the time axis of every replica's RSS. */
  private operatorStart = 0;

  constructor(options: BenchOptions, admin: KubeClient, tracker: Tracker, measured: Measured) {
    this.options = options;
    this.admin = admin;
    this.tracker = tracker;
    this.measured = measured;
    this.clock = new ScenarioClock(
      options.scenarioTimeoutSeconds,
      this.operatorGone.signal,
      options.progress,
    );
    const names = Array.from({ length: options.n }, (_, i) => echoName(i));
    this.coldKeys = names.map((name) => `bench-a/${name}`);
    this.burstKeys = names.map((name) => `bench-b/${name}`);
  }

  async all(cluster: LocalCluster, started: Started): Promise<void> {
    const { n, progress } = this.options;
    for (const ns of [NAMESPACE, ...ECHO_NAMESPACES, 'bench-floor'])
      await this.admin.request({
        method: 'POST',
        path: '/api/v1/namespaces',
        body: { metadata: { name: ns } },
      });
    const kubeconfig = await operatorIdentity(
      cluster,
      this.admin,
      this.options.operatorReplicas?.count ?? 1,
    );
    await this.tracker.start();
    progress(`cold start: creating ${String(n)} Echoes before the operator starts`);
    await this.createEchoes('bench-a');
    if (this.options.traceRatio !== undefined) started.jaeger = await startJaeger();
    const count = this.options.operatorReplicas?.count ?? 1;
    const ports = await freePorts(count);
    this.measured.replicas = ports.map((port, i) => ({
      instance: instanceName(i),
      port,
      countsBefore: noCounts(),
      cpuBefore: 0,
    }));
    // In the memory fit, a scrape's garbage (a series per Echo) would be counted as ours' memory.
    this.scrapes = this.options.operatorCmd === undefined && !this.options.memoryFit;

    this.clock.begin();
    const operatorStart = performance.now();
    this.operatorStart = operatorStart;
    this.windowStart = Date.now();
    this.launch = (replica) => {
      const operator = startOperator(
        this.options,
        kubeconfig,
        replica,
        this.measured.replicas.indexOf(replica),
        started.jaeger,
      );
      replica.process = operator;
      const gone = (why: string): void => {
        const who = count > 1 ? ` (${replica.instance})` : '';
        this.operatorGone.abort(new Error(`the operator under test${who} ${why}`));
      };
      operator.once('exit', (code, signal) => {
        gone(`exited (${code === null ? String(signal) : `code ${String(code)}`})`);
      });
      operator.once('error', (err) => {
        gone(`failed: ${err.message}`);
      });
      if (operator.pid === undefined) throw new Error('the operator under test did not start');
      return operator;
    };
    for (const replica of this.measured.replicas) {
      const operator = this.launch(replica);
      replica.stats = new ProcessStats(operator.pid ?? 0);
    }

    await this.coldStart(operatorStart);
    if (this.options.memoryFit) {
      await this.rest(this.options.memoryFit.restSeconds);
      return;
    }
    const steps: Record<ScenarioKey, () => Promise<void>> = {
      create: () => this.createBurst(),
      scale: () => this.scaleBurst(),
      drift: () => this.driftRepair(),
      restart: () => this.editDuringRestart(),
      steady: () => this.steadyState(),
      delete: () => this.deleteAll(),
      floor: () => this.floor(),
    };
    const chosen = this.options.scenarios ?? (Object.keys(steps) as ScenarioKey[]);
    for (const key of chosen) await steps[key]();
  }

  private async createEchoes(
    namespace: string,
    sent?: Map<string, number>,
    beforeWrite?: () => Promise<void>,
  ): Promise<void> {
    const names = Array.from({ length: this.options.n }, (_, i) => echoName(i));
    await inParallel(names, this.options.clientParallelism, async (name) => {
      await beforeWrite?.();
      sent?.set(`${namespace}/${name}`, performance.now());
      const created = await this.admin.request<{ metadata: { uid: string } }>({
        method: 'POST',
        path: `/apis/example.com/v1/namespaces/${namespace}/echoes`,
        body: echoManifest({ name, replicas: this.options.replicas }),
      });
      this.measured.uids.set(`${namespace}/${name}`, created.metadata.uid);
    });
  }

  /**
   * What each write of the current scenario awaits before it is sent, when a replica is to be
   * killed in it (--kill-replica-at) or to join in it (--join-replica-at): past the midpoint, the
   * kill or the newcomer's start, begun by the first write past it. The writers pause for as long
   * as that takes (a LIST of Leases, a scrape; for a join, a scrape and a spawn, not the handover).
   */
  private midpoint(
    key: ScenarioKey,
    total: number,
    start: number,
  ): (() => Promise<void>) | undefined {
    const { killAt, joinAt } = this.options.operatorReplicas ?? {};
    if (killAt !== key && joinAt !== key) return undefined;
    const before = writesBeforeKill(total);
    let sent = 0;
    return async () => {
      sent++;
      if (sent <= before) return;
      if (killAt === key) {
        this.kill ??= this.killReplica(SCENARIOS[key].name, before, total, start);
        await this.kill;
      }
      if (joinAt === key) {
        this.join ??= this.joinReplica(SCENARIOS[key].name, before, total, start);
        await this.join;
      }
    };
  }

  /**
   * Starts one more replica (bench-replica-<R+1>, a port of its own, the others' flags), after
   * reading the takeovers so far; from then on it is measured like the others. Its buckets held
   * are polled from its start until it holds its fair share.
   */
  private async joinReplica(
    scenario: string,
    sentBefore: number,
    of: number,
    start: number,
  ): Promise<Join> {
    const launch = this.launch;
    const replicaOptions = this.options.operatorReplicas;
    if (!launch || !replicaOptions) throw new Error('the operator under test was never started');
    const live = this.measured.replicas.filter((r) => !r.killed);
    const takeoversBefore = (await Promise.all(live.map((r) => operatorCounts(r.port)))).reduce(
      (a, c) => a + c.takeovers,
      0,
    );
    const [port = 0] = await freePorts(1);
    const index = this.measured.replicas.length;
    const replica: Replica = {
      instance: instanceName(index),
      port,
      countsBefore: noCounts(),
      cpuBefore: 0,
    };
    const bucketCount = bucketCountOf(replicaFlags(replicaOptions, index, NAMESPACE));
    const share = fairShare(bucketCount, live.length + 1);
    this.measured.replicas.push(replica);
    const operator = launch(replica);
    const at = performance.now();
    replica.stats = new ProcessStats(operator.pid ?? 0, this.operatorStart);
    const afterSeconds = (at - start) / 1000;
    replica.joined = { scenario, afterSeconds };
    const held = bucketsHeld(port, share);
    // However the run ends (the harness stops every replica), the polls end with the newcomer.
    operator.once('exit', held.waiting.stop);
    this.options.progress(
      `  joined ${replica.instance} at ${afterSeconds.toFixed(1)} s, ` +
        `after ${String(sentBefore)}/${String(of)} writes; its share: ${String(share)} of ` +
        `${String(bucketCount)} buckets (takeovers so far ${String(takeoversBefore)})`,
    );
    return {
      instance: replica.instance,
      afterSeconds,
      writesBefore: sentBefore,
      of,
      bucketCount,
      share,
      takeoversBefore,
      at,
      replica,
      held,
    };
  }

  /**
   * The current scenario's join, if any: once the scenario has converged, until the newcomer
   * holds its share (within the scenario's time limit), then the takeovers and handovers.
   */
  private async joinOutcome(): Promise<Pick<ScenarioResult, 'join'>> {
    const join = await this.join;
    this.join = undefined;
    if (!join) return {};
    const { at, replica, held, takeoversBefore, ...result } = join;
    const reached = await this.clock.wait(
      `${join.instance} holding its share (${String(join.share)} buckets)`,
      held.waiting,
    );
    held.waiting.stop();
    const heldAt = reached.get('share');
    const firstAt = held.firstAt();
    const live = this.measured.replicas.filter((r) => !r.killed);
    const now = await Promise.all(
      live.map(async (r) => ({ r, counts: await operatorCounts(r.port) })),
    );
    const heldAtEnd = await bucketsHeldNow(replica.port).catch(() => held.last());
    return {
      join: {
        ...result,
        ...(heldAt === undefined ? {} : { heldShareSeconds: (heldAt - at) / 1000 }),
        ...(firstAt === undefined ? {} : { firstBucketSeconds: (firstAt - at) / 1000 }),
        ...(heldAtEnd === undefined ? {} : { heldAtEnd }),
        takeovers: {
          before: takeoversBefore,
          after: now.reduce((a, { counts }) => a + counts.takeovers, 0),
        },
        handovers: now.reduce(
          (a, { r, counts }) => a + counts.handovers - r.countsBefore.handovers,
          this.carried.handovers,
        ),
      },
    };
  }

  /** SIGKILLs the replica that reconciles the most, by the Leases, noting what it held. */
  private async killReplica(
    scenario: string,
    sentBefore: number,
    of: number,
    start: number,
  ): Promise<Kill> {
    const live = this.measured.replicas.filter((r) => !r.killed);
    const { items: leases } = await this.admin.request<{ items: LeaseView[] }>({
      path: `/apis/coordination.k8s.io/v1/namespaces/${NAMESPACE}/leases`,
    });
    const chosen = victimOf(
      leases,
      live.map((r) => r.instance),
    );
    const victim = live.find((r) => r.instance === chosen);
    if (!victim) throw new Error('no replica left to kill');
    // Its counters and CPU until now: a dead process answers no scrape and has no /proc.
    if (this.scrapes)
      this.carried = plus(
        this.carried,
        since(await operatorCounts(victim.port), victim.countsBefore),
      );
    victim.stats?.cpuSeconds();
    victim.process?.removeAllListeners('exit');
    victim.process?.removeAllListeners('error');
    victim.process?.kill('SIGKILL');
    const at = performance.now();
    const afterSeconds = (at - start) / 1000;
    victim.killed = { scenario, afterSeconds };
    const owned = ownership(leases, victim.instance);
    this.options.progress(
      `  killed ${victim.instance} (SIGKILL) at ${afterSeconds.toFixed(1)} s, ` +
        `after ${String(sentBefore)}/${String(of)} writes; it held ${describeOwnership(owned)}`,
    );
    return { instance: victim.instance, afterSeconds, writesBefore: sentBefore, of, owned, at };
  }

  /**
   * The current scenario's kill, if any, with the victim's Echoes written after it: from when
   * each write was sent until its goal was reached.
   */
  private async killOutcome(
    sent: Map<string, number>,
    reached: Reached,
  ): Promise<Pick<ScenarioResult, 'kill'>> {
    const kill = await this.kill;
    this.kill = undefined;
    if (!kill) return {};
    const { at, ...result } = kill;
    const theirs = [...sent]
      .filter(([key, sentAt]) => {
        const uid = this.tracker.echoes.informer.get(key)?.metadata.uid;
        return sentAt >= at && uid !== undefined && owns(kill.owned, uid);
      })
      .sort(([, a], [, b]) => a - b);
    const latencies = theirs.flatMap(([key, sentAt]) => {
      const reachedAt = reached.get(key);
      return reachedAt === undefined ? [] : [reachedAt - sentAt];
    });
    const [first] = theirs;
    const firstAt = first && reached.get(first[0]);
    const spread = latencies.length > 0 ? percentiles(latencies) : undefined;
    return {
      kill: {
        ...result,
        edits: {
          count: theirs.length,
          converged: latencies.length,
          ...(first && firstAt !== undefined ? { firstMs: firstAt - first[1] } : {}),
          ...(spread ? { p50Ms: spread.p50, maxMs: spread.max } : {}),
        },
      },
    };
  }

  /** Closes the current scenario: its window, counters, memory and CPU, and what it missed. */
  private async finish(
    name: string,
    extra: Pick<ScenarioResult, 'seconds' | 'times' | 'latencyMs' | 'kill' | 'join'>,
  ): Promise<void> {
    const end = Date.now();
    const replicas = this.measured.replicas;
    const live = replicas.filter((r) => !r.killed);
    const scraped = this.scrapes
      ? new Map(
          await Promise.all(live.map(async (r) => [r, await operatorCounts(r.port)] as const)),
        )
      : undefined;
    const counts = scraped
      ? [...scraped].reduce((a, [r, now]) => plus(a, since(now, r.countsBefore)), this.carried)
      : undefined;
    const parts = replicas.map((r) => {
      const cpu = r.stats?.cpuSeconds() ?? 0;
      const now = scraped?.get(r);
      return {
        replica: r,
        cpu,
        part: {
          instance: r.instance,
          // A killed replica holds nothing; its CPU is what it used until the kill.
          rssBytesAtEnd: r.killed ? 0 : (r.stats?.rssNow() ?? 0),
          cpuSeconds: cpu - r.cpuBefore,
          ...(now
            ? {
                echoesCached: now.echoesCached,
                queueAdds: now.queueAdds - r.countsBefore.queueAdds,
                echoEvents: now.echoEvents - r.countsBefore.echoEvents,
              }
            : {}),
        },
      };
    });
    const shortfall = this.clock.shortfall;
    if (shortfall)
      this.options.progress(
        `  ${name} did not converge in ${String(this.options.scenarioTimeoutSeconds)} s: ` +
          `${String(shortfall.reached)}/${String(shortfall.of)} ${shortfall.waitingFor}`,
      );
    this.measured.windows.push([this.windowStart, end]);
    this.measured.scenarios.push({
      name,
      ...extra,
      ...(shortfall ? { didNotConverge: shortfall } : {}),
      // Counted once the run is over: the API server logs a request after answering it.
      apiCalls: {},
      ...(counts
        ? {
            clientCalls: counts.requests,
            reconciles: counts.reconciles,
            queueWaits: counts.queueWaits,
          }
        : {}),
      rssBytesAtEnd: parts.reduce((a, p) => a + p.part.rssBytesAtEnd, 0),
      cpuSeconds: parts.reduce((a, p) => a + p.part.cpuSeconds, 0),
      ...(replicas.length > 1 ? { replicas: parts.map((p) => p.part) } : {}),
    });
    for (const { replica, cpu } of parts) {
      replica.countsBefore = scraped?.get(replica) ?? replica.countsBefore;
      replica.cpuBefore = cpu;
    }
    this.carried = noCounts();
    this.windowStart = end;
  }

  private async coldStart(operatorStart: number): Promise<void> {
    const { replicas } = this.options;
    const keys = this.coldKeys;
    const deployments = this.tracker.deployments.until(keys, hasReplicas(replicas));
    const statuses = this.tracker.echoes.until(keys, statusWritten);
    const deployed = await this.clock.wait(
      `Deployments with ${String(replicas)} replicas`,
      deployments,
    );
    const statused = await this.clock.wait('statuses written', statuses);
    await this.finish('cold start', {
      seconds: lastOf(deployed, keys.length, operatorStart),
      times: { untilEveryStatusSeconds: lastOf(statused, keys.length, operatorStart) },
    });
  }

  /**
   * The memory fit's rest point: once nothing has changed for 3 s (the cold start's last status
   * writes answered), `seconds` of idle; the scenario's RSS at its end is the fit's figure.
   */
  private async rest(seconds: number): Promise<void> {
    this.clock.begin();
    const start = performance.now();
    await this.clock.quiet(this.tracker, QUIET_MS);
    const quietAt = performance.now();
    this.options.progress(`rest: quiet; idle for ${String(seconds)} s, then RSS is read`);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    await this.finish('rest', { times: { untilQuietSeconds: (quietAt - start) / 1000 } });
  }

  /** N Echoes created at once on an idle, synced operator. */
  private async createBurst(): Promise<void> {
    const { n, replicas } = this.options;
    await settle();
    this.clock.begin();
    this.options.progress(`create burst: ${String(n)} Echoes as fast as the API server takes them`);
    const sent = new Map<string, number>();
    const start = performance.now();
    const keys = this.burstKeys;
    const burst = this.tracker.deployments.until(keys, hasReplicas(replicas));
    await this.createEchoes('bench-b', sent, this.midpoint('create', n, start));
    const echoCreatesSeconds = (performance.now() - start) / 1000;
    this.measured.echoCreateSeconds = echoCreatesSeconds;
    const reached = await this.clock.wait(`Deployments with ${String(replicas)} replicas`, burst);
    const latencies = [...reached].map(([key, at]) => at - (sent.get(key) ?? 0));
    this.measured.createLatenciesMs = latencies;
    await this.finish('create burst', {
      ...(await this.killOutcome(sent, reached)),
      ...(await this.joinOutcome()),
      seconds: lastOf(reached, keys.length, start),
      times: { echoCreatesSeconds },
      ...(reached.size === keys.length ? { latencyMs: percentiles(latencies) } : {}),
    });
  }

  private async scaleBurst(): Promise<void> {
    const want = this.options.replicas + 1;
    await settle();
    this.clock.begin();
    this.options.progress(`scale burst: every Echo of the burst to ${String(want)} replicas`);
    const keys = this.burstKeys;
    const start = performance.now();
    const scaled = this.tracker.deployments.until(keys, hasReplicas(want));
    // The cluster's own pace, whatever the operator: the controller manager creating the pods and
    // kwok making them ready. An Echo can be Ready no sooner than its Deployment's pods.
    const podsReady = this.tracker.deployments.until(
      keys,
      (d) => hasReplicas(want)(d) && d.status?.readyReplicas === want,
    );
    const sent = await this.scaleEchoes(keys, want, this.midpoint('scale', keys.length, start));
    const reached = await this.clock.wait(`Deployments with ${String(want)} replicas`, scaled);
    // The scenario lasts until the new pods are ready and the Echoes say so: the status writes
    // that follow belong to it, and the next scenario starts on a quiet operator.
    this.options.progress('  waiting for every Echo to report its pods ready, then for quiet');
    const every = [...this.coldKeys, ...keys];
    const ready = await this.clock.wait(
      'Echoes reporting their pods ready',
      this.tracker.echoes.until(every, echoReady),
    );
    await this.clock.quiet(this.tracker, QUIET_MS);
    podsReady.stop();
    const pods = await podsReady.reached;
    await this.finish('scale burst', {
      ...(await this.killOutcome(sent, reached)),
      ...(await this.joinOutcome()),
      seconds: lastOf(reached, keys.length, start),
      times: {
        untilEveryEchoReadySeconds: lastOf(ready, every.length, start),
        untilEveryPodReadySeconds: lastOf(pods, keys.length, start),
      },
      ...(reached.size === keys.length
        ? { latencyMs: percentiles(keys.map((k) => (reached.get(k) ?? 0) - (sent.get(k) ?? 0))) }
        : {}),
    });
  }

  /** K Deployments of the burst scaled by hand; the operator must put them back. */
  private async driftRepair(): Promise<void> {
    const { replicas, progress } = this.options;
    this.clock.begin();
    const wanted = Math.min(this.options.drift, this.options.n);
    // Only Deployments that exist can be edited: an operator that never made them falls short.
    const keys = this.burstKeys
      .filter((k) => this.tracker.deployments.informer.get(k))
      .slice(0, wanted);
    if (keys.length < wanted)
      this.clock.miss('Deployments of the burst to edit', keys.length, wanted);
    progress(`drift repair: ${String(keys.length)} Deployments scaled by hand`);
    const start = performance.now();
    const editedAt = new Map<string, bigint>();
    const sent = new Map<string, number>();
    const beforeWrite = this.midpoint('drift', keys.length, start);
    await inParallel(keys, this.options.clientParallelism, async (key) => {
      const [ns = '', name = ''] = key.split('/');
      await beforeWrite?.();
      sent.set(key, performance.now());
      const edited = await this.admin.request<BenchDeployment>({
        method: 'PATCH',
        path: `/apis/apps/v1/namespaces/${ns}/deployments/${name}`,
        contentType: 'application/merge-patch+json',
        body: { spec: { replicas: replicas + 5 } },
      });
      editedAt.set(key, BigInt(edited.metadata.resourceVersion ?? '0'));
    });
    const reverted = await this.clock.wait(
      `Deployments back to ${String(replicas + 1)} replicas`,
      this.tracker.deployments.until(
        keys,
        (d) =>
          d.spec?.replicas === replicas + 1 &&
          BigInt(d.metadata.resourceVersion ?? '0') > (editedAt.get(objectKey(d)) ?? 0n),
      ),
    );
    await this.driftSettled(keys);
    const complete = keys.length === wanted && reverted.size === keys.length;
    await this.finish('drift repair', {
      ...(await this.killOutcome(sent, reverted)),
      ...(await this.joinOutcome()),
      seconds: complete ? lastOf(reverted, keys.length, start) : undefined,
      ...(complete
        ? { latencyMs: percentiles(keys.map((k) => (reverted.get(k) ?? 0) - (sent.get(k) ?? 0))) }
        : {}),
    });
  }

  /** Until the surplus pods are gone and the Echoes' status says so, as after the scale burst. */
  private async driftSettled(keys: string[]): Promise<void> {
    await this.clock.wait(
      'Deployments with their surplus pods gone',
      this.tracker.deployments.until(
        keys,
        (d) =>
          d.status?.observedGeneration === d.metadata.generation &&
          d.status?.replicas === d.spec?.replicas &&
          d.status?.readyReplicas === d.spec?.replicas,
      ),
    );
    await this.clock.wait(
      'Echoes reporting their pods ready',
      this.tracker.echoes.until(keys, (e) => (e.status?.readyReplicas ?? 0) === e.spec?.replicas),
    );
    await this.clock.quiet(this.tracker, QUIET_MS);
  }

  /**
   * Every Echo converged, the operator restarted; as soon as it is ready (its caches synced: the
   * moment its first pass over every Echo begins) 50 Echoes are scaled, of the burst if there was
   * one, else of the cold start. Reported: how long each edit took to reach its Deployment (p50,
   * p95, max), beside how long the restart's full pass took (ours: from its metrics, until it has
   * reconciled every Echo and nothing waits at low priority). Another operator's readiness is not
   * known: its edits follow its start.
   */
  private async editDuringRestart(): Promise<void> {
    const { progress, replicas } = this.options;
    const launch = this.launch;
    if (!launch) throw new Error('the operator under test was never started');
    const created = this.options.scenarios?.includes('create') ?? true;
    const every = created ? [...this.coldKeys, ...this.burstKeys] : this.coldKeys;
    await this.converged(every);
    this.clock.begin();
    const pool = created ? this.burstKeys : this.coldKeys;
    const count = Math.min(RESTART_EDITS, pool.length);
    // Spread over the keys, so that in a queue in key order they would wait behind the others.
    const edited = Array.from(
      { length: count },
      (_, i) => pool[Math.floor(((i + 1) * pool.length) / count) - 1] ?? '',
    );
    const want = replicas + 2;
    progress(
      `edit during a restart: ${String(every.length)} Echoes converged; the operator restarted, ` +
        `then ${String(count)} of them scaled to ${String(want)} as it starts`,
    );
    // Every replica still running restarts (one killed earlier stays dead).
    const live = this.measured.replicas.filter((r) => !r.killed);
    const cpu = new Map(live.map((r) => [r, r.stats?.cpuSeconds() ?? 0]));
    for (const r of live) {
      r.process?.removeAllListeners('exit');
      r.process?.removeAllListeners('error');
      if (this.scrapes) {
        const counted = await operatorCounts(r.port);
        this.carried = plus(this.carried, since(counted, r.countsBefore));
        r.countsBefore = noCounts();
      }
    }
    await Promise.all(live.map((r) => stopOperator(r.process)));
    const start = performance.now();
    for (const r of live) {
      const pid = launch(r).pid ?? 0;
      r.stats?.follow(pid, cpu.get(r) ?? 0);
    }
    const ours = this.scrapes;
    const ports = live.map((r) => r.port);
    if (ours) await this.clock.wait('the restarted operator ready', readyz(ports));
    const readyAt = performance.now();
    const scaled = this.tracker.deployments.until(edited, hasReplicas(want));
    const pass = ours ? passDone(ports, every.length) : undefined;
    const sent = await this.scaleEchoes(edited, want);
    const reached = await this.clock.wait(
      `edited Deployments with ${String(want)} replicas`,
      scaled,
    );
    const passed = pass && (await this.clock.wait('the full pass over every Echo', pass));
    progress('  waiting for the edited Echoes to report their pods ready, then for quiet');
    await this.clock.wait(
      'edited Echoes reporting their pods ready',
      this.tracker.echoes.until(edited, echoReady),
    );
    await this.clock.quiet(this.tracker, QUIET_MS);
    const latencies = edited.flatMap((k) => {
      const at = reached.get(k);
      return at === undefined ? [] : [at - (sent.get(k) ?? 0)];
    });
    const complete = latencies.length === count;
    const latency = complete ? percentiles(latencies) : undefined;
    const passAt = passed?.get('pass');
    await this.finish('edit during a restart', {
      seconds: complete ? lastOf(reached, count, start) : undefined,
      times: {
        untilReadySeconds: (readyAt - start) / 1000,
        fullPassSeconds: passAt === undefined ? undefined : (passAt - start) / 1000,
        editP50Seconds: latency && latency.p50 / 1000,
        editP95Seconds: latency && latency.p95 / 1000,
        editMaxSeconds: latency && latency.max / 1000,
      },
      ...(latency ? { latencyMs: latency } : {}),
    });
  }

  /**
   * Until the cluster and the operator are done with what came before: every Deployment seen by
   * its controller, every Echo's status current with its pods ready, then quiet. After a burst at
   * large N the controller manager is minutes behind the operator, and the status writes it
   * brings would fall in the next scenario. Counted in the scenario before.
   */
  private async converged(keys: string[]): Promise<void> {
    await settle();
    this.options.progress('  first, every Deployment and Echo up to date, then quiet');
    await this.clock.wait(
      'Deployments seen by their controller',
      this.tracker.deployments.until(
        keys,
        (d) => d.status?.observedGeneration === d.metadata.generation,
      ),
    );
    await this.clock.wait(
      'Echoes reporting their pods ready',
      this.tracker.echoes.until(keys, echoReady),
    );
    await this.clock.quiet(this.tracker, QUIET_MS);
  }

  /** Idle across a resync: the target is zero writes. */
  private async steadyState(): Promise<void> {
    const { idleSeconds, resyncSeconds } = this.options;
    this.clock.begin();
    this.options.progress(
      `steady state: idle for ${String(idleSeconds)} s (resync every ${String(resyncSeconds)} s)`,
    );
    await new Promise((r) => setTimeout(r, idleSeconds * 1000));
    await this.finish('steady state', {});
  }

  /** Sets spec.replicas of each Echo of `keys`; when each edit was sent, by key. */
  private async scaleEchoes(
    keys: string[],
    want: number,
    beforeWrite?: () => Promise<void>,
  ): Promise<Map<string, number>> {
    const sent = new Map<string, number>();
    await inParallel(keys, this.options.clientParallelism, async (key) => {
      const [ns = '', name = ''] = key.split('/');
      await beforeWrite?.();
      sent.set(key, performance.now());
      await this.admin.request({
        method: 'PATCH',
        path: `/apis/example.com/v1/namespaces/${ns}/echoes/${name}`,
        contentType: 'application/merge-patch+json',
        body: { spec: { replicas: want } },
      });
    });
    return sent;
  }

  /** Every Echo deleted; the garbage collector removes the Deployments. */
  private async deleteAll(): Promise<void> {
    this.clock.begin();
    this.options.progress('delete: every Echo, then wait for the garbage collector');
    const keys = [...this.coldKeys, ...this.burstKeys];
    const start = performance.now();
    // One DELETE per Echo: a deletecollection of thousands outlasts the API server's own
    // 60 s request timeout.
    await inParallel(keys, this.options.clientParallelism, async (key) => {
      const [ns = '', name = ''] = key.split('/');
      await this.admin.request({
        method: 'DELETE',
        path: `/apis/example.com/v1/namespaces/${ns}/echoes/${name}`,
      });
    });
    await this.tracker.deployments.gone(keys, this.clock.deadlineAt);
    const left = keys.filter((k) => this.tracker.deployments.informer.get(k)).length;
    if (left > 0)
      this.clock.miss(
        'Deployments removed by the garbage collector',
        keys.length - left,
        keys.length,
      );
    await this.finish('delete', {
      seconds: left === 0 ? (performance.now() - start) / 1000 : undefined,
    });
  }

  /** The same Deployments applied by a bare client, no operator logic. */
  private async floor(): Promise<void> {
    this.clock.begin();
    this.options.progress(`floor: ${String(this.options.n)} Deployments applied directly`);
    this.measured.floor = await measureFloor(this.admin, this.tracker, this.options, this.clock);
  }
}

/** A kill under way or done, with when it happened (performance.now()). */
type Kill = Omit<KillResult, 'edits'> & { at: number };

/** A join begun: when the newcomer started (performance.now()), and the wait for its share. */
type Join = Omit<
  JoinResult,
  'heldShareSeconds' | 'firstBucketSeconds' | 'heldAtEnd' | 'takeovers' | 'handovers'
> & {
  at: number;
  replica: Replica;
  takeoversBefore: number;
  held: BucketsHeld;
};

/** SIGTERM, then SIGKILL after 10 s: an operator that ignores SIGTERM must not hold the harness. */
async function stopOperator(operator: ChildProcess | undefined): Promise<void> {
  if (operator === undefined) return;
  if (operator.exitCode !== null || operator.signalCode !== null) return;
  const exited = once(operator, 'exit');
  operator.kill('SIGTERM');
  const timer = setTimeout(() => operator.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
/** A moment for in-flight status writes to land before the next scenario starts counting. */
async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 2000));
}

/**
 * The chart's ServiceAccount and RBAC in the bench namespace, and a kubeconfig with its token; for
 * several replicas, as the chart renders them (their Leases' Role among the rest).
 */
async function operatorIdentity(
  cluster: LocalCluster,
  admin: KubeClient,
  replicas: number,
): Promise<string> {
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
      ...(replicas > 1 ? ['--set', `replicaCount=${String(replicas)}`] : []),
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
  replica: Replica,
  index: number,
  jaeger: Jaeger | undefined,
): ChildProcess {
  const env = { ...process.env, [options.kubeconfigEnv]: kubeconfig };
  // Dies with the harness, however it ends (same pid: setpriv execs, so /proc stats stay its own).
  const [file, args] = options.operatorCmd
    ? diesWithParent('bash', ['-c', `exec ${options.operatorCmd}`])
    : diesWithParent(process.execPath, [
        MAIN,
        `--kubeconfig=${kubeconfig}`,
        `--port=${String(replica.port)}`,
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
        ...(options.operatorReplicas
          ? replicaFlags(options.operatorReplicas, index, NAMESPACE)
          : []),
      ]);
  // As the chart runs it: Node's flags through the environment.
  const childEnv = options.operatorCmd ? env : { ...env, NODE_OPTIONS: options.nodeOptions };
  const log =
    index === 0 && (options.operatorReplicas?.count ?? 1) === 1
      ? 'operator.log'
      : `operator-${replica.instance}.log`;
  return spawnLogged(file, args, childEnv, join(options.outDir, log));
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

/** Polls `check` every `everyMs` until it holds: one goal, `key`, reached when it does. */
function polled(key: string, check: () => Promise<boolean>, everyMs = 100): Waiting {
  const state = { stopped: false };
  let hit: number | undefined;
  const reached = (async () => {
    while (!state.stopped && hit === undefined) {
      if (await check().catch(() => false)) hit = performance.now();
      else await new Promise((r) => setTimeout(r, everyMs));
    }
    return new Map(hit === undefined ? [] : [[key, hit]]);
  })();
  return {
    reached,
    of: 1,
    count: () => (hit === undefined ? 0 : 1),
    stop: () => {
      state.stopped = true;
    },
  };
}

/** The buckets a sharded replica holds now, from its metrics. */
async function bucketsHeldNow(port: number): Promise<number | undefined> {
  const res = await fetch(`http://127.0.0.1:${String(port)}/metrics`, {
    signal: AbortSignal.timeout(2000),
  });
  const line = (await res.text()).split('\n').find((l) => seriesOf(l) === BUCKETS_HELD);
  return line === undefined ? undefined : valueOf(line);
}

/** The wait for a replica's share, and what the polls saw on the way. */
interface BucketsHeld {
  waiting: Waiting;
  /** The last count read. */
  last: () => number | undefined;
  /** performance.now() of the first poll that saw a bucket held. */
  firstAt: () => number | undefined;
}

/**
 * A replica holds at least `share` buckets, polled every 200 ms from its start (it answers no
 * scrape until it listens).
 */
function bucketsHeld(port: number, share: number): BucketsHeld {
  let last: number | undefined;
  let firstAt: number | undefined;
  const waiting = polled(
    'share',
    async () => {
      last = (await bucketsHeldNow(port)) ?? last;
      if (last !== undefined && last > 0) firstAt ??= performance.now();
      return last !== undefined && last >= share;
    },
    200,
  );
  return { waiting, last: () => last, firstAt: () => firstAt };
}

/** Our operator's /readyz answers 200 on every replica: caches synced, controllers running. */
function readyz(ports: number[]): Waiting {
  return polled('ready', async () => {
    const answers = await Promise.all(
      ports.map(async (port) => {
        const res = await fetch(`http://127.0.0.1:${String(port)}/readyz`, {
          signal: AbortSignal.timeout(2000),
        });
        await res.body?.cancel();
        return res.ok;
      }),
    );
    return answers.every(Boolean);
  });
}

/**
 * Our operator's first pass is over: its replicas have reconciled at least `echoes` times since
 * they started, and no key waits at low priority (the replay's) in any of them.
 */
function passDone(ports: number[], echoes: number): Waiting {
  return polled('pass', async () => {
    let reconciles = 0;
    let lowEverywhere = true;
    for (const port of ports) {
      const res = await fetch(`http://127.0.0.1:${String(port)}/metrics`, {
        signal: AbortSignal.timeout(2000),
      });
      let low = -1;
      for (const line of (await res.text()).split('\n')) {
        if (line.startsWith('controller_runtime_reconcile_total{')) reconciles += valueOf(line);
        else if (line.startsWith('workqueue_depth{') && line.includes('priority="-100"'))
          low = valueOf(line);
      }
      lowEverywhere &&= low === 0;
    }
    return reconciles >= echoes && lowEverywhere;
  });
}

interface OperatorCounts {
  /** API requests by verb. */
  requests: VerbCounts;
  /** Reconciles by result (success, requeue_after, error). */
  reconciles: VerbCounts;
  /** Items picked from the work queue, and those that had waited past its aging bound. */
  queueWaits: VerbCounts;
  /** Keys added to the work queue: the events the replica acted on. */
  queueAdds: number;
  /** Echoes in its cache now (a gauge: not a count since the scenario began). */
  echoesCached: number;
  /** Echo watch events received. */
  echoEvents: number;
  /** Buckets taken after their Lease expired (sharding), since the process started. */
  takeovers: number;
  /** Buckets drained and released for another replica (sharding), since the process started. */
  handovers: number;
}

const noCounts = (): OperatorCounts => ({
  requests: {},
  reconciles: {},
  queueWaits: {},
  queueAdds: 0,
  echoesCached: 0,
  echoEvents: 0,
  takeovers: 0,
  handovers: 0,
});

/** What a replica counted from `before` to `now`. */
function since(now: OperatorCounts, before: OperatorCounts): OperatorCounts {
  return {
    requests: subtract(now.requests, before.requests),
    reconciles: subtract(now.reconciles, before.reconciles),
    queueWaits: subtract(now.queueWaits, before.queueWaits),
    queueAdds: now.queueAdds - before.queueAdds,
    echoesCached: now.echoesCached,
    echoEvents: now.echoEvents - before.echoEvents,
    takeovers: now.takeovers - before.takeovers,
    handovers: now.handovers - before.handovers,
  };
}

/** Two replicas' counts (or a replica's before and after a restart) together. */
function plus(a: OperatorCounts, b: OperatorCounts): OperatorCounts {
  return {
    requests: sum(a.requests, b.requests),
    reconciles: sum(a.reconciles, b.reconciles),
    queueWaits: sum(a.queueWaits, b.queueWaits),
    queueAdds: a.queueAdds + b.queueAdds,
    echoesCached: a.echoesCached + b.echoesCached,
    echoEvents: a.echoEvents + b.echoEvents,
    takeovers: a.takeovers + b.takeovers,
    handovers: a.handovers + b.handovers,
  };
}

/** The queue-duration bucket at the aging bound: `le="30"`. */
const AGING_BUCKET = `le="${String(DEFAULT_AGING_MS / 1000)}"`;

/** The Echo informer's cache size, in our operator's metrics. */
const ECHO_CACHE_SERIES = 'echo_operator_informer_objects{informer="echoes"}';

/** The Echo informer's watch events, by type. */
const ECHO_EVENTS_SERIES = 'echo_operator_informer_events_total{informer="echoes",';

/** Sharding's series read here: a gauge and two counters, none with labels. */
const BUCKETS_HELD = 'echo_operator_sharding_buckets_held';
const TAKEOVERS = 'echo_operator_sharding_takeovers_total';
const HANDOVERS = 'echo_operator_sharding_handovers_total';

/** The value of a line of the Prometheus text format. */
const valueOf = (line: string): number => Number(line.slice(line.lastIndexOf(' ') + 1));

/** The series name of a line of the Prometheus text format ('' for a comment). */
const seriesOf = (line: string): string =>
  line.startsWith('#') ? '' : (/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? '');

/** Our operator's own request counters by verb and reconciles by result, from its /metrics. */
async function operatorCounts(port: number): Promise<OperatorCounts> {
  const res = await fetch(`http://127.0.0.1:${String(port)}/metrics`, {
    signal: AbortSignal.timeout(10_000),
  });
  const counts = noCounts();
  const add = (into: VerbCounts, key: string, line: string): void => {
    into[key] = (into[key] ?? 0) + valueOf(line);
  };
  const withinAgingBound: VerbCounts = {};
  for (const line of (await res.text()).split('\n')) {
    if (line.startsWith('echo_operator_kubernetes_requests_total{'))
      add(counts.requests, /verb="([^"]*)"/.exec(line)?.[1] ?? '', line);
    else if (line.startsWith('controller_runtime_reconcile_total{'))
      add(counts.reconciles, /result="([^"]*)"/.exec(line)?.[1] ?? '', line);
    else if (line.startsWith('workqueue_queue_duration_seconds_count{'))
      add(counts.queueWaits, 'picked', line);
    else if (line.startsWith('workqueue_adds_total{')) counts.queueAdds += valueOf(line);
    else if (line.startsWith(`${ECHO_CACHE_SERIES} `)) counts.echoesCached = valueOf(line);
    else if (line.startsWith(ECHO_EVENTS_SERIES)) counts.echoEvents += valueOf(line);
    else if (seriesOf(line) === TAKEOVERS) counts.takeovers += valueOf(line);
    else if (seriesOf(line) === HANDOVERS) counts.handovers += valueOf(line);
    else if (
      line.startsWith('workqueue_queue_duration_seconds_bucket{') &&
      line.includes(AGING_BUCKET)
    )
      add(withinAgingBound, 'picked', line);
  }
  counts.queueWaits.pastAgingBound =
    (counts.queueWaits.picked ?? 0) - (withinAgingBound.picked ?? 0);
  return counts;
}

function sum(a: VerbCounts, b: VerbCounts): VerbCounts {
  const out: VerbCounts = { ...a };
  for (const [verb, count] of Object.entries(b)) out[verb] = (out[verb] ?? 0) + count;
  return out;
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
  clock: ScenarioClock,
): Promise<{ result: Omit<FloorResult, 'echoCreateSeconds'>; latencies: number[] }> {
  const names = Array.from({ length: options.n }, (_, i) => echoName(i));
  const keys = names.map((name) => `bench-floor/${name}`);
  const sent = new Map<string, number>();
  const start = performance.now();
  const seen = tracker.deployments.until(keys, (d) => d.spec?.replicas === options.replicas);
  await inParallel(names, options.clientParallelism, async (name) => {
    const echo = cachedEcho({
      name,
      namespace: 'bench-floor',
      uid: 'floor',
      replicas: options.replicas,
    });
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
  const reached = await clock.wait('floor Deployments', seen);
  if (clock.shortfall)
    throw new Error(
      `the floor did not converge: ${String(reached.size)}/${String(keys.length)} Deployments`,
    );
  const latencies = keys.map((k) => (reached.get(k) ?? 0) - (sent.get(k) ?? 0));
  return {
    result: {
      applySeconds: (Math.max(...reached.values()) - start) / 1000,
      latencyMs: percentiles(latencies),
    },
    latencies,
  };
}
