// The benchmark made for comparisons, at a tiny N so it stays cheap: two operators run twice each,
// interleaved, summarized as medians and ratios; and an operator that never converges is reported
// as such, scenario by scenario, without holding the harness. Times are never asserted.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { diesWithParent } from '../../hack/cluster/process.ts';
import type { Run, SummaryRow } from '../../bench/compare.ts';
import type { BenchResult } from '../../bench/run.ts';

const CLI = fileURLToPath(new URL('../../bench/cli.ts', import.meta.url));
const REFUSED_STATUS_OPERATOR = fileURLToPath(
  new URL('../support/refused-status-operator.ts', import.meta.url),
);
const MAIN = fileURLToPath(new URL('../../dist/operator/src/main.js', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'echo-bench-compare-'));
const SMALL = ['--n=3', '--idle=2', '--resync=1'];

/** The benchmark CLI, tied to the test process so an interrupted run leaves no cluster behind. */
function bench(
  args: string[],
  stderr: 'inherit' | 'pipe' = 'inherit',
): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(...diesWithParent(process.execPath, [CLI, ...args]), {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', stderr],
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

const readJson = (...path: string[]): unknown =>
  JSON.parse(readFileSync(join(out, ...path), 'utf8'));

describe('benchmark comparisons', () => {
  after(() => {
    rmSync(out, { recursive: true, force: true });
  });

  it('runs two operators twice each, interleaved, and gives medians and ratios', () => {
    // The other operator is ours again, joined as any command would (it reads KUBECONFIG).
    const other = `${process.execPath} ${MAIN} --port=0 --resync-period=1s`;
    const { status, stdout } = bench([
      ...SMALL,
      '--repeat=2',
      `--compare=again=${other}`,
      `--out=${join(out, 'pair')}`,
    ]);
    assert.equal(status, 0, stdout);
    assert.match(stdout, /^row\s+unit\s+ours\s+again\s+ours\/again$/m);
    assert.match(stdout, /^create burst\s+s\s+\S+ \(\S+–\S+\)\s+\S+ \(\S+–\S+\)\s+\S+×$/m);
    const { rows, runs } = readJson('pair', 'compare.json') as {
      rows: SummaryRow[];
      runs: Run[];
    };
    assert.deepEqual(
      runs.map((r) => `${r.label}-${String(r.round)}`),
      ['ours-1', 'again-1', 'ours-2', 'again-2'],
    );
    assert.ok(runs.every((r) => r.error === undefined));
    const row = (name: string): SummaryRow => {
      const found = rows.find((r) => r.name === name);
      assert.ok(found, name);
      return found;
    };
    for (const name of ['create burst', 'scale burst → every Echo Ready', 'peak RSS']) {
      for (const label of ['ours', 'again']) {
        const c = row(name).cells[label];
        assert.ok(c?.median !== undefined && c.min !== undefined && c.max !== undefined, name);
        assert.ok(c.min <= c.median && c.median <= c.max, `${name} ${label}`);
        assert.equal(c.missed, 0);
      }
      assert.equal(
        row(name).ratios.again,
        (row(name).cells.ours?.median ?? 0) / (row(name).cells.again?.median ?? 1),
      );
    }
    // Reconciles are read from our own metrics: each created Echo was reconciled at least once.
    assert.ok((row('reconciles: create burst').cells.ours?.median ?? 0) >= 3);
    assert.equal(row('reconciles: create burst').cells.again?.median, undefined);
    const first = readJson('pair', 'ours-1', 'bench.json') as BenchResult;
    assert.ok(first.scenarios.every((s) => s.didNotConverge === undefined));
  });

  it('reports scenarios that do not converge, with what they reached and what was refused, and goes on', () => {
    // An operator whose status writes are all refused, as echo-operator-rs's are (issue 13's stall).
    const { status, stdout, stderr } = bench(
      [
        ...SMALL,
        `--operator-cmd=${process.execPath} ${REFUSED_STATUS_OPERATOR}`,
        '--scenario-timeout=3',
        `--out=${join(out, 'stuck')}`,
      ],
      'pipe',
    );
    assert.equal(status, 0, stdout);
    assert.match(stdout, /^create burst\s+did not converge \(0\/3 Deployments with 1 replicas\)/m);
    // Every wait says how far it got, so a run waiting on the operator never looks stalled.
    assert.match(stderr, /^\[bench [\d:]+\] {3}Deployments with 1 replicas: 0\/3$/m);
    assert.match(
      stdout,
      /^ {2}cold start: refused \d+× patch echoes\/status 422: .*reason.* at least 1 chars long/m,
    );
    const result = readJson('stuck', 'bench.json') as BenchResult;
    assert.equal(result.error, undefined);
    const refused = result.scenarios[0]?.rejectedCalls?.[0];
    assert.equal(refused?.call, 'patch echoes/status');
    assert.equal(refused.code, 422);
    assert.deepEqual(
      result.scenarios.map((s) => [s.name, s.didNotConverge?.reached]),
      [
        ['cold start', 0],
        ['create burst', 0],
        ['scale burst', 0],
        ['drift repair', 0],
        ['edit during a restart', 0],
        ['steady state', undefined],
        ['delete', undefined],
      ],
    );
    assert.ok(result.floor, 'the run went on to the floor');
  });
});
