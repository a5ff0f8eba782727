// The memory fit (--memory-fit 0,1000,5000): each operator's cold start at several N, and its
// resident memory split into a fixed cost and a cost per Echo by least squares over the points
// (N, median RSS). Pure functions: the runs are made by runComparison, as any comparison's.
import { cell, MISSED, type Cell, type Contender, type Run, type Value } from './compare.ts';
import { chart, type Series } from './report.ts';
import type { BenchResult } from './run.ts';

/** y = intercept + slope · x, with how well it fits. */
export interface LinearFit {
  intercept: number;
  slope: number;
  /** 1 − (residual sum of squares / total sum of squares); 1 when every y is the same. */
  r2: number;
  /** y − fitted y at each point, in the points' order. */
  residuals: number[];
}

/** Ordinary least squares over the points; undefined with fewer than two distinct x. */
export function linearFit(points: readonly (readonly [number, number])[]): LinearFit | undefined {
  if (new Set(points.map(([x]) => x)).size < 2) return undefined;
  const mean = (values: number[]): number => values.reduce((a, v) => a + v, 0) / values.length;
  const mx = mean(points.map(([x]) => x));
  const my = mean(points.map(([, y]) => y));
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  const slope = sxy / sxx;
  const intercept = my - slope * mx;
  const residuals = points.map(([x, y]) => y - (intercept + slope * x));
  const ssRes = residuals.reduce((a, r) => a + r * r, 0);
  const ssTot = points.reduce((a, [, y]) => a + (y - my) ** 2, 0);
  return { intercept, slope, r2: ssTot === 0 ? 1 : 1 - ssRes / ssTot, residuals };
}

/** What a figure is fitted on: one value per run, in MiB. */
interface Figure {
  key: 'rest' | 'peak';
  name: string;
  pick: (result: BenchResult) => Value;
}

const MIB = 2 ** 20;

/** A run whose cold start or rest did not converge has no figure: its memory is not comparable. */
const settled = (r: BenchResult): boolean => {
  const cold = r.scenarios.find((s) => s.name === 'cold start');
  const rest = r.scenarios.find((s) => s.name === 'rest');
  return !!cold && !!rest && !cold.didNotConverge && !rest.didNotConverge;
};

export const FIGURES: Figure[] = [
  {
    key: 'rest',
    name: 'RSS at rest after the cold start',
    pick: (r) =>
      settled(r) ? (r.scenarios.find((s) => s.name === 'rest')?.rssBytesAtEnd ?? 0) / MIB : MISSED,
  },
  {
    key: 'peak',
    name: 'peak RSS (cold start and rest)',
    pick: (r) => (settled(r) ? r.memory.peakRssBytes / MIB : MISSED),
  },
];

/** Seconds from the operator's start to its last Deployment: what a point costs to measure. */
const coldStartSeconds = (r: BenchResult): Value =>
  r.options.n === 0
    ? undefined
    : (r.scenarios.find((s) => s.name === 'cold start')?.seconds ?? MISSED);

/** One operator's median at one N. */
export interface FitPoint {
  n: number;
  cell: Cell;
}

/** A fit in the units a person reads. */
export interface MemoryLine {
  fixedMiB: number;
  perEchoKiB: number;
  r2: number;
  /** Median minus the line at each N, in MiB, in the order of `ns`. */
  residualsMiB: number[];
}

export interface OperatorFit {
  points: FitPoint[];
  /** Undefined when fewer than two N have a median. */
  fit?: MemoryLine;
}

export interface FigureSummary {
  key: Figure['key'];
  name: string;
  /** By contender label. */
  operators: Record<string, OperatorFit>;
}

export interface MemoryFitSummary {
  ns: number[];
  figures: FigureSummary[];
  /** Cold start → every Deployment, by contender label (N = 0 has none). */
  coldStartSeconds: Record<string, FitPoint[]>;
}

function pointsOf(runs: Run[], label: string, ns: number[], pick: (r: BenchResult) => Value) {
  return ns.map((n) => ({
    n,
    cell: cell(
      runs
        .filter((r) => r.label === label && r.n === n)
        .map((r) => (r.result ? pick(r.result) : MISSED)),
    ),
  }));
}

/** Medians per operator and N, and each operator's line through them, for every figure. */
export function summarizeMemoryFit(
  contenders: Contender[],
  runs: Run[],
  ns: number[],
): MemoryFitSummary {
  const figures = FIGURES.map((figure) => ({
    key: figure.key,
    name: figure.name,
    operators: Object.fromEntries(
      contenders.map((c) => {
        const points = pointsOf(runs, c.label, ns, figure.pick);
        const known = points.flatMap((p) =>
          p.cell.median === undefined ? [] : [[p.n, p.cell.median] as const],
        );
        const line = linearFit(known);
        const residuals = new Map(known.map(([n], i) => [n, line?.residuals[i] ?? 0]));
        const fit: MemoryLine | undefined = line && {
          fixedMiB: line.intercept,
          perEchoKiB: line.slope * 1024,
          r2: line.r2,
          residualsMiB: ns.flatMap((n) => {
            const r = residuals.get(n);
            return r === undefined ? [] : [r];
          }),
        };
        return [c.label, { points, ...(fit ? { fit } : {}) }];
      }),
    ),
  }));
  const coldStart = Object.fromEntries(
    contenders.map((c) => [c.label, pointsOf(runs, c.label, ns, coldStartSeconds)]),
  );
  return { ns, figures, coldStartSeconds: coldStart };
}

