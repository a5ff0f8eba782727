// Sharding with real operator processes on the shared cluster (kube-apiserver with
// ShardedListAndWatch on), each scoped to this test's namespace and 8 buckets: two replicas split
// the Echoes and cache only their own; a third joins and takes its share by handover, no Lease
// left to expire; one killed (SIGKILL) has its buckets taken within the lease duration; one
// stopped (SIGTERM) hands its buckets over at once. Moving between leader election and sharding,
// neither side reconciles while the other lives. Throughout, the API server's audit log shows
// no Echo, Echo status or Deployment written by two replicas within one lease duration (the edits
// after a handover wait one out: sequential writes that close would count too). Then, on
// a control plane of its own with the gate off, replicas filter what the server does not.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { installCrd } from '../../hack/cluster/crd.ts';
import { LocalCluster } from '../../hack/cluster/cluster.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { isWriteVerb } from '../../src/kube/request-info.ts';
import { bucketOf } from '../../src/runtime/sharding/buckets.ts';
import { auditEvents, type AuditEvent } from '../support/audit.ts';
import { createEchoes, echoesPath, fleetDifferences } from '../support/fleet.ts';
import { clusterKubeconfig, createNamespace, eventually } from '../support/kube.ts';
import { startMain, whenReady, type OperatorProcess } from '../support/main-process.ts';
import { scrape } from '../support/metrics.ts';
import { useNamespace } from '../support/namespaces.ts';

const GROUP = 'echo-shards';
const BUCKETS = 8;
const LEASE_MS = 15_000;

interface Replica {
  name: string;
  process: OperatorProcess;
  port: number;
}

/** Writes to one object by two replicas less than `windowMs` apart, from the audit log. */
export function overlaps(events: AuditEvent[], windowMs: number): string[] {
  const last = new Map<string, { instance: string; at: number }>();
  const found: string[] = [];
  for (const e of events) {
    const instance = / instance\/(\S+)$/.exec(e.userAgent ?? '')?.[1];
    const r = e.objectRef;
    if (!instance || !r?.name || !isWriteVerb(e.verb) || e.stage !== 'ResponseComplete') continue;
    if (r.resource !== 'echoes' && r.resource !== 'deployments') continue;
    const key = `${r.resource}/${r.namespace ?? ''}/${r.name}`;
    const at = Date.parse(e.requestReceivedTimestamp);
    const before = last.get(key);
    if (before && before.instance !== instance && at - before.at < windowMs) {
      found.push(`${key}: ${before.instance} then ${instance} ${String(at - before.at)} ms apart`);
    }
    last.set(key, { instance, at });
  }
  return found;
}

function startReplica(
  replicas: Replica[],
  name: string,
  args: { kubeconfig: string; namespace: string },
  mode: 'sharding' | 'leader-elect' = 'sharding',
): Promise<Replica> {
  const process = startMain(
    [
      `--kubeconfig=${args.kubeconfig}`,
      `--namespaces=${args.namespace}`,
      ...(mode === 'sharding'
        ? ['--sharding=true', `--sharding-buckets=${String(BUCKETS)}`]
        : ['--leader-elect=true']),
      `--leader-elect-namespace=${args.namespace}`,
      `--leader-elect-lease-name=${GROUP}`,
    ],
    { POD_NAME: name },
  );
  return whenReady(process).then((port) => {
    const replica = { name, process, port };
    replicas.push(replica);
    return replica;
  });
}

const held = async (r: Replica): Promise<number> =>
  (await scrape(r.port)).value('echo_operator_sharding_buckets_held');

const leading = async (r: Replica): Promise<boolean> =>
  (await scrape(r.port)).value('leader_election_master_status', { name: GROUP }) === 1;

const stopped = async (r: Replica): Promise<void> => {
  r.process.child.kill('SIGTERM');
  assert.equal(await r.process.exited, 0, r.process.output());
};

