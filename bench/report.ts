// What a person reads of a benchmark run: a table on the terminal, and an SVG with the create-burst
// latency distribution (operator against the floor) and the operator's memory over the run.
import type { VerbCounts } from './audit.ts';
import { total, writes } from './audit.ts';
import type { BenchResult, JoinResult, KillResult } from './run.ts';
import { describeOwnership, LEASE_DURATION_MS } from './replicas.ts';

const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const secs = (s: number | undefined): string => (s === undefined ? '-' : `${s.toFixed(2)} s`);
const verbs = (c: VerbCounts | undefined): string =>
  c === undefined
    ? '-'
    : Object.entries(c)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([v, n]) => `${v} ${String(n)}`)
        .join(', ') || 'none';

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

const ms = (v: number | undefined): string => (v === undefined ? '-' : secs(v / 1000));

/** Each replica's part of each scenario, when there are several. */
function replicaTable(result: BenchResult): string[] {
  const rows = result.scenarios.flatMap((s) =>
    (s.replicas ?? []).map((r) => [
      s.name,
      r.instance,
      mib(r.rssBytesAtEnd),
      `${r.cpuSeconds.toFixed(1)} s`,
      r.echoesCached === undefined ? '-' : String(r.echoesCached),
      r.queueAdds === undefined ? '-' : String(r.queueAdds),
      r.echoEvents === undefined ? '-' : String(r.echoEvents),
    ]),
  );
  if (rows.length === 0) return [];
  return [
    '',
    table([
      ['scenario', 'replica', 'RSS', 'CPU', 'Echoes cached', 'queue adds', 'Echo events'],
      ...rows,
    ]),
  ];
}

/** The kill of a scenario, for a person: when, what the victim held, how its Echoes fared. */
function killLine(scenario: string, kill: KillResult): string {
  const { edits } = kill;
  const target = LEASE_DURATION_MS / 1000 + 5;
  return (
    `  ${scenario}: killed ${kill.instance} (SIGKILL) at ${secs(kill.afterSeconds)}, ` +
    `after ${String(kill.writesBefore)}/${String(kill.of)} writes; it held ${describeOwnership(kill.owned)}; ` +
    `its Echoes written after: ${String(edits.converged)}/${String(edits.count)} converged, ` +
    `first ${ms(edits.firstMs)}, p50 ${ms(edits.p50Ms)}, max ${ms(edits.maxMs)} (target ${String(target)} s)`
  );
}

/**
 * The join of a scenario, for a person: when the newcomer started, how long until it held its fair
 * share, the takeovers summed over the replicas across the join (the target is 0: every bucket it
 * gets is handed over, none taken after a lease expiry), and the handovers in the scenario.
 */
export function joinLine(scenario: string, join: JoinResult): string {
  const share = `its share (${String(join.share)} of ${String(join.bucketCount)} buckets)`;
  const held =
    join.heldShareSeconds === undefined
      ? `did not hold ${share} by the scenario's end (held ${String(join.heldAtEnd ?? '-')})`
      : `held ${share} after ${secs(join.heldShareSeconds)}`;
  const first =
    join.firstBucketSeconds === undefined
      ? ''
      : ` (a first bucket after ${secs(join.firstBucketSeconds)})`;
  return (
    `  ${scenario}: joined ${join.instance} at ${secs(join.afterSeconds)}, ` +
    `after ${String(join.writesBefore)}/${String(join.of)} writes; ${held}${first}; ` +
    `takeovers ${String(join.takeovers.after - join.takeovers.before)}; handovers ${String(join.handovers)}`
  );
}

/** The replicas' lines: each one's memory and CPU, and the overlaps the audit log shows. */
function replicaLines(result: BenchResult): string[] {
  const lines = (result.replicas ?? []).map(
    (r) =>
      `  ${r.instance}: peak RSS ${mib(r.peakRssBytes)}, final ${mib(r.finalRssBytes)}; CPU ${r.cpuSeconds.toFixed(1)} s` +
      (r.joined ? `; joined in ${r.joined.scenario} at ${secs(r.joined.afterSeconds)}` : '') +
      (r.killed ? `; killed in ${r.killed.scenario} at ${secs(r.killed.afterSeconds)}` : ''),
  );
  const o = result.overlaps;
  if (o)
    lines.push(
      `  overlaps (audit log): ${String(o.objects)} Echoes written by two replicas within ` +
        `${String(LEASE_DURATION_MS / 1000)} s with no handover between (${String(o.pairs)} pairs, of ${String(o.writes)} writes; ` +
        `${String(o.handovers)} pairs that close across a handover of the Echo's bucket` +
        (o.unattributed > 0
          ? `; ${String(o.unattributed)} writes with no instance in their User-Agent`
          : '') +
        ')',
      ...o.examples.map(
        ({ first, second }) =>
          `    ${first.object}: ${first.instance} ${first.call}, then ${second.instance} ${second.call} ` +
          `${secs((second.at - first.at) / 1000)} later`,
      ),
    );
  return lines;
}