const figure = (v: number): string =>
  Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
const signed = (v: number): string => `${v < 0 ? '−' : '+'}${figure(Math.abs(v))}`;

function showCell(c: Cell): string {
  if (c.median === undefined) return c.missed > 0 ? MISSED : '-';
  const range = c.values.length > 1 ? ` (${figure(c.min ?? 0)}–${figure(c.max ?? 0)})` : '';
  const missed = c.missed > 0 ? ` [${String(c.missed)}/${String(c.values.length)} ${MISSED}]` : '';
  return `${figure(c.median)}${range}${missed}`;
}

function aligned(rows: string[][]): string[] {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd(),
  );
}

/** The memory fit as a person reads it: per figure, the medians at each N and each line. */
export function memoryFitTable(
  contenders: Contender[],
  summary: MemoryFitSummary,
  repeat: number,
  restSeconds: number,
): string {
  const labels = contenders.map((c) => c.label);
  const block = (title: string, points: Record<string, FitPoint[]>, extra: string[][]) => [
    '',
    ...aligned([
      [title, ...labels],
      ...summary.ns.map((n, i) => [
        `N=${String(n)}`,
        ...labels.map((l) => {
          const p = points[l]?.[i];
          return p ? showCell(p.cell) : '-';
        }),
      ]),
      ...extra,
    ]),
  ];
  const figures = summary.figures.flatMap((f) => {
    const fits = labels.map((l) => f.operators[l]?.fit);
    const row = (name: string, show: (fit: MemoryLine) => string): string[] => [
      name,
      ...fits.map((fit) => (fit ? show(fit) : '-')),
    ];
    const points = Object.fromEntries(labels.map((l) => [l, f.operators[l]?.points ?? []]));
    return block(`${f.name} (MiB)`, points, [
      row('fixed (MiB)', (fit) => figure(fit.fixedMiB)),
      row('per Echo (KiB)', (fit) => figure(fit.perEchoKiB)),
      row('R²', (fit) => fit.r2.toFixed(3)),
      row('residuals (MiB)', (fit) => fit.residualsMiB.map(signed).join(' ')),
    ]);
  });
  return [
    `echo-operator memory fit: N Echoes created before the operator starts, its cold start, then ` +
      `${String(restSeconds)} s at rest; medians of ${String(repeat)} runs each (min–max), interleaved`,
    ...contenders.map((c) => `  ${c.label}: ${c.cmd ?? 'echo-operator (ours, compiled)'}`),
    '  each line: least squares over (N, median): RSS = fixed + per Echo × N; residuals at each N',
    ...figures,
    ...block('cold start → every Deployment (s)', summary.coldStartSeconds, []),
  ].join('\n');
}

const COLORS = ['#c0392b', '#2471a3', '#1e8449', '#8e44ad', '#d68910'];

/** Per figure, every run's point and each operator's fitted line, one colour per operator. */
export function memoryFitSvg(
  contenders: Contender[],
  runs: Run[],
  summary: MemoryFitSummary,
): string {
  const maxN = Math.max(0, ...summary.ns);
  const charts = FIGURES.map((f, k) => {
    const fitted = summary.figures.find((s) => s.key === f.key);
    const series = contenders.flatMap((c, i): Series[] => {
      const color = COLORS[i % COLORS.length] ?? '#000';
      const fit = fitted?.operators[c.label]?.fit;
      const dots = runs.flatMap((r) => {
        const v = r.label === c.label && r.result ? f.pick(r.result) : undefined;
        return typeof v === 'number' && r.n !== undefined ? [[r.n, v] as [number, number]] : [];
      });
      if (!fit) return [{ name: c.label, color, points: dots, dots: true }];
      const name = `${c.label}: ${figure(fit.fixedMiB)} MiB + ${figure(fit.perEchoKiB)} KiB per Echo (R² ${fit.r2.toFixed(3)})`;
      return [
        { color, points: dots, dots: true },
        {
          name,
          color,
          points: [
            [0, fit.fixedMiB],
            [maxN, fit.fixedMiB + (fit.perEchoKiB / 1024) * maxN],
          ],
        },
      ];
    });
    return chart(`${f.name}: every run, and each line`, 'Echoes (N)', 'RSS (MiB)', series, k * 280);
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="760" height="560" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${charts.join('\n')}\n</svg>\n`;
}

/** The list of N given to --memory-fit, sorted; a string says what is wrong with it. */
export function parseMemoryFit(raw: string): number[] | string {
  const parts = raw.split(',').map((p) => p.trim());
  const ns = parts.map(Number);
  if (parts.some((p) => !/^\d+$/.test(p)))
    return `--memory-fit takes a list of Echo counts such as 0,1000,5000, not "${raw}"`;
  const distinct = [...new Set(ns)].sort((a, b) => a - b);
  if (distinct.length < 2)
    return `--memory-fit needs at least two different counts to fit a line, not "${raw}"`;
  return distinct;
}