describe('sharding', () => {
  const { admin, ns, cleanup } = useNamespace('sharding');
  const replicas: Replica[] = [];
  const wanted = new Map<string, number>();
  const since = Date.now();
  const start = (name: string): Promise<Replica> =>
    startReplica(replicas, name, { kubeconfig: clusterKubeconfig(), namespace: ns.name });
  const live = (): Replica[] =>
    replicas.filter(
      (r) => r.process.child.exitCode === null && r.process.child.signalCode === null,
    );
  const converged = (what: string, timeoutMs = 120_000): Promise<true> =>
    eventually(
      what,
      async () =>
        (await fleetDifferences(admin, ns.name, wanted)).length === 0 ? true : undefined,
      timeoutMs,
      100,
    );
  /** Waits until the live replicas hold every bucket, in fair shares, none draining. */
  const shared = (what: string, timeoutMs: number): Promise<number[]> =>
    eventually(
      what,
      async () => {
        const counts = await Promise.all(live().map(held));
        const fair = [Math.floor(BUCKETS / counts.length), Math.ceil(BUCKETS / counts.length)];
        const total = counts.reduce((a, b) => a + b, 0);
        return total === BUCKETS && counts.every((c) => fair.includes(c)) ? counts : undefined;
      },
      timeoutMs,
      100,
    );
  const bucketHolders = async (): Promise<Map<number, string>> => {
    const leases = await admin.request<{
      items: { metadata: { labels?: Record<string, string> }; spec: { holderIdentity?: string } }[];
    }>({
      path: `/apis/coordination.k8s.io/v1/namespaces/${ns.name}/leases`,
      query: {
        labelSelector: `sharding.example.com/group=${GROUP},sharding.example.com/role=bucket`,
      },
    });
    return new Map(
      leases.items.map((l) => [
        Number(l.metadata.labels?.['sharding.example.com/bucket']),
        (l.spec.holderIdentity ?? '').split('_')[0] ?? '',
      ]),
    );
  };
  const uidOf = async (name: string): Promise<string> =>
    (await admin.request<{ metadata: { uid: string } }>({ path: `${echoesPath(ns.name)}/${name}` }))
      .metadata.uid;
  const scale = (name: string, replicas: number): Promise<unknown> => {
    wanted.set(name, replicas);
    return admin.request({
      method: 'PATCH',
      path: `${echoesPath(ns.name)}/${name}`,
      body: { spec: { replicas } },
      contentType: 'application/merge-patch+json',
    });
  };

  cleanup(() => {
    for (const r of replicas) r.process.child.kill('SIGKILL');
  });

  it('splits the buckets between two replicas, each caching only its own Echoes', async () => {
    const [a, b] = await Promise.all([start('shard-a'), start('shard-b')]);
    await shared('two replicas to hold 4 buckets each', 30_000);
    for (let i = 0; i < 24; i++) wanted.set(`echo-${String(i)}`, 1);
    await createEchoes(admin, ns.name, wanted);
    await converged('24 Echoes converged');
    const cached = await Promise.all(
      [a, b].map(async (r) =>
        (await scrape(r.port)).value('echo_operator_informer_objects', { informer: 'echoes' }),
      ),
    );
    assert.equal(cached[0]! + cached[1]!, 24, `Echoes cached: ${cached.join(' + ')}`);
    const holders = await bucketHolders();
    for (const [i, r] of [a, b].entries()) {
      let own = 0;
      for (const name of wanted.keys()) {
        if (holders.get(bucketOf(await uidOf(name), BUCKETS)) === r.name) own++;
      }
      assert.equal(cached[i], own, `${r.name} caches the Echoes of its buckets, no more`);
    }
  });

  it('gives a joining replica its share by handover, within 10 s and with no Lease expiring', async (t) => {
    const joinedAt = Date.now();
    const c = await start('shard-c');
    await shared('three replicas to share the buckets', 10_000 + (Date.now() - joinedAt));
    t.diagnostic(`joined → fair shares: ${String(Date.now() - joinedAt)} ms`);
    const metrics = await Promise.all(replicas.map((r) => scrape(r.port)));
    assert.equal(
      metrics.reduce((n, m) => n + m.value('echo_operator_sharding_takeovers_total'), 0),
      0,
      'every bucket changed hands by handover, none by expiry',
    );
    assert.ok((await held(c)) >= 2);
    // The edits wait out a lease duration: a handover is sequential, but an Echo written by its
    // old replica and, just after, by its new one would count as an overlap below.
    await sleep(LEASE_MS);
    for (let i = 0; i < 24; i += 3) await scale(`echo-${String(i)}`, 2);
    await converged('the Echoes scaled after the join');
  });

  it('takes a killed replica’s buckets within the lease duration; its Echoes converge', async (t) => {
    const victim = replicas[0]!;
    const holders = await bucketHolders();
    let orphan: string | undefined;
    for (const name of wanted.keys()) {
      if (holders.get(bucketOf(await uidOf(name), BUCKETS)) === victim.name) orphan = name;
    }
    assert.ok(orphan, `${victim.name} holds some Echo's bucket`);
    const killedAt = Date.now();
    victim.process.child.kill('SIGKILL');
    await victim.process.exited;
    await scale(orphan, 3);
    await converged(`${orphan} scaled after the kill`, LEASE_MS + 5_000);
    t.diagnostic(`SIGKILL → ${orphan} scaled: ${String(Date.now() - killedAt)} ms`);
    await shared('two replicas to share the buckets again', LEASE_MS + 5_000);
  });

  it('hands every bucket over at once when a replica stops (SIGTERM)', async (t) => {
    const leaving = live()[0]!;
    const stoppedAt = Date.now();
    leaving.process.child.kill('SIGTERM');
    assert.equal(await leaving.process.exited, 0, leaving.process.output());
    await shared('the last replica to hold every bucket', 5_000);
    t.diagnostic(
      `SIGTERM → all buckets held by the last one: ${String(Date.now() - stoppedAt)} ms`,
    );
    await sleep(LEASE_MS);
    await scale('echo-1', 2);
    await converged('an Echo scaled after the leave');
  });

  it('never had two replicas write one object within a lease duration (audit log)', async () => {
    const events = (await auditEvents(admin, `instance/shard-`)).filter(
      (e) => Date.parse(e.requestReceivedTimestamp) >= since,
    );
    const writes = events.filter(
      (e) => isWriteVerb(e.verb) && e.objectRef?.resource === 'deployments',
    );
    assert.ok(
      writes.length >= 24,
      `the replicas' Deployment writes are in the log: ${String(writes.length)}`,
    );
    const found = overlaps(events, LEASE_MS);
    const timeline = events
      .filter((e) => isWriteVerb(e.verb) && e.stage === 'ResponseComplete')
      .map(
        (e) =>
          `${e.requestReceivedTimestamp} ${/ instance\/(\S+)$/.exec(e.userAgent ?? '')?.[1] ?? '?'} ${e.verb} ${e.objectRef?.resource ?? ''}/${e.objectRef?.subresource ?? ''} ${e.objectRef?.name ?? ''}`,
      );
    assert.deepEqual(found, [], timeline.join('\n'));
  });
});

