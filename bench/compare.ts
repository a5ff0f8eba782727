// The benchmark made for comparisons: ours and other operators run K times each, interleaved (ours,
// peer, ours, peer, ...) so that whatever else the machine does falls on all of them alike; one
// table of medians with min–max and the ratio ours/peer per row, and one picture with every run.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { total, writes } from './audit.ts';
import { cdf, chart, type Series } from './report.ts';
import {
  runBench,
  type BenchOptions,
  type BenchResult,
  type ReplicaResult,
  type ScenarioResult,
} from './run.ts';
import { runsScenario } from './scenarios.ts';

/** An operator in the comparison; the first one is the reference of the ratios. */
export interface Contender {
  label: string;
  /** A shell command line, as --operator-cmd; undefined: ours. */
  cmd: string | undefined;
}

/** `LABEL=COMMAND` as given to --compare; a string says what is wrong with it. */
export function parseContender(raw: string): Contender | string {
  const at = raw.indexOf('=');
  const label = raw.slice(0, at).trim();
  const cmd = raw.slice(at + 1).trim();
  if (at < 1 || !/^[A-Za-z0-9_.-]+$/.test(label) || cmd === '')
    return `--compare takes LABEL=COMMAND (a label of letters, digits, - _ .), not "${raw}"`;
  return { label, cmd };
}

export interface Run {
  label: string;
  /** 1..K */
  round: number;
  /** Where this run's bench.json, bench.svg and operator.log are. */
  dir: string;
  /** Echoes of the run: set in the memory fit, whose runs differ in N. */
  n?: number;
  /** Seconds from the run's start (its control plane's) to its end. */
  wallSeconds?: number;
  result?: BenchResult;
  /** Why the run ended early, or never started. */
  error?: string;
}

/** Not reached: the scenario did not converge, or the run failed before it. */
export const MISSED = 'did not converge';
export type Value = number | typeof MISSED | undefined;

/** A row's figure from one run; with the scenario it reads, when it reads one. */
type Pick = ((result: BenchResult) => Value) & { scenario?: string };

interface Row {
  name: string;
  unit: string;
  pick: Pick;
  /** A row of runs with several replicas (--operator-replicas): left out when no run has them. */
  ofReplicas?: true;
  /** A row of runs in which a replica joined (--join-replica-at): left out when none did. */
  ofJoin?: true;
}

const scenario = (r: BenchResult, name: string): ScenarioResult | undefined =>
  r.scenarios.find((s) => s.name === name);

/** A time of a scenario: missed if its goal was not reached (the run records it undefined). */
const timed = (name: string, pick: (s: ScenarioResult) => number | undefined): Pick =>
  Object.assign(
    (r: BenchResult): Value => {
      const s = scenario(r, name);
      return (s && pick(s)) ?? MISSED;
    },
    { scenario: name },
  );

/** A count of a scenario (what the operator did in its window, converged or not). */
const counted = (
  name: string,
  pick: (s: ScenarioResult, r: BenchResult) => number | undefined,
): Pick =>
  Object.assign(
    (r: BenchResult): Value => {
      const s = scenario(r, name);
      return s ? pick(s, r) : MISSED;
    },
    { scenario: name },
  );

const SCENARIOS = ['cold start', 'create burst', 'scale burst', 'drift repair', 'steady state'];

