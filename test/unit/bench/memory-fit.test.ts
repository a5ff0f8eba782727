// The memory fit's arithmetic and what it writes: the least-squares line, the medians per operator
// and N it is drawn through, the table, the picture, the --memory-fit list and the order of the
// runs (interleaved per round). No control plane: runs are made up.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runOrder, type Contender, type Run } from '../../../bench/compare.ts';
import {
  linearFit,
  memoryFitSvg,
  memoryFitTable,
  parseMemoryFit,
  summarizeMemoryFit,
} from '../../../bench/memory-fit.ts';
import type { BenchResult, ScenarioResult } from '../../../bench/run.ts';

const MIB = 2 ** 20;

/** A memory-fit run of `label` at `n`: RSS at rest and peak in MiB, or a cold start not converged. */
function run(
  label: string,
  n: number,
  round: number,
  restMiB: number,
  peakMiB: number,
  converged = true,
): Run {
  const scenario = (name: string, rss: number, seconds?: number): ScenarioResult => ({
    name,
    ...(seconds === undefined ? {} : { seconds }),
    apiCalls: {},
    rssBytesAtEnd: rss * MIB,
    cpuSeconds: 0,
  });
  const cold = scenario('cold start', peakMiB, n === 0 ? undefined : n / 100);
  if (!converged)
    cold.didNotConverge = { waitingFor: 'statuses written', reached: 1, of: n, afterSeconds: 600 };
  const result = {
    options: { n },
    operator: label,
    scenarios: [cold, scenario('rest', restMiB)],
    memory: { peakRssBytes: peakMiB * MIB, finalRssBytes: restMiB * MIB, cpuSeconds: 1 },
    rss: [],
    createLatenciesMs: [],
    floorLatenciesMs: [],
  } as unknown as BenchResult;
  return { label, round, n, dir: `${label}-n${String(n)}-${String(round)}`, result };
}

const contenders: Contender[] = [
  { label: 'ours', cmd: undefined },
  { label: 'go', cmd: 'dist/go-peer --concurrency 16' },
];
const NS = [0, 1000, 5000];

/** Ours: 50 MiB + 10 KiB per Echo at rest; go: 20 MiB + 20 KiB per Echo; three rounds, noise. */
function runs(): Run[] {
  const out: Run[] = [];
  for (const round of [1, 2, 3])
    for (const n of NS) {
      const jitter = (round - 2) * 0.5;
      out.push(run('ours', n, round, 50 + (10 * n) / 1024 + jitter, 60 + (12 * n) / 1024));
      out.push(run('go', n, round, 20 + (20 * n) / 1024 + jitter, 30 + (25 * n) / 1024));
    }
  return out;
}

describe('linearFit', () => {
  it('finds the line through points on it, with R² 1 and no residuals', () => {
    const fit = linearFit([
      [0, 3],
      [10, 23],
      [20, 43],
    ]);
    assert.ok(fit);
    assert.ok(Math.abs(fit.intercept - 3) < 1e-9);
    assert.ok(Math.abs(fit.slope - 2) < 1e-9);
    assert.equal(fit.r2, 1);
    assert.ok(fit.residuals.every((r) => Math.abs(r) < 1e-9));
  });

  it('gives the least-squares line of scattered points, its R² and residuals', () => {
    // y = x with the middle point 1 too high: the line is y = 1/3 + x, residuals −1/3, 2/3, −1/3.
    const fit = linearFit([
      [0, 0],
      [1, 2],
      [2, 2],
    ]);
    assert.ok(fit);
    assert.ok(Math.abs(fit.slope - 1) < 1e-9);
    assert.ok(Math.abs(fit.intercept - 1 / 3) < 1e-9);
    assert.deepEqual(
      fit.residuals.map((r) => Math.round(r * 3)),
      [-1, 2, -1],
    );
    // Total sum of squares 8/3, residual 2/3: R² = 0.75.
    assert.ok(Math.abs(fit.r2 - 0.75) < 1e-9);
  });

  it('has no line through fewer than two distinct N', () => {
    assert.equal(linearFit([]), undefined);
    assert.equal(
      linearFit([
        [5, 1],
        [5, 2],
      ]),
      undefined,
    );
  });

  it('calls a flat line a perfect fit', () => {
    assert.equal(
      linearFit([
        [0, 7],
        [9, 7],
      ])?.r2,
      1,
    );
  });
});