describe('moving between leader election and sharding', () => {
  const { admin, ns, cleanup } = useNamespace('sharding-modes');
  const replicas: Replica[] = [];
  const sharded: Replica[] = [];
  const wanted = new Map(Array.from({ length: 8 }, (_, i) => [`echo-${String(i)}`, 1]));
  const since = Date.now();
  const start = (name: string, mode: 'sharding' | 'leader-elect'): Promise<Replica> =>
    startReplica(replicas, name, { kubeconfig: clusterKubeconfig(), namespace: ns.name }, mode);
  const scaleAll = async (replicas: number): Promise<void> => {
    for (const name of wanted.keys()) wanted.set(name, replicas);
    await Promise.all(
      [...wanted.keys()].map((name) =>
        admin.request({
          method: 'PATCH',
          path: `${echoesPath(ns.name)}/${name}`,
          body: { spec: { replicas } },
          contentType: 'application/merge-patch+json',
        }),
      ),
    );
  };
  const converged = (what: string): Promise<true> =>
    eventually(
      what,
      async () =>
        (await fleetDifferences(admin, ns.name, wanted)).length === 0 ? true : undefined,
      60_000,
      100,
    );

  cleanup(() => {
    for (const r of replicas) r.process.child.kill('SIGKILL');
  });

  it('sharded replicas take no bucket while a leader leads, and all of them once it stops', async (t) => {
    const leader = await start('modes-leader', 'leader-elect');
    await eventually('the leader to lead', async () =>
      (await leading(leader)) ? true : undefined,
    );
    await createEchoes(admin, ns.name, wanted);
    await converged('the Echoes converged by the leader');
    sharded.push(
      ...(await Promise.all([start('modes-a', 'sharding'), start('modes-b', 'sharding')])),
    );
    // Several rounds of the sharded replicas' Leases: none is taken meanwhile.
    await sleep(3 * 2_000);
    assert.deepEqual(await Promise.all(sharded.map(held)), [0, 0]);
    const stoppedAt = Date.now();
    await stopped(leader);
    await eventually(
      'the sharded replicas to hold every bucket',
      async () =>
        (await Promise.all(sharded.map(held))).reduce((a, b) => a + b, 0) === BUCKETS
          ? true
          : undefined,
      LEASE_MS,
      100,
    );
    t.diagnostic(`leader stopped → buckets all held: ${String(Date.now() - stoppedAt)} ms`);
    await sleep(LEASE_MS);
    await scaleAll(2);
    await converged('the Echoes scaled by the sharded replicas');
  });

  it('a leader stands by while sharded replicas live, and leads once they have left', async (t) => {
    const leader = await start('modes-leader-2', 'leader-elect');
    await sleep(3 * 2_000);
    assert.equal(await leading(leader), false, 'no leading beside live sharded replicas');
    const stoppedAt = Date.now();
    await Promise.all(sharded.map(stopped));
    await eventually('the leader to lead', async () =>
      (await leading(leader)) ? true : undefined,
    );
    t.diagnostic(`sharded replicas stopped → leader leads: ${String(Date.now() - stoppedAt)} ms`);
    await sleep(LEASE_MS);
    await scaleAll(3);
    await converged('the Echoes scaled by the leader');
    const events = (await auditEvents(admin, 'instance/modes-')).filter(
      (e) => Date.parse(e.requestReceivedTimestamp) >= since,
    );
    assert.deepEqual(overlaps(events, LEASE_MS), []);
  });
});

