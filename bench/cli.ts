// `make bench`: runs the benchmark scenarios against our operator (or any command serving the same
// CRD) on a local control plane of its own, then prints a table and writes JSON and an SVG.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { runBench, shippedNodeOptions, type BenchOptions, type BenchResult } from './run.ts';
import { svgReport, textReport } from './report.ts';
import {
  compareSvg,
  compareTable,
  parseContender,
  runComparison,
  summarize,
  type Contender,
} from './compare.ts';
import { parseScenarios } from './scenarios.ts';
import { LEASE_DURATION_MS, parseReplicaOptions } from './replicas.ts';
import { memoryFitSvg, memoryFitTable, parseMemoryFit, summarizeMemoryFit } from './memory-fit.ts';

const USAGE = `Usage: node bench/cli.ts [flags]

Starts a local control plane with audit logging, runs the operator under test as a
ServiceAccount with the chart's RBAC, and measures: cold start, create burst, scale burst,
drift repair, edit during a restart (the operator restarted over 2N converged Echoes, 50 of them
scaled as soon as it is ready: their time to the Deployment, p50/p95/max, beside the restart's
full pass), steady state (across one resync) and delete, plus a floor (the same Deployments
applied by a bare client). API calls are counted from the API server's audit log.

  --n N                  Echoes per scenario (default 1000)
  --replicas R           spec.replicas of each Echo (default 1)
  --drift K              Deployments edited by hand in drift repair (default N/10, at most 100)
  --idle S               seconds idle in steady state (default 45)
  --resync S             our operator's resync period in seconds (default 30, shorter than --idle)
  --concurrency C        our operator's --concurrency (default 16, as the operator's)
  --trace-ratio R        trace this fraction of reconciles into a Jaeger of the run (default off)
  --node-options OPTS    our operator's NODE_OPTIONS instead of the chart's operator.nodeOptions
  --operator-cmd CMD     benchmark another operator: a shell command line, run with exec
  --kubeconfig-env NAME  how that operator takes its kubeconfig (default KUBECONFIG)
  --parallel P           objects the harness creates or patches at once (default 64)
  --scenarios LIST       only these scenarios after the cold start, e.g. create,restart (each
                         with the ones it builds on): create, scale, drift, restart, steady,
                         delete, floor (default every one)
  --scenario-timeout S   a scenario not done in S seconds is reported as "did not converge",
                         with what it reached, and the run goes on (default 600)
  --out DIR              where bench.json, bench.svg and operator.log go (default bench/results)

Several replicas of our operator (active-active sharding):
  --operator-replicas R  processes of our operator (default 1), each with --sharding=true, its own
                         --instance (bench-replica-<i>) and --port, Leases in the bench namespace;
                         memory and CPU per replica and summed, the Echoes each one caches, and
                         the overlaps in the audit log (an Echo written by two replicas within
                         ${String(LEASE_DURATION_MS / 1000)} s, the lease duration)
  --kill-replica-at S    SIGKILL the replica holding the most Leases once half the writes of
                         scenario S are answered (create, scale or drift); the scenario must still
                         converge, and the dead replica's Echoes written after the kill are timed
  --join-replica-at S    start one more replica (bench-replica-<R+1>, the same flags) once half the
                         writes of scenario S are sent (create, scale or drift; sharding only, not
                         the scenario of --kill-replica-at): how long until it holds its fair
                         share (floor(buckets / live replicas)), the takeovers summed over the
                         replicas across the join (target 0: every bucket handed over) and the
                         handovers; from then on it is measured like the others
  --replica-mode MODE    sharding (default), or leader-elect: one replica leads, the others
                         stand by (the same mechanics on an operator without sharding)

Comparisons (runs interleaved: ours, peer, ours, peer, ...):
  --compare LABEL=CMD    another operator to compare with, as --operator-cmd; repeatable
  --repeat K             runs of each operator (default 3 with --compare, else 1); the table
                         gives medians (min–max) and ratios to the first operator
  --label LABEL          the first operator's name in the table (default "ours")
  Writes compare.json and compare.svg in --out, and each run's own files in <LABEL>-<round>/.

Memory: fixed cost and cost per Echo (works with --compare and --repeat as above):
  --memory-fit N1,N2,...  instead of the scenarios: at each N (e.g. 0,1000,5000,10000), N Echoes
                         created before the operator starts, its cold start (every Deployment,
                         every status), then a rest; RSS at rest and peak RSS, and per operator
                         the line fixed MiB + KiB per Echo through the medians (least squares, R²,
                         residuals). Each round runs every N, every operator at each N.
                         --replicas defaults to 0 here (no pods), --resync to 600 (ours' own
                         10 min: no resync in the run); --n and --idle do not apply
  --rest S               seconds at rest once nothing changes, before RSS is read (default 10)
  Writes compare.json and memory-fit.svg in --out, each run's files in <LABEL>-n<N>-<round>/.

  --help                 this text`;