export const ROWS: Row[] = [
  { name: 'cold start → every Deployment', unit: 's', pick: timed('cold start', (s) => s.seconds) },
  {
    name: 'cold start → every status',
    unit: 's',
    pick: timed('cold start', (s) => s.times?.untilEveryStatusSeconds),
  },
  { name: 'create burst', unit: 's', pick: timed('create burst', (s) => s.seconds) },
  { name: 'create burst p50', unit: 'ms', pick: timed('create burst', (s) => s.latencyMs?.p50) },
  { name: 'scale burst → Deployments', unit: 's', pick: timed('scale burst', (s) => s.seconds) },
  {
    name: 'scale burst → every Echo Ready',
    unit: 's',
    pick: timed('scale burst', (s) => s.times?.untilEveryEchoReadySeconds),
  },
  {
    name: 'scale burst → every pod Ready (the cluster)',
    unit: 's',
    pick: timed('scale burst', (s) => s.times?.untilEveryPodReadySeconds),
  },
  {
    name: 'scale burst: every Echo Ready after every pod',
    unit: 's',
    pick: timed('scale burst', ({ times }) =>
      times?.untilEveryEchoReadySeconds === undefined ||
      times.untilEveryPodReadySeconds === undefined
        ? undefined
        : times.untilEveryEchoReadySeconds - times.untilEveryPodReadySeconds,
    ),
  },
  { name: 'drift repair', unit: 's', pick: timed('drift repair', (s) => s.seconds) },
  { name: 'drift repair p50', unit: 'ms', pick: timed('drift repair', (s) => s.latencyMs?.p50) },
  ...(['p50', 'p95', 'max'] as const).map((q) => ({
    name: `edit during a restart ${q}`,
    unit: 'ms',
    pick: timed('edit during a restart', (s) => s.latencyMs?.[q]),
  })),
  {
    name: 'restart: the full pass',
    unit: 's',
    // Read from our metrics: another operator's is not known ("-"), not missed.
    pick: Object.assign(
      (r: BenchResult): Value => {
        const s = scenario(r, 'edit during a restart');
        return !s || s.didNotConverge ? MISSED : s.times?.fullPassSeconds;
      },
      { scenario: 'edit during a restart' },
    ),
  },
  ...SCENARIOS.map((name) => ({
    name: `writes: ${name}`,
    unit: 'calls',
    pick: counted(name, (s) => writes(s.apiCalls)),
  })),
  {
    name: 'writes per created Echo',
    unit: 'calls',
    pick: counted('create burst', (s, r) => writes(s.apiCalls) / r.options.n),
  },
  {
    name: 'writes per scaled Echo',
    unit: 'calls',
    pick: counted('scale burst', (s, r) => writes(s.apiCalls) / r.options.n),
  },
  ...SCENARIOS.map((name) => ({
    name: `reconciles: ${name}`,
    unit: 'count',
    pick: counted(name, (s) => (s.reconciles ? total(s.reconciles) : undefined)),
  })),
  {
    name: 'queue items that waited past the aging bound',
    unit: 'count',
    // Every scenario's, from our queue-duration histogram; another operator's is not known.
    pick: (r) =>
      r.scenarios.some((s) => s.queueWaits)
        ? r.scenarios.reduce((a, s) => a + (s.queueWaits?.pastAgingBound ?? 0), 0)
        : undefined,
  },
  { name: 'peak RSS', unit: 'MiB', pick: (r) => r.memory.peakRssBytes / 2 ** 20 },
  { name: 'RSS at the end', unit: 'MiB', pick: (r) => r.memory.finalRssBytes / 2 ** 20 },
  { name: 'CPU for the run', unit: 's', pick: (r) => r.memory.cpuSeconds },
  {
    name: 'CPU at rest (steady state)',
    unit: 's',
    pick: counted('steady state', (s) => s.cpuSeconds),
  },
  {
    name: 'peak RSS, largest replica',
    unit: 'MiB',
    pick: (r) => largest(r, (p) => p.peakRssBytes / 2 ** 20),
    ofReplicas: true,
  },
  {
    name: 'CPU for the run, busiest replica',
    unit: 's',
    pick: (r) => largest(r, (p) => p.cpuSeconds),
    ofReplicas: true,
  },
  {
    name: "after the kill: the dead replica's Echoes → converged, max",
    unit: 's',
    pick: (r) => {
      const kill = r.scenarios.find((s) => s.kill)?.kill;
      if (!kill) return undefined;
      const { count, converged, maxMs } = kill.edits;
      return converged < count || maxMs === undefined ? MISSED : maxMs / 1000;
    },
    ofReplicas: true,
  },
  {
    name: 'after the join: the new replica holding its fair share',
    unit: 's',
    pick: (r) => {
      const join = r.scenarios.find((s) => s.join)?.join;
      if (!join) return undefined;
      return join.heldShareSeconds ?? MISSED;
    },
    ofReplicas: true,
    ofJoin: true,
  },
  {
    name: 'takeovers across the join (target 0)',
    unit: 'count',
    pick: (r) => {
      const join = r.scenarios.find((s) => s.join)?.join;
      return join && join.takeovers.after - join.takeovers.before;
    },
    ofReplicas: true,
    ofJoin: true,
  },
  {
    name: 'overlaps: Echoes written by two replicas within a lease duration',
    unit: 'count',
    pick: (r) => r.overlaps?.objects,
    ofReplicas: true,
  },
];