describe('sharding without ShardedListAndWatch on the API server', () => {
  let cluster: LocalCluster;
  let admin: KubeClient;
  const replicas: Replica[] = [];

  before(async () => {
    cluster = await LocalCluster.start({ shardedListAndWatch: false });
    admin = KubeClient.fromFile(cluster.kubeconfig);
    await installCrd(admin);
  });

  after(async () => {
    for (const r of replicas) r.process.child.kill('SIGKILL');
    await admin.close();
    await cluster.stop();
  });

  it('filters on the client what the server does not: each replica caches only its buckets', async () => {
    const ns = await createNamespace(admin, 'sharding-fallback');
    const args = { kubeconfig: cluster.kubeconfig, namespace: ns.name };
    const [a, b] = await Promise.all([
      startReplica(replicas, 'fallback-a', args),
      startReplica(replicas, 'fallback-b', args),
    ]);
    const wanted = new Map(Array.from({ length: 16 }, (_, i) => [`echo-${String(i)}`, 1]));
    await createEchoes(admin, ns.name, wanted);
    await eventually(
      '16 Echoes converged',
      async () =>
        (await fleetDifferences(admin, ns.name, wanted)).length === 0 ? true : undefined,
      120_000,
      100,
    );
    // The watch events reached both replicas; each kept its own.
    await sleep(500);
    const cached = await Promise.all(
      [a, b].map(async (r) =>
        (await scrape(r.port)).value('echo_operator_informer_objects', { informer: 'echoes' }),
      ),
    );
    assert.equal(cached[0]! + cached[1]!, 16, `Echoes cached: ${cached.join(' + ')}`);
    assert.ok(
      cached.every((n) => n < 16),
      'neither replica holds every Echo',
    );
  });
});