describe('summarizeMemoryFit', () => {
  it('fits each operator through its medians per N: MiB fixed, KiB per Echo', () => {
    const summary = summarizeMemoryFit(contenders, runs(), NS);
    assert.deepEqual(summary.ns, NS);
    const rest = summary.figures.find((f) => f.key === 'rest');
    const ours = rest?.operators.ours;
    assert.ok(ours?.fit);
    assert.ok(Math.abs(ours.fit.fixedMiB - 50) < 1e-6, String(ours.fit.fixedMiB));
    assert.ok(Math.abs(ours.fit.perEchoKiB - 10) < 1e-6, String(ours.fit.perEchoKiB));
    assert.equal(ours.fit.residualsMiB.length, 3);
    // The medians (round 2's, jitter 0), their min–max over the three rounds.
    assert.deepEqual(
      ours.points.map((p) => [p.n, p.cell.median, p.cell.max! - p.cell.min!]),
      [
        [0, 50, 1],
        [1000, 50 + 10000 / 1024, 1],
        [5000, 50 + 50000 / 1024, 1],
      ],
    );
    const go = rest?.operators.go?.fit;
    assert.ok(go && Math.abs(go.perEchoKiB - 20) < 1e-6);
    const peak = summary.figures.find((f) => f.key === 'peak')?.operators.go?.fit;
    assert.ok(peak && Math.abs(peak.fixedMiB - 30) < 1e-6 && Math.abs(peak.perEchoKiB - 25) < 1e-6);
    // Cold start seconds: none at N = 0.
    assert.deepEqual(
      summary.coldStartSeconds.ours?.map((p) => p.cell.median),
      [undefined, 10, 50],
    );
  });

  it('leaves out runs that did not converge or failed, and fits no line through one point', () => {
    const some = [
      run('ours', 0, 1, 50, 60),
      run('ours', 1000, 1, 999, 999, false),
      { label: 'ours', round: 1, n: 5000, dir: 'x', error: 'the control plane did not start' },
    ];
    const rest = summarizeMemoryFit(contenders.slice(0, 1), some, NS).figures[0];
    const ours = rest?.operators.ours;
    assert.equal(ours?.fit, undefined);
    assert.deepEqual(
      ours?.points.map((p) => [p.cell.median, p.cell.missed]),
      [
        [50, 0],
        [undefined, 1],
        [undefined, 1],
      ],
    );
  });
});

describe('memoryFitTable', () => {
  it('shows the medians at each N and each operator line', () => {
    const table = memoryFitTable(contenders, summarizeMemoryFit(contenders, runs(), NS), 3, 10);
    assert.match(table, /medians of 3 runs each/);
    assert.match(table, /^ {2}go: dist\/go-peer --concurrency 16$/m);
    assert.match(table, /^RSS at rest after the cold start \(MiB\)\s+ours\s+go$/m);
    assert.match(table, /^N=0\s+50\.0 \(49\.5–50\.5\)\s+20\.0 \(19\.5–20\.5\)$/m);
    assert.match(table, /^fixed \(MiB\)\s+50\.0\s+20\.0$/m);
    assert.match(table, /^per Echo \(KiB\)\s+10\.0\s+20\.0$/m);
    assert.match(table, /^R²\s+1\.000\s+1\.000$/m);
    assert.match(table, /^residuals \(MiB\)\s+[+−]0\.00 [+−]0\.00 [+−]0\.00\s/m);
    assert.match(table, /^peak RSS \(cold start and rest\) \(MiB\)\s+ours\s+go$/m);
    assert.match(table, /^cold start → every Deployment \(s\)\s+ours\s+go$/m);
    assert.match(table, /^N=5000\s+50\.0 \(50\.0–50\.0\)/m);
  });
});

describe('memoryFitSvg', () => {
  it('draws every run as a dot and each operator line, named with its fit', () => {
    const all = runs();
    const svg = memoryFitSvg(contenders, all, summarizeMemoryFit(contenders, all, NS));
    assert.match(svg, /^<svg [^>]*width="760" height="560"/);
    // Two figures, each with a dot per run.
    assert.equal(svg.match(/<circle /g)?.length, 2 * all.length);
    assert.equal(svg.match(/<polyline /g)?.length, 2 * contenders.length);
    assert.match(svg, />ours: 50\.0 MiB \+ 10\.0 KiB per Echo \(R² 1\.000\)</);
    assert.match(svg, />go: 20\.0 MiB \+ 20\.0 KiB per Echo/);
    assert.match(svg, />RSS at rest after the cold start: every run, and each line</);
  });
});

describe('parseMemoryFit', () => {
  it('takes a list of counts, sorted and without repeats', () => {
    assert.deepEqual(parseMemoryFit('5000, 0,1000,1000'), [0, 1000, 5000]);
  });

  it('refuses what is not a list of at least two counts', () => {
    for (const bad of ['', '1000', '1000,1000', '0,-5', '0,1e3', '0,abc', '0,,10'])
      assert.equal(typeof parseMemoryFit(bad), 'string', bad);
  });
});

describe('runOrder', () => {
  it('interleaves operators within each N, every N within each round', () => {
    assert.deepEqual(
      runOrder(contenders, 2, [0, 1000]).map((p) => p.name),
      [
        'ours-n0-1',
        'go-n0-1',
        'ours-n1000-1',
        'go-n1000-1',
        'ours-n0-2',
        'go-n0-2',
        'ours-n1000-2',
        'go-n1000-2',
      ],
    );
  });

  it('keeps the comparison directories as they were without a memory fit', () => {
    assert.deepEqual(
      runOrder(contenders, 2).map((p) => [p.name, p.n]),
      [
        ['ours-1', undefined],
        ['go-1', undefined],
        ['ours-2', undefined],
        ['go-2', undefined],
      ],
    );
  });
});

describe('bench/cli.ts --memory-fit', () => {
  const CLI = fileURLToPath(new URL('../../../bench/cli.ts', import.meta.url));
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 });

  it('refuses, before any control plane starts, flags that do not belong with it', () => {
    for (const [args, said] of [
      [['--memory-fit', '0,20', '--n', '5'], /no --n, --idle/],
      [['--rest', '5'], /--rest belongs to --memory-fit/],
    ] as const) {
      const run = cli(...args);
      assert.equal(run.status, 2, args.join(' '));
      assert.match(run.stderr, said);
    }
  });

  it('is in --help', () => {
    assert.match(cli('--help').stdout, /^ {2}--memory-fit N1,N2,\.\.\. /m);
  });
});
