import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { summarize, type Run } from '../../../bench/compare.ts';
import type { BenchResult } from '../../../bench/run.ts';
import { parseScenarios, runsScenario, type ScenarioKey } from '../../../bench/scenarios.ts';

/** A run of `label` that made the cold start and the restart edits (p95 `p95Ms`), and nothing else. */
function run(label: string, scenarios: ScenarioKey[] | undefined, p95Ms: number): Run {
  const made = (name: string, latencyMs?: object) => ({
    name,
    seconds: 1,
    apiCalls: {},
    rssBytesAtEnd: 0,
    cpuSeconds: 0,
    ...(latencyMs ? { latencyMs } : {}),
  });
  const result = {
    options: { n: 10, ...(scenarios ? { scenarios } : {}) },
    scenarios: [
      made('cold start'),
      made('create burst'),
      made('edit during a restart', { p50: 1, p90: 1, p95: p95Ms, p99: 1, max: 1 }),
    ],
    memory: { peakRssBytes: 0, finalRssBytes: 0, cpuSeconds: 0 },
  } as unknown as BenchResult;
  return { label, round: 1, dir: label, result };
}

describe('--scenarios', () => {
  it('gives the keys in run order, whatever order they are written in', () => {
    assert.deepEqual(parseScenarios('restart, create'), ['create', 'restart']);
    assert.deepEqual(parseScenarios('floor,steady'), ['steady', 'floor']);
  });

  it('refuses a scenario without the one it builds on, naming it', () => {
    assert.equal(
      parseScenarios('create,drift'),
      '--scenarios: drift builds on scale; add it to the list',
    );
    assert.deepEqual(parseScenarios('restart'), ['restart']);
    assert.match(String(parseScenarios('delete')), /delete builds on create/);
  });

  it('refuses unknown words and an empty list', () => {
    assert.match(String(parseScenarios('create,burst')), /no scenario "burst"/);
    assert.match(String(parseScenarios(' , ')), /at least one of create, scale/);
  });

  it('tells which scenarios a run makes: the cold start always, every one by default', () => {
    assert.equal(runsScenario(undefined, 'drift repair'), true);
    assert.equal(runsScenario(['create', 'restart'], 'edit during a restart'), true);
    assert.equal(runsScenario(['create', 'restart'], 'drift repair'), false);
    assert.equal(runsScenario(['create', 'restart'], 'cold start'), true);
  });

  it('leaves out of the comparison the rows of scenarios the runs did not make', () => {
    const contenders = [
      { label: 'ours', cmd: undefined },
      { label: 'go', cmd: 'go-peer' },
    ];
    const subset = summarize(contenders, [
      run('ours', ['create', 'restart'], 800),
      run('go', ['create', 'restart'], 4000),
    ]);
    const names = subset.map((r) => r.name);
    assert.ok(!names.includes('drift repair'), 'a scenario not made has no row');
    assert.ok(!names.includes('writes: steady state'));
    assert.equal(subset.find((r) => r.name === 'edit during a restart p95')?.ratios.go, 0.2);
    assert.ok(names.includes('peak RSS'), 'rows of the whole run stay');
    // The full pass is read from our metrics: another operator's is unknown, not missed.
    assert.equal(subset.find((r) => r.name === 'restart: the full pass')?.cells.go?.missed, 0);
    // Made without --scenarios, the same runs miss the drift repair: its row stays, missed.
    const every = summarize(contenders, [run('ours', undefined, 800), run('go', undefined, 4000)]);
    assert.equal(every.find((r) => r.name === 'drift repair')?.cells.ours?.missed, 1);
  });
});