export function textReport(result: BenchResult): string {
  const { floor } = result;
  const replicas = result.options.operatorReplicas;
  const rows = [
    [
      'scenario',
      'time',
      'x floor',
      'p50',
      'p90',
      'p99',
      'API calls (audit)',
      'writes',
      'ours',
      'reconciles',
      'RSS',
      'CPU',
    ],
    ...result.scenarios.map((s) => {
      const ratio =
        floor &&
        s.seconds !== undefined &&
        ['cold start', 'create burst', 'scale burst'].includes(s.name)
          ? (s.seconds / floor.applySeconds).toFixed(2)
          : '-';
      const missed = s.didNotConverge;
      return [
        s.name,
        missed
          ? `did not converge (${String(missed.reached)}/${String(missed.of)} ${missed.waitingFor})`
          : secs(s.seconds),
        ratio,
        s.latencyMs ? `${s.latencyMs.p50.toFixed(0)} ms` : '-',
        s.latencyMs ? `${s.latencyMs.p90.toFixed(0)} ms` : '-',
        s.latencyMs ? `${s.latencyMs.p99.toFixed(0)} ms` : '-',
        verbs(s.apiCalls),
        String(writes(s.apiCalls)),
        s.clientCalls ? String(total(s.clientCalls)) : '-',
        s.reconciles ? String(total(s.reconciles)) : '-',
        mib(s.rssBytesAtEnd),
        `${s.cpuSeconds.toFixed(1)} s`,
      ];
    }),
  ];
  const extras = result.scenarios
    .flatMap((s) => [
      ...Object.entries(s.times ?? {}).map(([k, v]) => `  ${s.name}: ${k} ${secs(v)}`),
      // What an operator that does not converge keeps being told by the API server.
      ...(s.rejectedCalls ?? [])
        .slice(0, 3)
        .map(
          (r) =>
            `  ${s.name}: refused ${String(r.count)}× ${r.call} ${String(r.code)}` +
            (r.message ? `: ${r.message.slice(0, 160)}` : ''),
        ),
    ])
    .join('\n');
  const waits = result.scenarios.filter((s) => s.queueWaits);
  const queue =
    waits.length === 0
      ? ''
      : `\n  work queue: ${String(waits.reduce((a, s) => a + (s.queueWaits?.picked ?? 0), 0))} items picked, ` +
        `${String(waits.reduce((a, s) => a + (s.queueWaits?.pastAgingBound ?? 0), 0))} after waiting past the aging bound`;
  return [
    `echo-operator benchmark, N=${String(result.options.n)}, replicas ${String(result.options.replicas)}: ${result.operator}` +
      (replicas ? `, ${String(replicas.count)} operator replicas (${replicas.mode})` : ''),
    '',
    table(rows),
    ...replicaTable(result),
    '',
    extras + queue,
    ...result.scenarios.flatMap((s) => (s.kill ? [killLine(s.name, s.kill)] : [])),
    ...result.scenarios.flatMap((s) => (s.join ? [joinLine(s.name, s.join)] : [])),
    floor
      ? `  floor: ${String(result.options.n)} Deployments applied by a bare client in ${secs(floor.applySeconds)} ` +
        `(p50 ${floor.latencyMs.p50.toFixed(0)} ms, p99 ${floor.latencyMs.p99.toFixed(0)} ms); ` +
        `${String(result.options.n)} Echo creates taken in ${secs(floor.echoCreateSeconds)}`
      : '  floor: not measured',
    `  memory${replicas ? ', summed over the replicas' : ''}: peak RSS ${mib(result.memory.peakRssBytes)}, final ${mib(result.memory.finalRssBytes)}; ` +
      `CPU ${result.memory.cpuSeconds.toFixed(1)} s`,
    ...replicaLines(result),
    ...(result.error ? [`  the run failed: ${result.error}`] : []),
  ].join('\n');
}

