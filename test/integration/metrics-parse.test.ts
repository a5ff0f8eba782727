// The metrics reader the tests rely on: samples Prometheus accepts but JSON cannot hold as numbers
// (NaN, ±Inf: prom-client reports a NaN event-loop mean before its first sample) come through.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseExposition } from '../support/metrics.ts';

describe('metrics-parse', () => {
  it('reads NaN and infinite sample values', () => {
    const samples = parseExposition(
      'text/plain; version=0.0.4; charset=utf-8',
      [
        '# TYPE lag_mean gauge',
        'lag_mean NaN',
        '# TYPE ceiling gauge',
        'ceiling +Inf',
        '# TYPE floor gauge',
        'floor -Inf',
        '# TYPE count counter',
        'count 3.5',
        '',
      ].join('\n'),
    );
    assert.deepEqual(
      samples.map((s) => [s.name, s.value]),
      [
        ['lag_mean', NaN],
        ['ceiling', Infinity],
        ['floor', -Infinity],
        ['count', 3.5],
      ],
    );
  });

  it('fails on an exposition Prometheus would refuse', () => {
    assert.throws(() => parseExposition('text/plain; version=0.0.4', 'bad metric name{ 1\n'));
  });
});
