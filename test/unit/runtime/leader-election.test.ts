// The lease rules of leader election, as pure decisions: when a candidate may take the lease, what
// it writes, what a graceful release leaves, and which timings are refused; and the stop of a
// leader against a fake API server: a renewal under way at the stop is finished, not cut.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RequestOptions } from '../../../src/kube/client.ts';
import { ApiError } from '../../../src/kube/errors.ts';
import {
  DEFAULT_TIMINGS,
  LeaderElector,
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

describe('LeaderElector stop', () => {
  it('finishes a renewal under way when stopped, so release() writes from its resourceVersion', async () => {
    let version = 0;
    const puts: { resourceVersion?: string; holder?: string; signal?: AbortSignal }[] = [];
    let letRenewalThrough: (() => void) | undefined;
    const answer = (body: unknown): unknown => {
      const lease = body as { metadata: object; spec: LeaseSpec };
      return { ...lease, metadata: { ...lease.metadata, resourceVersion: String(++version) } };
    };
    const client = {
      request: async <T>(opts: RequestOptions): Promise<T> => {
        if (opts.method === undefined)
          throw new ApiError(404, { reason: 'NotFound' }, 'get', 'leases');
        if (opts.method === 'POST') return answer(opts.body) as T;
        const { metadata, spec } = opts.body as {
          metadata: { resourceVersion?: string };
          spec: LeaseSpec;
        };
        puts.push({
          ...(metadata.resourceVersion ? { resourceVersion: metadata.resourceVersion } : {}),
          ...(spec.holderIdentity !== undefined ? { holder: spec.holderIdentity } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
        // The first renewal is held until the test lets it through.
        if (puts.length === 1) await new Promise<void>((resolve) => (letRenewalThrough = resolve));
        return answer(opts.body) as T;
      },
    };
    const elector = new LeaderElector({
      client,
      namespace: 'ns',
      name: 'lease',
      identity: 'me',
      leaseDurationMs: 2000,
      renewDeadlineMs: 1000,
      retryPeriodMs: 10,
    });
    assert.equal(await elector.acquire(new AbortController().signal), true);
    const stop = new AbortController();
    const holding = elector.hold(stop.signal);
    while (!letRenewalThrough) await new Promise((resolve) => setTimeout(resolve, 5));
    stop.abort();
    assert.equal(puts[0]?.signal?.aborted, false, 'the renewal under way is not aborted');
    letRenewalThrough();
    assert.equal(await holding, 'stopped');
    await elector.release();
    assert.deepEqual(
      puts.map(({ resourceVersion, holder }) => ({ resourceVersion, holder })),
      [
        { resourceVersion: '1', holder: 'me' },
        { resourceVersion: '2', holder: '' },
      ],
      'released from what the renewal wrote',
    );
  });
});
