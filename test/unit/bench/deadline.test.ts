// The benchmark's waits: none is silent (what it waits for and how far it got, each second while
// that moves, every 10 s while it does not), and each ends at the scenario's deadline with what it
// reached. Real timers, a few seconds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScenarioClock } from '../../../bench/deadline.ts';
import type { Reached, Waiting } from '../../../bench/tracker.ts';

/** A goal of `of` keys, reached by hand with `hit`. */
function goal(of: number): Waiting & { hit: (key: string) => void } {
  const reached: Reached = new Map();
  let done: (r: Reached) => void = () => undefined;
  const promise = new Promise<Reached>((resolve) => {
    done = resolve;
  });
  return {
    reached: promise,
    of,
    count: () => reached.size,
    stop: () => {
      done(reached);
    },
    hit: (key) => {
      reached.set(key, performance.now());
      if (reached.size === of) done(reached);
    },
  };
}

describe('ScenarioClock', () => {
  it('says how far a wait got, once per change, and gives up at the deadline', async () => {
    const said: string[] = [];
    const clock = new ScenarioClock(2.5, new AbortController().signal, (m) => said.push(m));
    clock.begin();
    const waiting = goal(3);
    const reached = await clock.wait('statuses written', waiting);
    assert.equal(reached.size, 0);
    // A count that does not move is told once, not every second.
    assert.deepEqual(said, ['  statuses written: 0/3']);
    assert.deepEqual(clock.shortfall && [clock.shortfall.waitingFor, clock.shortfall.reached], [
      'statuses written',
      0,
    ]);
  });

  it('tells each step of a wait that moves, and ends when every key got there', async () => {
    const said: string[] = [];
    const clock = new ScenarioClock(30, new AbortController().signal, (m) => said.push(m));
    clock.begin();
    const waiting = goal(2);
    // Half-way between the reports (every second): one key at 1.5 s, the other at 2.5 s.
    setTimeout(() => {
      waiting.hit('a');
    }, 1500);
    setTimeout(() => {
      waiting.hit('b');
    }, 2500);
    const reached = await clock.wait('Deployments with 1 replicas', waiting);
    assert.equal(reached.size, 2);
    assert.deepEqual(said, [
      '  Deployments with 1 replicas: 0/2',
      '  Deployments with 1 replicas: 1/2',
    ]);
    assert.equal(clock.shortfall, undefined);
  });
});