/** The largest of a figure over a run's replicas; undefined for a single process. */
function largest(r: BenchResult, figure: (replica: ReplicaResult) => number): Value {
  return r.replicas ? Math.max(...r.replicas.map(figure)) : undefined;
}

/** One operator's figures for one row over its K runs. */
export interface Cell {
  median?: number;
  min?: number;
  max?: number;
  /** Runs in which the row was not reached. */
  missed: number;
  values: Value[];
}

export interface SummaryRow {
  name: string;
  unit: string;
  /** By contender label. */
  cells: Record<string, Cell>;
  /** The reference's median over each other contender's, by that contender's label. */
  ratios: Record<string, number | undefined>;
}

export function median(sorted: number[]): number | undefined {
  if (sorted.length === 0) return undefined;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** Median, min and max of the values that are numbers, and how many were missed. */
export function cell(values: Value[]): Cell {
  const numbers = values.filter((v): v is number => typeof v === 'number').sort((a, b) => a - b);
  const middle = median(numbers);
  return {
    ...(middle === undefined
      ? {}
      : { median: middle, min: numbers[0] ?? middle, max: numbers.at(-1) ?? middle }),
    missed: values.filter((v) => v === MISSED).length,
    values,
  };
}

/** Every row: medians per contender over its runs, and the ratios to the first contender. */
export function summarize(contenders: Contender[], runs: Run[]): SummaryRow[] {
  const [reference, ...others] = contenders;
  // Rows of scenarios the runs were not asked to make (--scenarios) are left out, not missed.
  const made = (row: Row): boolean =>
    row.pick.scenario === undefined ||
    runs.some(
      (r) => !r.result || runsScenario(r.result.options.scenarios, row.pick.scenario ?? ''),
    );
  const severalReplicas = runs.some((r) => r.result?.replicas);
  const joined = runs.some((r) => r.result?.scenarios.some((s) => s.join));
  const kept = (row: Row): boolean =>
    made(row) && (!row.ofReplicas || severalReplicas) && (!row.ofJoin || joined);
  return ROWS.filter(kept).map((row) => {
    const cells = Object.fromEntries(
      contenders.map((c) => [
        c.label,
        cell(
          runs
            .filter((r) => r.label === c.label)
            .map((r) => (r.result ? row.pick(r.result) : MISSED)),
        ),
      ]),
    );
    const ours = reference ? cells[reference.label]?.median : undefined;
    const ratios = Object.fromEntries(
      others.map((c) => {
        const theirs = cells[c.label]?.median;
        return [c.label, ours !== undefined && theirs ? ours / theirs : undefined];
      }),
    );
    return { name: row.name, unit: row.unit, cells, ratios };
  });
}

const figure = (v: number): string =>
  Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);

function showCell(c: Cell | undefined): string {
  if (!c) return '-';
  if (c.median === undefined) return c.missed > 0 ? MISSED : '-';
  const range = c.values.length > 1 ? ` (${figure(c.min ?? 0)}–${figure(c.max ?? 0)})` : '';
  const missed = c.missed > 0 ? ` [${String(c.missed)}/${String(c.values.length)} ${MISSED}]` : '';
  return `${figure(c.median)}${range}${missed}`;
}

/** The table a person reads: medians (min–max) per contender and ours/peer ratios. */
export function compareTable(
  contenders: Contender[],
  rows: SummaryRow[],
  repeat: number,
  n: number,
): string {
  const [reference, ...others] = contenders;
  const head = [
    'row',
    'unit',
    ...contenders.flatMap((c) => [
      c.label,
      ...(c === reference ? [] : [`${reference?.label ?? ''}/${c.label}`]),
    ]),
  ];
  const body = rows.map((row) => [
    row.name,
    row.unit,
    ...contenders.flatMap((c) => {
      const ratio = row.ratios[c.label];
      return [
        showCell(row.cells[c.label]),
        ...(c === reference ? [] : [ratio === undefined ? '-' : `${ratio.toFixed(2)}×`]),
      ];
    }),
  ]);
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [
    `echo-operator benchmark comparison, N=${String(n)}: medians of ${String(repeat)} runs each (min–max), interleaved`,
    ...contenders.map((c) => `  ${c.label}: ${c.cmd ?? 'echo-operator (ours, compiled)'}`),
    others.length > 0
      ? `  ratios: ${reference?.label ?? ''}/peer of the medians (below 1: ${reference?.label ?? ''} is lower)`
      : '',
    '',
    line(head),
    ...body.map(line),
  ].join('\n');
}

