// Watches what the operator under test produces (Deployments, Echo status) through informers of
// the harness's own, and records when each object first meets a condition. Latencies come from
// watch events, never from polling, so the harness's own load on the API server stays flat.
import type { KubeClient } from '../src/kube/client.ts';
import { Informer } from '../src/runtime/cache/informer.ts';
import { objectKey, type KubeObject } from '../src/kube/object.ts';

export interface BenchDeployment extends KubeObject {
  spec?: { replicas?: number };
  status?: { replicas?: number; readyReplicas?: number; observedGeneration?: number };
}

export interface BenchEcho extends KubeObject {
  spec?: { replicas?: number };
  status?: { observedGeneration?: number; readyReplicas?: number };
}

interface Goal<T> {
  keys: Set<string>;
  check: (object: T) => boolean;
  reached: Map<string, number>;
  done: () => void;
}

/** Every key of `watching` reached its goal at these times (performance.now() ms). */
export type Reached = Map<string, number>;

/** A goal being waited on: `of` keys in all. */
export interface Waiting {
  reached: Promise<Reached>;
  of: number;
  /** Keys that got there so far. */
  count: () => number;
  /** Gives up waiting: `reached` resolves with the keys that got there so far. */
  stop: () => void;
}

class Tracked<T extends KubeObject> {
  readonly informer: Informer<T>;
  /** performance.now() of the last event seen. */
  lastEventAt = 0;
  private goals = new Set<Goal<T>>();
  private readonly deleted = new Map<string, number>();

  constructor(client: KubeClient, name: string, path: string) {
    this.informer = new Informer<T>({ client, name, path });
    this.informer.onEvent((e) => {
      const now = performance.now();
      this.lastEventAt = now;
      const key = objectKey(e.object);
      if (e.type === 'delete') this.deleted.set(key, now);
      for (const goal of this.goals) {
        if (!goal.keys.has(key) || goal.reached.has(key)) continue;
        if (e.type !== 'delete' && goal.check(e.object)) this.hit(goal, key, now);
      }
    });
  }

  private hit(goal: Goal<T>, key: string, now: number): void {
    goal.reached.set(key, now);
    if (goal.reached.size === goal.keys.size) {
      this.goals.delete(goal);
      goal.done();
    }
  }

  /**
   * Resolves once every key's object meets `check`, with the time each one first did. Objects
   * that already meet it count from now. `stop()` gives up: `reached` resolves with the keys that
   * got there so far.
   */
  until(keys: string[], check: (object: T) => boolean): Waiting {
    const goal: Goal<T> = {
      keys: new Set(keys),
      check,
      reached: new Map(),
      done: () => undefined,
    };
    const reached = new Promise<Reached>((resolve) => {
      goal.done = () => {
        resolve(goal.reached);
      };
    });
    this.goals.add(goal);
    const now = performance.now();
    for (const key of keys) {
      const object = this.informer.get(key);
      if (object && check(object)) this.hit(goal, key, now);
    }
    if (keys.length === 0) goal.done();
    return {
      reached,
      of: goal.keys.size,
      count: () => goal.reached.size,
      stop: () => {
        this.goals.delete(goal);
        goal.done();
      },
    };
  }

  /**
   * Resolves once none of `keys` exists, with the time each was deleted; at `deadline`
   * (performance.now() ms) with those deleted so far.
   */
  async gone(keys: string[], deadline = Infinity): Promise<Reached> {
    const pending = new Set(keys.filter((k) => this.informer.get(k)));
    const times = new Map<string, number>();
    while (pending.size > 0 && performance.now() < deadline) {
      for (const key of pending) {
        if (!this.informer.get(key)) {
          times.set(key, this.deleted.get(key) ?? performance.now());
          pending.delete(key);
        }
      }
      if (pending.size > 0) await new Promise((r) => setTimeout(r, 200));
    }
    return times;
  }
}

/** The harness's view of the cluster: every Deployment and Echo, cluster-wide. */
export class Tracker {
  readonly deployments: Tracked<BenchDeployment>;
  readonly echoes: Tracked<BenchEcho>;
  private readonly stop = new AbortController();
  private running: Promise<unknown> = Promise.resolve();

  constructor(client: KubeClient) {
    this.deployments = new Tracked(client, 'deployments', '/apis/apps/v1/deployments');
    this.echoes = new Tracked(client, 'echoes', '/apis/example.com/v1/echoes');
  }

  async start(): Promise<void> {
    this.running = Promise.all([
      this.deployments.informer.run(this.stop.signal),
      this.echoes.informer.run(this.stop.signal),
    ]);
    await Promise.all([this.deployments.informer.whenSynced(), this.echoes.informer.whenSynced()]);
  }

  /**
   * Resolves true once neither a Deployment nor an Echo has changed for `ms`, false at `deadline`
   * (performance.now() ms) if they still do.
   */
  async quiet(ms: number, deadline = Infinity): Promise<boolean> {
    for (;;) {
      const last = Math.max(this.deployments.lastEventAt, this.echoes.lastEventAt);
      const now = performance.now();
      const wait = last + ms - now;
      if (wait <= 0) return true;
      if (now >= deadline) return false;
      await new Promise((r) => setTimeout(r, Math.min(wait, deadline - now)));
    }
  }

  async close(): Promise<void> {
    this.stop.abort();
    await this.running;
  }
}