function number(raw: string | undefined, fallback: number, flag: string, min = 0): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) {
    console.error(`bench: --${flag} must be a number of at least ${String(min)}, not "${raw}"`);
    process.exit(2);
  }
  return value;
}

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        n: { type: 'string' },
        replicas: { type: 'string' },
        drift: { type: 'string' },
        idle: { type: 'string' },
        resync: { type: 'string' },
        concurrency: { type: 'string' },
        'trace-ratio': { type: 'string' },
        'operator-cmd': { type: 'string' },
        'node-options': { type: 'string' },
        'kubeconfig-env': { type: 'string' },
        parallel: { type: 'string' },
        'scenario-timeout': { type: 'string' },
        out: { type: 'string' },
        compare: { type: 'string', multiple: true },
        repeat: { type: 'string' },
        label: { type: 'string' },
        'memory-fit': { type: 'string' },
        rest: { type: 'string' },
        scenarios: { type: 'string' },
        'operator-replicas': { type: 'string' },
        'kill-replica-at': { type: 'string' },
        'join-replica-at': { type: 'string' },
        'replica-mode': { type: 'string' },
        help: { type: 'boolean' },
      },
    });
  } catch (err) {
    console.error(`bench: ${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
    process.exit(2);
  }
})();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}

const memoryFit = (() => {
  const raw = values['memory-fit'];
  if (raw === undefined) return undefined;
  const ns = parseMemoryFit(raw);
  if (typeof ns === 'string') {
    console.error(`bench: ${ns}`);
    process.exit(2);
  }
  if (values.n !== undefined || values.idle !== undefined) {
    console.error('bench: --memory-fit gives the counts itself, and has no idle: no --n, --idle');
    process.exit(2);
  }
  return { ns, restSeconds: number(values.rest, 10, 'rest', 1) };
})();
if (!memoryFit && values.rest !== undefined) {
  console.error('bench: --rest belongs to --memory-fit');
  process.exit(2);
}
const n = memoryFit ? Math.max(...memoryFit.ns) : number(values.n, 1000, 'n', 1);
const idle = number(values.idle, 45, 'idle', 1);
// In the memory fit, ours' own default (10 min): no resync falls in a run.
const resync = number(values.resync, memoryFit ? 600 : 30, 'resync', 1);
if (!memoryFit && resync >= idle) {
  console.error('bench: --resync must be shorter than --idle, so a resync falls in steady state');
  process.exit(2);
}
const scenarios = (() => {
  if (values.scenarios === undefined) return undefined;
  const parsed = parseScenarios(values.scenarios);
  if (typeof parsed === 'string' || memoryFit) {
    console.error(`bench: ${memoryFit ? '--memory-fit runs no scenarios' : String(parsed)}`);
    process.exit(2);
  }
  return parsed;
})();
const operatorReplicas = (() => {
  const parsed = parseReplicaOptions({
    replicas: values['operator-replicas'],
    mode: values['replica-mode'],
    killAt: values['kill-replica-at'],
    joinAt: values['join-replica-at'],
    operatorCmd: values['operator-cmd'] ?? values.compare?.[0],
    scenarios,
    memoryFit: memoryFit !== undefined,
  });
  if (typeof parsed === 'string') {
    console.error(`bench: ${parsed}`);
    process.exit(2);
  }
  return parsed;
})();
const traceRatio = values['trace-ratio'];
const options: BenchOptions = {
  n,
  replicas: number(values.replicas, memoryFit ? 0 : 1, 'replicas', 0),
  drift: number(values.drift, Math.max(1, Math.min(100, Math.floor(n / 10))), 'drift', 1),
  idleSeconds: idle,
  resyncSeconds: resync,
  concurrency: number(values.concurrency, 16, 'concurrency', 1),
  traceRatio: traceRatio === undefined ? undefined : number(traceRatio, 0, 'trace-ratio'),
  operatorCmd: values['operator-cmd'],
  nodeOptions: values['node-options'] ?? shippedNodeOptions(),
  kubeconfigEnv: values['kubeconfig-env'] ?? 'KUBECONFIG',
  clientParallelism: number(values.parallel, 64, 'parallel', 1),
  scenarioTimeoutSeconds: number(values['scenario-timeout'], 600, 'scenario-timeout', 1),
  outDir: values.out ?? join(import.meta.dirname, 'results'),
  ...(memoryFit ? { memoryFit: { restSeconds: memoryFit.restSeconds } } : {}),
  ...(scenarios ? { scenarios } : {}),
  // A single replica is today's run exactly: no option recorded, no flag added.
  ...(operatorReplicas.count > 1 ? { operatorReplicas } : {}),
  progress: (message) => {
    console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}`);
  },
};

