// The lease rules of leader election, as pure decisions: when a candidate may take the lease, what
// it writes, what a graceful release leaves, and which timings are refused; and electors against a
// fake API server: a renewal under way at the stop is finished, not cut, and a step of the wall
// clock changes nobody's leadership.
import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeClient, RequestOptions } from '../../../src/kube/client.ts';
import { ApiError } from '../../../src/kube/errors.ts';
import {
  DEFAULT_TIMINGS,
  LeaderElector,
  claim,
  microTime,
  released,
  timingsProblem,
  type Clocks,
  type LeaseSpec,
} from '../../../src/runtime/leader-election.ts';

const T0 = Date.parse('2026-11-25T12:00:00Z');
/** The clocks `ms` after the lease was seen (at monotonic 0, wall T0). */
const at = (ms: number): Clocks => ({ monotonic: ms, wall: T0 + ms });
const seen = (spec: LeaseSpec) => ({ spec, observedAt: 0 });
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
    assert.equal(claim(seen(held('a')), 'b', at(14_999), 15), undefined);
    // The holder's renewTime is not trusted (clocks differ): only the candidate's own observation.
    const seenLate = seen(held('a', { renewTime: microTime(T0 - 3_600_000) }));
    assert.equal(claim(seenLate, 'b', at(1000), 15), undefined);
  });

  it('times the lease on the monotonic clock, and dates what it writes by the wall clock', () => {
    const ahead = { monotonic: 14_999, wall: T0 + 74_999 };
    assert.equal(claim(seen(held('a')), 'b', ahead, 15), undefined, 'wall clock 60 s ahead');
    const behind = { monotonic: 15_000, wall: T0 - 45_000 };
    assert.equal(
      claim(seen(held('a')), 'b', behind, 15)?.renewTime,
      microTime(T0 - 45_000),
      'wall clock 60 s behind',
    );
  });

  it('takes an expired lease, counting a transition and a new acquire time', () => {
    const next = claim(seen(held('a')), 'b', at(15_000), 15);
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
    const next = claim(seen(spec), 'b', at(0), 15);
    assert.equal(next?.holderIdentity, 'b');
    assert.equal(next.leaseTransitions, 3, 'taking a free lease is not a transition');
    const shortLease = held('a', { leaseDurationSeconds: 1 });
    assert.equal(claim(seen(shortLease), 'b', at(1000), 15)?.holderIdentity, 'b');
  });

  it('renews its own lease keeping the acquire time and the transitions', () => {
    const next = claim(seen(held('a')), 'a', at(2000), 15);
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

/**
 * A Lease API as the API server answers it: a PUT must carry the resourceVersion last written, or
 * it is refused 409. `client(refuse)` is one replica's client; `refuse` may throw instead of an
 * answer.
 */
function leaseApi(initial?: LeaseSpec) {
  let version = 0;
  let stored: { metadata: Record<string, string>; spec: LeaseSpec } | undefined;
  const store = (spec: LeaseSpec): unknown => {
    stored = {
      metadata: { name: 'lease', namespace: 'ns', resourceVersion: String(++version), uid: 'u' },
      spec,
    };
    return structuredClone(stored);
  };
  if (initial) store(initial);
  return {
    holder: (): string | undefined => stored?.spec.holderIdentity,
    client: (refuse?: (opts: RequestOptions) => void): Pick<KubeClient, 'request'> => ({
      request: <T>(opts: RequestOptions): Promise<T> => {
        refuse?.(opts);
        const body = opts.body as { metadata: { resourceVersion?: string }; spec: LeaseSpec };
        if (opts.method === undefined) {
          if (!stored) throw new ApiError(404, { reason: 'NotFound' }, 'get', 'leases');
          return Promise.resolve(structuredClone(stored) as T);
        }
        if (opts.method === 'POST' && stored) {
          throw new ApiError(409, { reason: 'AlreadyExists' }, 'create', 'leases');
        }
        if (
          opts.method === 'PUT' &&
          body.metadata.resourceVersion !== stored?.metadata.resourceVersion
        ) {
          throw new ApiError(409, { reason: 'Conflict' }, 'update', 'leases');
        }
        return Promise.resolve(store(body.spec) as T);
      },
    }),
  };
}

/** Makes Date.now() read the real time plus what `step` has added, leaving performance.now(). */
function steppableWallClock(t: TestContext): (ms: number) => void {
  const real = Date.now.bind(Date);
  let offset = 0;
  t.mock.method(Date, 'now', () => real() + offset);
  return (ms) => (offset += ms);
}

const elector = (client: Pick<KubeClient, 'request'>, identity: string): LeaderElector =>
  new LeaderElector({
    client,
    namespace: 'ns',
    name: 'lease',
    identity,
    leaseDurationMs: 1000,
    renewDeadlineMs: 200,
    retryPeriodMs: 10,
  });

/** What `promise` came to within `ms`, or 'pending'. */
const within = <T>(promise: Promise<T>, ms: number): Promise<T | 'pending'> =>
  Promise.race([promise, sleep(ms, 'pending' as const)]);

describe('LeaderElector with the wall clock stepped by NTP', () => {
  it('a standby does not take a live lease when the wall clock jumps 60 s ahead', async (t) => {
    const step = steppableWallClock(t);
    const api = leaseApi({ holderIdentity: 'a', leaseDurationSeconds: 15 });
    const standby = elector(api.client(), 'b');
    const stop = new AbortController();
    const acquiring = standby.acquire(stop.signal);
    while (standby.holder === undefined) await sleep(5);
    step(60_000);
    const outcome = await within(acquiring, 300);
    stop.abort();
    assert.equal(outcome, 'pending', 'the standby took the lease');
    assert.equal(api.holder(), 'a');
  });

  it('a standby takes an abandoned lease once it expires when the wall clock jumps 60 s back', async (t) => {
    const step = steppableWallClock(t);
    const api = leaseApi({ holderIdentity: 'a', leaseDurationSeconds: 1 });
    const standby = elector(api.client(), 'b');
    const stop = new AbortController();
    const acquiring = standby.acquire(stop.signal);
    while (standby.holder === undefined) await sleep(5);
    step(-60_000);
    const outcome = await within(acquiring, 3000);
    stop.abort();
    assert.equal(outcome, true, 'no leader 3 s after a 1 s lease was last renewed');
    assert.equal(api.holder(), 'b');
  });

  it('a leader keeps the lease through one failed renewal when the wall clock jumps 60 s ahead', async (t) => {
    const step = steppableWallClock(t);
    let failing = 0;
    const api = leaseApi();
    const leader = elector(
      api.client(() => {
        if (failing === 0) return;
        if (--failing === 0) step(60_000);
        throw new ApiError(500, { reason: 'InternalError' }, 'update', 'leases');
      }),
      'a',
    );
    assert.equal(await leader.acquire(new AbortController().signal), true);
    const stop = new AbortController();
    // One renewal fails (its PUT, then the GET it falls back to) as the clock jumps.
    failing = 2;
    const holding = leader.hold(stop.signal);
    const outcome = await within(holding, 300);
    stop.abort();
    assert.equal(outcome, 'pending', 'the leader gave up');
    assert.equal(await holding, 'stopped');
    assert.equal(api.holder(), 'a');
  });

  it('a leader whose renewals fail gives up at its renew deadline when the wall clock jumps 60 s back', async (t) => {
    const step = steppableWallClock(t);
    let failing = false;
    let failed = 0;
    const api = leaseApi();
    const leader = elector(
      api.client(() => {
        if (!failing) return;
        if (++failed === 1) step(-60_000);
        throw new ApiError(500, { reason: 'InternalError' }, 'update', 'leases');
      }),
      'a',
    );
    assert.equal(await leader.acquire(new AbortController().signal), true);
    const stop = new AbortController();
    // Every renewal fails from now on, the clock jumping back as the first one does.
    failing = true;
    const holding = leader.hold(stop.signal);
    // Renew deadline 200 ms after the first renewal, 10 ms in.
    const outcome = await within(holding, 2000);
    stop.abort();
    assert.equal(outcome, 'lost', 'still leading 2 s into a 200 ms renew deadline');
    assert.equal(leader.isLeader, false);
  });
});
