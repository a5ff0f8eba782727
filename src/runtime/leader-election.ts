// Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules: a candidate takes the
// lease when it is free or its holder has not renewed it within its duration (timed by the
// candidate's own monotonic clock, from when it last saw the lease change); every write carries the
// resourceVersion it read, so two candidates never both win; the leader renews every retry period
// and gives up when a round of renewals has failed for the renew deadline; on a graceful stop it
// empties the lease so a standby takes over at its next try instead of waiting for expiry.
//
// Written here rather than taken from a library: client-node's LeaderElection is tied to that
// client (which this operator does not use, see kube/client.ts), and the rules fit in one file.
import { setTimeout as sleep } from 'node:timers/promises';
import { isNotFound } from '../kube/errors.ts';
import { LEASES, resource, type Requester, type Resource } from '../kube/resource.ts';
import type { ObjectReference } from './events.ts';

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string; uid?: string };
  spec: LeaseSpec;
}

export interface LeaderElectionTimings {
  /** How long a standby waits, after the lease last changed, before taking it (client-go: 15 s). */
  leaseDurationMs: number;
  /** How long the leader keeps trying to renew before it gives up leadership (client-go: 10 s). */
  renewDeadlineMs: number;
  /** Time between tries to acquire or renew (client-go: 2 s). */
  retryPeriodMs: number;
}

export const DEFAULT_TIMINGS: LeaderElectionTimings = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

/** client-go jitters the retry period of candidates by up to 20%. */
const JITTER = 1.2;

/** Why a set of timings cannot work, or undefined: the checks client-go makes. */
export function timingsProblem(t: LeaderElectionTimings): string | undefined {
  if (t.leaseDurationMs <= t.renewDeadlineMs)
    return 'the lease duration must be longer than the renew deadline';
  if (t.renewDeadlineMs <= t.retryPeriodMs * JITTER)
    return 'the renew deadline must be longer than 1.2 × the retry period';
  return undefined;
}

/**
 * This replica's clocks at one instant. Durations (a lease's expiry, the renew deadline) are timed
 * on the monotonic one, as client-go times them: a step of the wall clock (NTP) must neither keep
 * a leader past its lease nor let a standby take a live one. The wall clock only dates what is
 * written in the lease (acquireTime, renewTime), as client-go dates them.
 */
export interface Clocks {
  /** performance.now() */
  monotonic: number;
  /** Date.now() */
  wall: number;
}

export const readClocks = (): Clocks => ({ monotonic: performance.now(), wall: Date.now() });

/** Kubernetes MicroTime: RFC 3339 with six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

export interface Observation {
  /** The lease as last read or written. */
  spec: LeaseSpec;
  /** This replica's monotonic clock when it last saw the lease change: expiry is timed from here. */
  observedAt: number;
}

/**
 * When, on this replica's monotonic clock, the lease's holder stops counting as live if it renews
 * no more: the duration written in the lease (else `leaseDurationSeconds`) after it was seen.
 */