const peers = (values.compare ?? []).map((raw) => {
  const contender = parseContender(raw);
  if (typeof contender === 'string') {
    console.error(`bench: ${contender}`);
    process.exit(2);
  }
  return contender;
});
const repeat = number(values.repeat, peers.length > 0 ? 3 : 1, 'repeat', 1);
const contenders: Contender[] = [
  { label: values.label ?? 'ours', cmd: options.operatorCmd },
  ...peers,
];
if (new Set(contenders.map((c) => c.label)).size < contenders.length) {
  console.error('bench: every operator of a comparison needs a label of its own');
  process.exit(2);
}

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
  version: string;
};
const versions = Object.fromEntries(
  readFileSync(new URL('../hack/tools/versions.env', import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => /^[A-Z_]+=/.test(l))
    .map((l) => l.split('=', 2) as [string, string]),
);
/** What every JSON report carries besides its figures: versions, the machine, the date. */
const context = (started: number): Record<string, unknown> => ({
  versions: { echoOperator: pkg.version, node: process.version, ...versions },
  machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem() },
  wallSeconds: (Date.now() - started) / 1000,
  date: new Date().toISOString(),
});

/** A run's bench.json and bench.svg in `dir`. */
function writeRun(result: BenchResult, dir: string, started: number): void {
  writeFileSync(
    join(dir, 'bench.json'),
    `${JSON.stringify({ ...result, ...context(started) }, null, 2)}\n`,
  );
  writeFileSync(join(dir, 'bench.svg'), svgReport(result));
}

const started = Date.now();
if (memoryFit) {
  mkdirSync(options.outDir, { recursive: true });
  const runs = await runComparison(
    contenders,
    repeat,
    options,
    (result, dir) => {
      writeRun(result, dir, started);
    },
    memoryFit.ns,
  );
  const fit = summarizeMemoryFit(contenders, runs, memoryFit.ns);
  const { progress: _progress, ...recorded } = options;
  const summary = {
    mode: 'memory-fit',
    options: recorded,
    repeat,
    contenders,
    memoryFit: fit,
    runs: runs.map(({ result: _result, ...run }) => run),
    ...context(started),
  };
  writeFileSync(join(options.outDir, 'compare.json'), `${JSON.stringify(summary, null, 2)}\n`);
  writeFileSync(join(options.outDir, 'memory-fit.svg'), memoryFitSvg(contenders, runs, fit));
  console.log(memoryFitTable(contenders, fit, repeat, memoryFit.restSeconds));
  for (const run of runs.filter((r) => r.error))
    console.log(
      `  ${run.label} N=${String(run.n)} run ${String(run.round)} failed: ${run.error ?? ''}`,
    );
  console.log(
    `\nwall time ${((Date.now() - started) / 1000).toFixed(0)} s; written: ${join(options.outDir, 'compare.json')}, ${join(options.outDir, 'memory-fit.svg')} and each run's files in ${options.outDir}/<label>-n<N>-<round>/`,
  );
  process.exitCode = runs.some((r) => r.error) ? 1 : 0;
} else if (contenders.length === 1 && repeat === 1) {
  const result = await runBench(options);
  writeRun(result, options.outDir, started);
  console.log(textReport(result));
  console.log(
    `\nwall time ${((Date.now() - started) / 1000).toFixed(0)} s; written: ${join(options.outDir, 'bench.json')}, ${join(options.outDir, 'bench.svg')}`,
  );
  process.exitCode = result.error ? 1 : 0;
} else {
  mkdirSync(options.outDir, { recursive: true });
  const runs = await runComparison(contenders, repeat, options, (result, dir) => {
    writeRun(result, dir, started);
  });
  const rows = summarize(contenders, runs);
  const { progress: _progress, ...recorded } = options;
  const summary = {
    options: recorded,
    repeat,
    contenders,
    rows,
    runs: runs.map(({ result: _result, ...run }) => run),
    ...context(started),
  };
  writeFileSync(join(options.outDir, 'compare.json'), `${JSON.stringify(summary, null, 2)}\n`);
  writeFileSync(join(options.outDir, 'compare.svg'), compareSvg(contenders, runs, options.n));
  console.log(compareTable(contenders, rows, repeat, options.n));
  for (const run of runs.filter((r) => r.error))
    console.log(`  ${run.label} run ${String(run.round)} failed: ${run.error ?? ''}`);
  console.log(
    `\nwall time ${((Date.now() - started) / 1000).toFixed(0)} s; written: ${join(options.outDir, 'compare.json')}, ${join(options.outDir, 'compare.svg')} and each run's files in ${options.outDir}/<label>-<round>/`,
  );
  process.exitCode = runs.some((r) => r.error) ? 1 : 0;
}
