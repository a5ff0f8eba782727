// The lease rules of leader election, as pure decisions: when a candidate may take the lease, what
// it writes, what a graceful release leaves, and which timings are refused.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEFAULT_TIMINGS,
  claim,
  microTime,
  released,
  timingsProblem,
  type LeaseSpec,
} from '../../../src/runtime/leader-election.ts';

const T0 = Date.parse('2026-11-25T12:00:00Z');
const held = (holder: string, extra: LeaseSpec = {}): LeaseSpec => ({
  holderIdentity: holder,
  leaseDurationSeconds: 15,
  acquireTime: microTime(T0 - 60_000),
  renewTime: microTime(T0),
  leaseTransitions: 3,
  ...extra,
});

describe('leader election rules', () => {
  it('writes MicroTime with six fractional digits, as the API server stores it', () => {
    assert.equal(microTime(T0 + 123), '2026-11-25T12:00:00.123000Z');
  });

  it('leaves a lease to a holder that renewed it within its duration, timed from when it was seen', () => {
    const observation = { spec: held('a'), observedAt: T0 };
    assert.equal(claim(observation, 'b', T0 + 14_999, 15), undefined);
    // The holder's renewTime is not trusted (clocks differ): only the candidate's own observation.
    const seenLate = { spec: held('a', { renewTime: microTime(T0 - 3_600_000) }), observedAt: T0 };
    assert.equal(claim(seenLate, 'b', T0 + 1000, 15), undefined);
  });

  it('takes an expired lease, counting a transition and a new acquire time', () => {
    const next = claim({ spec: held('a'), observedAt: T0 }, 'b', T0 + 15_000, 15);
    assert.deepEqual(next, {
      holderIdentity: 'b',
      leaseDurationSeconds: 15,
      acquireTime: microTime(T0 + 15_000),
      renewTime: microTime(T0 + 15_000),
      leaseTransitions: 4,
    });
  });

  it('uses the duration written in the lease, so a released lease (1 s) is free at once', () => {
    const spec = released(held('a'), T0);
    assert.deepEqual(spec, {
      holderIdentity: '',
      leaseDurationSeconds: 1,
      acquireTime: microTime(T0),
      renewTime: microTime(T0),
      leaseTransitions: 3,
    });
    const next = claim({ spec, observedAt: T0 }, 'b', T0, 15);
    assert.equal(next?.holderIdentity, 'b');
    assert.equal(next.leaseTransitions, 3, 'taking a free lease is not a transition');
    const shortLease = held('a', { leaseDurationSeconds: 1 });
    assert.equal(
      claim({ spec: shortLease, observedAt: T0 }, 'b', T0 + 1000, 15)?.holderIdentity,
      'b',
    );
  });

  it('renews its own lease keeping the acquire time and the transitions', () => {
    const next = claim({ spec: held('a'), observedAt: T0 }, 'a', T0 + 2000, 15);
    assert.deepEqual(next, {
      holderIdentity: 'a',
      leaseDurationSeconds: 15,
      acquireTime: microTime(T0 - 60_000),
      renewTime: microTime(T0 + 2000),
      leaseTransitions: 3,
    });
  });

  it('accepts client-go’s defaults and refuses timings that cannot work', () => {
    assert.equal(timingsProblem(DEFAULT_TIMINGS), undefined);
    assert.match(
      timingsProblem({ leaseDurationMs: 10_000, renewDeadlineMs: 10_000, retryPeriodMs: 2000 }) ??
        '',
      /lease duration must be longer than the renew deadline/,
    );
    assert.match(
      timingsProblem({ leaseDurationMs: 15_000, renewDeadlineMs: 2000, retryPeriodMs: 2000 }) ?? '',
      /renew deadline must be longer than 1.2 × the retry period/,
    );
  });
});
