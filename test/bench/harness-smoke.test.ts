// A small run of the benchmark (N=20) so the harness cannot rot: every scenario converges, the
// audit log attributes API calls to the operator's identity, our client's counters agree, and the
// operator makes no write in steady state. Times are reported by the benchmark, never asserted.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { total, writes } from '../../bench/audit.ts';
import { diesWithParent } from '../../hack/cluster/process.ts';
import type { BenchResult } from '../../bench/run.ts';

const CLI = fileURLToPath(new URL('../../bench/cli.ts', import.meta.url));
const out = mkdtempSync(join(tmpdir(), 'echo-bench-smoke-'));

describe('benchmark harness (N=20)', () => {
  after(() => {
    rmSync(out, { recursive: true, force: true });
  });

  it('runs every scenario and writes the table, JSON and SVG', () => {
    // Tied to the test process: an interrupted run leaves no benchmark (and its cluster) behind.
    const table = execFileSync(
      ...diesWithParent(process.execPath, [
        CLI,
        '--n=20',
        '--idle=8',
        '--resync=4',
        `--out=${out}`,
      ]),
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    );
    assert.match(table, /^cold start\s/m);
    const result = JSON.parse(readFileSync(join(out, 'bench.json'), 'utf8')) as BenchResult;
    assert.deepEqual(
      result.scenarios.map((s) => s.name),
      [
        'cold start',
        'create burst',
        'scale burst',
        'drift repair',
        'edit during a restart',
        'steady state',
        'delete',
      ],
    );
    const [cold, burst, scale, drift, restart, steady] = result.scenarios;
    // 20 Deployments applied and 20 statuses written, all attributed to the operator's identity.
    assert.ok(writes(cold!.apiCalls) >= 40, JSON.stringify(cold!.apiCalls));
    // The informers start with WatchList (watches that send the initial state), not lists.
    assert.equal(cold!.apiCalls.list, undefined, 'no list: the API server serves WatchList');
    assert.ok(burst!.latencyMs);
    assert.equal(result.createLatenciesMs.length, 20);
    assert.ok(writes(scale!.apiCalls) >= 20);
    // Every Echo Ready is reported no sooner than the last of its Deployment's pods.
    const { untilEveryPodReadySeconds: pods, untilEveryEchoReadySeconds: echoes } =
      scale!.times ?? {};
    assert.ok(pods !== undefined && echoes !== undefined && pods <= echoes, `${pods} ${echoes}`);
    assert.ok(writes(drift!.apiCalls) >= 2);
    // The restart: 20 edits (all of the burst at N=20) reach their Deployments; the full pass over
    // the 40 Echoes is timed from our operator's metrics.
    assert.ok(restart!.latencyMs, JSON.stringify(restart));
    const { fullPassSeconds, editP95Seconds, untilReadySeconds } = restart!.times ?? {};
    assert.ok(fullPassSeconds !== undefined && fullPassSeconds > 0, JSON.stringify(restart!.times));
    assert.ok(editP95Seconds !== undefined && untilReadySeconds !== undefined);
    assert.ok(writes(restart!.apiCalls) >= 20, JSON.stringify(restart!.apiCalls));
    // Our client's own count matches the audit log over the run (a request in flight at a boundary
    // may fall on either side of it).
    const sum = (pick: (s: (typeof result.scenarios)[number]) => number): number =>
      result.scenarios.reduce((a, s) => a + pick(s), 0);
    assert.equal(
      sum((s) => total(s.clientCalls ?? {})),
      sum((s) => total(s.apiCalls)),
    );
    // Steady state is a measuring window of the benchmark's (--idle 8 s with a resync every 4 s,
    // so at least one resync falls in it): it measures any operator, whose reconciles it cannot
    // observe. test/integration/operator.test.ts waits on our own resync's reconciles instead.
    assert.equal(writes(steady!.apiCalls), 0, `steady state: ${JSON.stringify(steady!.apiCalls)}`);
    assert.ok(result.memory.peakRssBytes > 0);
    assert.ok(existsSync(join(out, 'bench.svg')));
  });
});
