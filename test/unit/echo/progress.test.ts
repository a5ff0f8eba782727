// When a rollout's progress is written: each Echo's once it has been held for the delay, and all
// Echoes' together no faster than the budget refills (one a second, past a burst of ten); one the
// budget cannot serve comes back once it could have served every Echo waiting.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PROGRESS_STATUS_DELAY_MS, ProgressPacing } from '../../../src/echo/progress.ts';

/** A pacing on a clock the test moves (`clock.ms`). */
function pacing(delayMs?: number) {
  const clock = { ms: 0 };
  const p = new ProgressPacing({
    ...(delayMs === undefined ? {} : { delayMs }),
    clock: () => clock.ms,
  });
  return { p, clock };
}

/** Writes `n` Echoes' progress (delay 0), spending as many tokens. */
function spend(p: ProgressPacing, n: number): void {
  for (let i = 0; i < n; i++) {
    assert.equal(p.hold(`spent-${String(i)}`), undefined);
    p.forget(`spent-${String(i)}`);
  }
}

describe('ProgressPacing', () => {
  it('holds progress for the delay, then writes it when a token is there', () => {
    const { p, clock } = pacing();
    assert.equal(p.hold('team/a'), PROGRESS_STATUS_DELAY_MS, 'the whole delay (10 s)');
    clock.ms = 4_000;
    assert.equal(p.hold('team/a'), 6_000, 'what is left of it');
    clock.ms = 9_999;
    assert.equal(p.hold('team/a'), 1);
    clock.ms = 10_000;
    assert.equal(p.hold('team/a'), undefined, 'held for the whole delay: write now');
  });

  it('times each Echo from when its progress was first held', () => {
    const { p, clock } = pacing(1_000);
    assert.equal(p.hold('team/a'), 1_000);
    clock.ms = 600;
    assert.equal(p.hold('team/b'), 1_000);
    assert.equal(p.hold('team/a'), 400);
    clock.ms = 1_000;
    assert.equal(p.hold('team/a'), undefined);
    assert.equal(p.hold('team/b'), 600);
  });

  it('writes a burst of ten at once, then one a second: the n-th waiting comes back after n s', () => {
    const { p, clock } = pacing(0);
    spend(p, 10);
    assert.equal(p.hold('team/a'), 1_000, 'no token left');
    assert.equal(p.hold('team/b'), 2_000);
    assert.equal(p.hold('team/c'), 3_000);
    clock.ms = 1_000;
    assert.equal(p.hold('team/a'), undefined, 'a token refilled');
    p.forget('team/a');
    assert.equal(p.hold('team/b'), 2_000, 'b and c wait: the second token is due in 1 s');
    clock.ms = 3_000;
    assert.equal(p.hold('team/b'), undefined);
    assert.equal(p.hold('team/c'), undefined, 'two tokens refilled in two seconds');
  });

  it('with the budget spent, comes back after max(delay, waiting/rate), not the delay alone', () => {
    const { p, clock } = pacing(5_000);
    const names = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => `team/${prefix}-${String(i)}`);
    const burst = names('burst', 10);
    const few = names('few', 3);
    for (const key of [...burst, ...few]) assert.equal(p.hold(key), 5_000);
    clock.ms = 5_000;
    for (const key of burst) {
      assert.equal(p.hold(key), undefined, 'the burst written');
      p.forget(key);
    }
    // Three waiting, the budget spent: at one write a second they need 3 s, less than the delay.
    assert.deepEqual(
      few.map((key) => p.hold(key)),
      [5_000, 5_000, 5_000],
    );
    // Thirty more: they come back once the budget could have served every Echo waiting.
    const many = names('many', 30);
    for (const key of many) assert.equal(p.hold(key), 5_000);
    clock.ms = 10_000;
    for (const key of few) {
      assert.equal(p.hold(key), undefined, 'five tokens refilled in five seconds');
      p.forget(key);
    }
    for (const key of many.slice(0, 2)) {
      assert.equal(p.hold(key), undefined);
      p.forget(key);
    }
    assert.equal(p.hold(many[2]!), 28_000, '28 Echoes waiting at one write a second');
    assert.equal(p.hold(many[3]!), 28_000);
  });

  it('forgets an Echo: its next progress waits afresh, and it no longer counts as waiting', () => {
    const { p, clock } = pacing();
    assert.equal(p.hold('team/a'), 10_000);
    clock.ms = 8_000;
    p.forget('team/a');
    assert.equal(p.hold('team/a'), 10_000, 'afresh');

    const spent = pacing(0);
    spend(spent.p, 10);
    assert.equal(spent.p.hold('team/a'), 1_000);
    assert.equal(spent.p.hold('team/b'), 2_000);
    spent.p.forget('team/a');
    spent.p.forget('team/b');
    assert.equal(spent.p.hold('team/c'), 1_000, 'the only one waiting');
    spent.p.forget('team/never-held');
  });
});