const COLORS = ['#c0392b', '#2471a3', '#1e8449', '#8e44ad', '#d68910'];

/** Create-burst latency CDFs and RSS over time, one line per run, one colour per contender. */
export function compareSvg(contenders: Contender[], runs: Run[], n: number): string {
  const lines = (points: (r: BenchResult) => [number, number][]): Series[] =>
    contenders.flatMap((c, i) =>
      runs
        .filter((r) => r.label === c.label && r.result)
        .map((r, k) => ({
          ...(k === 0 ? { name: c.label } : {}),
          color: COLORS[i % COLORS.length] ?? '#000',
          points: r.result ? points(r.result) : [],
        })),
    );
  const latency = chart(
    `Create burst, N=${String(n)}: Echo created → Deployment observed (every run)`,
    'latency (ms)',
    'fraction of objects',
    lines((r) => cdf(r.createLatenciesMs)),
    0,
  );
  const memory = chart(
    'Operator resident memory over the run (every run)',
    'seconds since the operator started',
    'RSS (MiB)',
    lines((r) => r.rss.map((s) => [s.atMs / 1000, s.rssBytes / 2 ** 20])),
    280,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="760" height="560" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${latency}\n${memory}\n</svg>\n`;
}

/** One run of a comparison, in the order they are made. */
export interface Planned {
  contender: Contender;
  round: number;
  /** Set in the memory fit. */
  n?: number;
  /** The run's directory in --out. */
  name: string;
}

/**
 * The order of a comparison's runs, interleaved: round by round, every contender in turn
 * (`<label>-<round>`); with `ns` (the memory fit), every N in turn within a round and every
 * contender at each N (`<label>-n<N>-<round>`), so that a round spans every point of every fit.
 */
export function runOrder(contenders: Contender[], repeat: number, ns?: number[]): Planned[] {
  const order: Planned[] = [];
  for (let round = 1; round <= repeat; round++)
    for (const n of ns ?? [undefined])
      for (const contender of contenders)
        order.push({
          contender,
          round,
          ...(n === undefined ? {} : { n }),
          name:
            n === undefined
              ? `${contender.label}-${String(round)}`
              : `${contender.label}-n${String(n)}-${String(round)}`,
        });
  return order;
}

/**
 * Runs every contender `repeat` times in `runOrder`, each run in its own directory of
 * `options.outDir`; a run that fails is kept with its error and the comparison goes on.
 * `written` stores a run's own report (bench.json, bench.svg) as a single run would.
 */
export async function runComparison(
  contenders: Contender[],
  repeat: number,
  options: BenchOptions,
  written: (result: BenchResult, dir: string) => void,
  ns?: number[],
): Promise<Run[]> {
  const runs: Run[] = [];
  for (const { contender: c, round, n, name } of runOrder(contenders, repeat, ns)) {
    const at = n === undefined ? '' : ` N=${String(n)}`;
    const tag = `${c.label}${at} ${String(round)}/${String(repeat)}`;
    const dir = join(options.outDir, name);
    mkdirSync(dir, { recursive: true });
    const run: Run = { label: c.label, round, dir, ...(n === undefined ? {} : { n }) };
    runs.push(run);
    const started = performance.now();
    try {
      run.result = await runBench({
        ...options,
        n: n ?? options.n,
        operatorCmd: c.cmd,
        outDir: dir,
        progress: (message) => {
          options.progress(`[${tag}] ${message}`);
        },
      });
      if (run.result.error) run.error = run.result.error;
      written(run.result, dir);
    } catch (err) {
      run.error = err instanceof Error ? err.message : String(err);
      options.progress(`[${tag}] the run failed: ${run.error}`);
    }
    run.wallSeconds = (performance.now() - started) / 1000;
  }
  return runs;
}