export function expiresAt(observation: Observation, leaseDurationSeconds: number): number {
  const { spec, observedAt } = observation;
  return observedAt + (spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
}

/**
 * The lease this replica should write to hold leadership, or undefined when another live holder
 * has it. Pure: `observation` is the lease as read, `now` this replica's clocks.
 */
export function claim(
  observation: Observation,
  identity: string,
  now: Clocks,
  leaseDurationSeconds: number,
): LeaseSpec | undefined {
  const { spec } = observation;
  const holder = spec.holderIdentity ?? '';
  if (
    holder !== '' &&
    holder !== identity &&
    expiresAt(observation, leaseDurationSeconds) > now.monotonic
  ) {
    return undefined;
  }
  const renewing = holder === identity;
  const taken = newLease(identity, now.wall, leaseDurationSeconds);
  return {
    ...taken,
    acquireTime: renewing && spec.acquireTime ? spec.acquireTime : taken.acquireTime,
    leaseTransitions: (spec.leaseTransitions ?? 0) + (renewing || holder === '' ? 0 : 1),
  };
}

/** The lease of its first holder. */
export function newLease(
  identity: string,
  now: number,
  leaseDurationSeconds: number,
): Required<LeaseSpec> {
  return {
    holderIdentity: identity,
    leaseDurationSeconds,
    acquireTime: microTime(now),
    renewTime: microTime(now),
    leaseTransitions: 0,
  };
}

/** The lease a leader leaves behind on a graceful stop: no holder, so the next try takes it. */
export function released(spec: LeaseSpec, now: number): LeaseSpec {
  return {
    holderIdentity: '',
    leaseDurationSeconds: 1,
    acquireTime: microTime(now),
    renewTime: microTime(now),
    leaseTransitions: spec.leaseTransitions ?? 0,
  };
}

export interface LeaderElectorOptions extends LeaderElectionTimings {
  client: Requester;
  namespace: string;
  name: string;
  /** Unique per process: two processes with one identity would both believe they lead. */
  identity: string;
  /** Told of every change of leadership of this replica. */
  onLeading?: (leading: boolean) => void;
  /** Told when the holder this replica sees changes (another replica took over, or nobody holds). */
  onHolder?: (holder: string) => void;
  /** Failed tries; the elector keeps trying. */
  onError?: (message: string, err: unknown) => void;
}

export type LeadershipEnd = 'lost' | 'stopped';

/** A try's result: this replica holds the lease; another live holder has it; no answer or a conflict. */
type TryOutcome = 'holding' | 'held-by-another' | 'failed';

export class LeaderElector {
  private readonly options: LeaderElectorOptions;
  private observed: (Observation & { resourceVersion?: string; uid?: string }) | undefined;
  private leading = false;
  private lastTryOk = false;

  constructor(options: LeaderElectorOptions) {
    this.options = options;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** The last try reached the API server and got an answer: what readiness reports. */
  get healthy(): boolean {
    return this.lastTryOk;
  }

  get holder(): string | undefined {
    return this.observed?.spec.holderIdentity;
  }

  /** The Lease as the subject of an Event (client-go records leadership changes on it), once seen. */
  get leaseReference(): ObjectReference | undefined {
    const uid = this.observed?.uid;
    if (!uid) return undefined;
    const { namespace, name } = this.options;
    return { apiVersion: LEASES.apiVersion, kind: LEASES.kind, namespace, name, uid };
  }

  private get leases(): Resource<Lease> {
    return resource<Lease>(this.options.client, LEASES).namespace(this.options.namespace);
  }

  /** Tries every retry period (jittered) until this replica holds the lease; false if stopped first. */
  async acquire(signal: AbortSignal): Promise<boolean> {
    const { retryPeriodMs, renewDeadlineMs } = this.options;
    while (!signal.aborted) {
      if ((await this.tryAcquireOrRenew(signal, renewDeadlineMs)) === 'holding') {
        this.setLeading(true);
        return true;
      }
      await pause(retryPeriodMs * (1 + Math.random() * (JITTER - 1)), signal);
    }
    return false;
  }

  /**
   * Renews every retry period while leading. Resolves 'lost' when a round of tries failed for the
   * renew deadline, or at once when another replica is seen holding the lease (a leader that was
   * frozen past its lease): the caller must stop writing now. Resolves 'stopped' when `signal`
   * aborts, after the renewal under way if any: abort it once the work is drained (as
   * controller-runtime stops leader election last), then call release().
   */
  async hold(signal: AbortSignal): Promise<LeadershipEnd> {
    const { retryPeriodMs, renewDeadlineMs } = this.options;
    while (!signal.aborted) {
      await pause(retryPeriodMs, signal);
      if (stopped(signal)) break;
      const deadline = performance.now() + renewDeadlineMs;
      let outcome: TryOutcome = 'failed';
      while (outcome === 'failed' && !stopped(signal) && performance.now() < deadline) {
        // Not cut by the stop: a renewal the API server applied but whose answer was dropped
        // would leave release() a stale resourceVersion, refused.
        outcome = await this.tryAcquireOrRenew(UNSTOPPED, deadline - performance.now());
        if (outcome === 'failed')
          await pause(Math.min(retryPeriodMs, deadline - performance.now()), signal);
      }
      if (stopped(signal)) break;
      if (outcome !== 'holding') {
        this.setLeading(false);
        return 'lost';
      }
    }
    return 'stopped';
  }

  /** Empties the lease if this replica holds it, so a standby takes over without waiting. */
  async release(): Promise<void> {
    const observed = this.observed;
    if (!this.leading || !observed) return;
    this.setLeading(false);
    await this.write(released(observed.spec, Date.now()), observed.resourceVersion).catch(
      (err: unknown) => {
        this.options.onError?.('could not release the lease; it expires on its own', err);
      },
    );
  }

  /** One try, bounded by `timeoutMs`. */
  private async tryAcquireOrRenew(stop: AbortSignal, timeoutMs: number): Promise<TryOutcome> {
    const { identity, leaseDurationMs } = this.options;
    const seconds = Math.ceil(leaseDurationMs / 1000);
    // AbortSignal.timeout takes whole milliseconds; the monotonic clock has fractions.
    const signal = AbortSignal.any([stop, AbortSignal.timeout(Math.ceil(timeoutMs))]);
    try {
      // The leader renews straight from what it last wrote, one request per renewal; only if that
      // fails (someone else wrote the lease) does it read the lease first.
      if (this.leading && this.observed) {
        const next = claim(this.observed, identity, readClocks(), seconds);
        if (next) {
          try {
            await this.write(next, this.observed.resourceVersion, signal);
            this.lastTryOk = true;
            return 'holding';
          } catch (err) {
            if (signal.aborted) throw err;
          }
        }
      }
      let lease: Lease;
      try {
        lease = await this.leases.get(this.options.name, { signal });
      } catch (err) {
        if (!isNotFound(err)) throw err;
        await this.create(newLease(identity, Date.now(), seconds), signal);
        this.lastTryOk = true;
        return 'holding';
      }
      this.observe(lease);
      this.lastTryOk = true;
      const next = claim(this.observed as Observation, identity, readClocks(), seconds);
      if (!next) return 'held-by-another';
      await this.write(next, lease.metadata.resourceVersion, signal);
      return 'holding';
    } catch (err) {
      this.lastTryOk = false;
      if (!stop.aborted) {
        this.options.onError?.(`lease ${this.options.namespace}/${this.options.name}`, err);
      }
      return 'failed';
    }
  }

  private observe(lease: Lease): void {
    const changed =
      !this.observed ||
      this.observed.resourceVersion !== lease.metadata.resourceVersion ||
      JSON.stringify(this.observed.spec) !== JSON.stringify(lease.spec);
    const holderChanged = this.observed?.spec.holderIdentity !== lease.spec.holderIdentity;
    if (changed) {
      this.observed = {
        spec: lease.spec,
        observedAt: performance.now(),
        ...(lease.metadata.resourceVersion
          ? { resourceVersion: lease.metadata.resourceVersion }
          : {}),
        ...(lease.metadata.uid ? { uid: lease.metadata.uid } : {}),
      };
    }
    if (holderChanged) this.options.onHolder?.(lease.spec.holderIdentity ?? '');
  }

  private async create(spec: LeaseSpec, signal: AbortSignal): Promise<void> {
    const { namespace, name } = this.options;
    const created = await this.leases.create(leaseObject(namespace, name, spec), { signal });
    this.observe(created);
  }

  /** A PUT with the resourceVersion read: the API server refuses it (409) if anyone wrote since. */
  private async write(
    spec: LeaseSpec,
    resourceVersion: string | undefined,
    signal?: AbortSignal,
  ): Promise<void> {
    const { namespace, name } = this.options;
    const written = await this.leases.replace(
      leaseObject(namespace, name, spec, resourceVersion),
      signal ? { signal } : {},
    );
    this.observe(written);
  }

  private setLeading(leading: boolean): void {
    if (this.leading === leading) return;
    this.leading = leading;
    this.options.onLeading?.(leading);
  }
}

function leaseObject(
  namespace: string,
  name: string,
  spec: LeaseSpec,
  resourceVersion?: string,
): Lease {
  return {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name, namespace, ...(resourceVersion ? { resourceVersion } : {}) },
    spec,
  };
}

const UNSTOPPED = new AbortController().signal;

/** Read through a call: TypeScript would otherwise keep `aborted` narrowed across awaits. */
const stopped = (signal: AbortSignal): boolean => signal.aborted;

async function pause(ms: number, signal: AbortSignal): Promise<void> {
  await sleep(Math.max(0, ms), undefined, { signal }).catch(() => undefined);
}