/** Axis labels: whole numbers from 100 up, fewer decimals as values grow. */
const tick = (v: number): string => v.toFixed(v >= 100 ? 0 : v >= 1 ? 1 : 2);

const escape = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** One line of a chart: [x, y] points in data units; only named lines get a legend entry. */
export interface Series {
  name?: string;
  color: string;
  points: [number, number][];
  /** Drawn as dots, one per point, instead of a line through them. */
  dots?: boolean;
}

/** A series as SVG: a polyline, or a dot per point. */
function drawn(s: Series, px: (x: number) => number, py: (y: number) => number): string {
  if (s.dots)
    return s.points
      .map(
        ([x, y]) =>
          `<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3.5" fill="${s.color}" fill-opacity="0.7"/>`,
      )
      .join('\n');
  return `<polyline fill="none" stroke="${s.color}" stroke-width="2" stroke-opacity="0.8" points="${s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ')}"/>`;
}

/** A polyline chart in a box, `offsetY` from the top of the picture. */
export function chart(
  title: string,
  xLabel: string,
  yLabel: string,
  series: Series[],
  offsetY: number,
): string {
  const width = 760;
  const height = 260;
  const left = 70;
  const top = offsetY + 30;
  const plotW = width - left - 30;
  const plotH = height - 70;
  const all = series.flatMap((s) => s.points);
  const maxX = Math.max(1e-9, ...all.map(([x]) => x));
  const maxY = Math.max(1e-9, ...all.map(([, y]) => y));
  const px = (x: number): number => left + (x / maxX) * plotW;
  const py = (y: number): number => top + plotH - (y / maxY) * plotH;
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return [
    `<text x="${String(left)}" y="${String(offsetY + 18)}" font-size="15" font-weight="bold">${escape(title)}</text>`,
    `<rect x="${String(left)}" y="${String(top)}" width="${String(plotW)}" height="${String(plotH)}" fill="none" stroke="#999"/>`,
    ...ticks.map(
      (t) =>
        `<text x="${String(left - 6)}" y="${String(py(t * maxY) + 4)}" font-size="11" text-anchor="end">${tick(t * maxY)}</text>` +
        `<text x="${String(px(t * maxX))}" y="${String(top + plotH + 15)}" font-size="11" text-anchor="middle">${tick(t * maxX)}</text>`,
    ),
    `<text x="${String(left + plotW / 2)}" y="${String(top + plotH + 32)}" font-size="12" text-anchor="middle">${escape(xLabel)}</text>`,
    `<text x="14" y="${String(top + plotH / 2)}" font-size="12" transform="rotate(-90 14 ${String(top + plotH / 2)})" text-anchor="middle">${escape(yLabel)}</text>`,
    ...series.map((s) => drawn(s, px, py)),
    ...series
      .filter((s) => s.name !== undefined)
      .map(
        (s, i) =>
          `<text x="${String(left + 10)}" y="${String(top + 16 + i * 15)}" font-size="12" fill="${s.color}">${escape(s.name ?? '')}</text>`,
      ),
  ].join('\n');
}

/** Empirical CDF points of sorted values. */
export function cdf(sorted: number[]): [number, number][] {
  return sorted.map((v, i) => [v, (i + 1) / sorted.length]);
}

const REPLICA_COLORS = ['#1e8449', '#8e44ad', '#d68910', '#2471a3', '#c0392b'];

export function svgReport(result: BenchResult): string {
  const latency = chart(
    `Create burst, N=${String(result.options.n)}: Echo created → Deployment observed`,
    'latency (ms)',
    'fraction of objects',
    [
      { name: 'operator', color: '#c0392b', points: cdf(result.createLatenciesMs) },
      { name: 'floor: bare client apply', color: '#2471a3', points: cdf(result.floorLatenciesMs) },
    ],
    0,
  );
  const memory = chart(
    'Operator resident memory over the run',
    'seconds since the operator started',
    'RSS (MiB)',
    result.replicas
      ? result.replicas.map((r, i) => ({
          name: r.instance,
          color: REPLICA_COLORS[i % REPLICA_COLORS.length] ?? '#000',
          points: r.rss.map((s) => [s.atMs / 1000, s.rssBytes / 2 ** 20] as [number, number]),
        }))
      : [
          {
            name: 'RSS',
            color: '#1e8449',
            points: result.rss.map((s) => [s.atMs / 1000, s.rssBytes / 2 ** 20]),
          },
        ],
    280,
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="760" height="560" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${latency}\n${memory}\n</svg>\n`;
}
