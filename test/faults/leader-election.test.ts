// Leader election with real operator processes on the shared cluster, each scoped to this test's
// namespace: one leader and warm standbys that write nothing; a leader killed (SIGKILL) is
// replaced once its lease expires, one stopped (SIGTERM) at the standby's next try; a leader frozen
// past its lease finds another holder on resume and exits; one stopped while a write is held keeps
// renewing until the write is through, then releases. Client-go's default timings throughout
// (lease 15 s, renew deadline 10 s, retry 2 s), so the recovery times printed are the real ones.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isWriteVerb } from '../../src/kube/request-info.ts';
import type { LeaseSpec } from '../../src/runtime/leader-election.ts';
import {
  clusterKubeconfig,
  eventually,
  grantRole,
  serviceAccountKubeconfig,
} from '../support/kube.ts';
import { OPERATOR_RULES } from '../support/fixtures.ts';
import { createEchoes, deploymentsPath, fleetDifferences } from '../support/fleet.ts';
import { auditedCalls } from '../support/audit.ts';
import { startMain, whenReady, type OperatorProcess } from '../support/main-process.ts';
import { scrape } from '../support/metrics.ts';
import { startHoldingWebhook } from '../support/holding-webhook.ts';
import { useNamespace, testNamespace } from '../support/namespaces.ts';

const LEASE = 'echo-operator-faults';

interface Replica {
  name: string;
  process: OperatorProcess;
  port: number;
}

describe('leader election', () => {
  const { admin, ns, cleanup } = useNamespace('leader-election');
  const replicas: Replica[] = [];
  const wanted = new Map<string, number>();

  const startReplica = async (name: string): Promise<Replica> => {
    const process = startMain(
      [
        `--kubeconfig=${clusterKubeconfig()}`,
        `--namespaces=${ns.name}`,
        '--leader-elect=true',
        `--leader-elect-namespace=${ns.name}`,
        `--leader-elect-lease-name=${LEASE}`,
      ],
      { POD_NAME: name },
    );
    // Standbys are ready too: their caches are warm, so they can take over at once.
    const replica = { name, process, port: await whenReady(process) };
    replicas.push(replica);
    return replica;
  };
  const leading = async (r: Replica): Promise<boolean> =>
    (await scrape(r.port)).value('leader_election_master_status', { name: LEASE }) === 1;
  const whenLeading = (r: Replica, timeoutMs = 60_000): Promise<true> =>
    eventually(
      `${r.name} to lead`,
      async () => ((await leading(r)) ? true : undefined),
      timeoutMs,
      100,
    );
  const leasePath = (where = { namespace: ns.name, name: LEASE }): string =>
    `/apis/coordination.k8s.io/v1/namespaces/${where.namespace}/leases/${where.name}`;
  const lease = async (): Promise<LeaseSpec> =>
    (await admin.request<{ spec: LeaseSpec }>({ path: leasePath() })).spec;
  /**
   * Follows the Lease from now on: `states` holds its state now, then every state it goes through
   * until `until` is true of one, as the API server's watch delivers them, so none is missed
   * however briefly it lasted. Resolves once "now" is fixed (the Lease read).
   */
  const followLease = async (
    until: (spec: LeaseSpec) => boolean,
    where = { namespace: ns.name, name: LEASE },
  ): Promise<{ states: Promise<LeaseSpec[]> }> => {
    const current = await admin.request<{ metadata: { resourceVersion: string }; spec: LeaseSpec }>(
      { path: leasePath(where) },
    );
    const stop = new AbortController();
    const events = admin.watch<{ spec: LeaseSpec }>({
      path: `/apis/coordination.k8s.io/v1/namespaces/${where.namespace}/leases`,
      query: {
        fieldSelector: `metadata.name=${where.name}`,
        resourceVersion: current.metadata.resourceVersion,
      },
      idleTimeoutMs: 120_000,
      signal: stop.signal,
    });
    const collect = async (): Promise<LeaseSpec[]> => {
      const states = [current.spec];
      for await (const event of events) {
        if (event.type !== 'MODIFIED') continue;
        states.push(event.object.spec);
        if (until(event.object.spec)) break;
      }
      stop.abort();
      return states;
    };
    const states = collect();
    // Awaited by the caller later on; a failure meanwhile is not an unhandled rejection.
    states.catch(() => undefined);
    return { states };
  };
  const converged = (what: string): Promise<true> =>
    eventually(
      what,
      async () =>
        (await fleetDifferences(admin, ns.name, wanted)).length === 0 ? true : undefined,
      120_000,
    );
  /** The notes of the Events about the Lease (reason LeaderElection). */
  const leaseEventNotes = async (): Promise<string[]> =>
    (
      await admin.request<{
        items: { reason: string; note: string; regarding: { kind: string; name: string } }[];
      }>({ path: `/apis/events.k8s.io/v1/namespaces/${ns.name}/events` })
    ).items
      .filter(
        (e) =>
          e.reason === 'LeaderElection' &&
          e.regarding.kind === 'Lease' &&
          e.regarding.name === LEASE,
      )
      .map((e) => e.note);
  /** Requests of `r` whose verb passes `verb`, leaving out its lease's. */
  const requests = async (r: Replica, verb: (v: string) => boolean): Promise<number> =>
    (await scrape(r.port)).total(
      'echo_operator_kubernetes_requests_total',
      (l) => verb(l.verb ?? '') && l.resource !== 'leases.coordination.k8s.io',
    );

  cleanup(() => {
    for (const r of replicas) {
      r.process.child.kill('SIGCONT');
      r.process.child.kill('SIGKILL');
    }
  });

  it('runs one leader; a standby keeps warm caches and writes nothing', async () => {
    const a = await startReplica('replica-a');
    await whenLeading(a);
    const b = await startReplica('replica-b');
    for (let i = 0; i < 20; i++) wanted.set(`echo-${String(i)}`, 1);
    await createEchoes(admin, ns.name, wanted);
    await converged('20 Echoes converged by the leader');

    assert.equal(await leading(b), false);
    const standby = await scrape(b.port);
    assert.equal(standby.value('echo_operator_informer_objects', { informer: 'echoes' }), 20);
    assert.equal(standby.value('echo_operator_informer_objects', { informer: 'deployments' }), 20);
    assert.equal(await requests(b, isWriteVerb), 0, 'the standby wrote nothing');
    assert.equal(standby.value('workqueue_adds_total', { name: 'echo' }), 0, 'nor queued anything');
    assert.match((await lease()).holderIdentity ?? '', /^replica-a_/);
  });

  it('replaces a killed leader once its lease expires, converging what changed meanwhile without relisting', async (t) => {
    const [a, b] = replicas as [Replica, Replica];
    const listsBefore = await requests(b, (v) => v === 'list');
    const transitionsBefore = (await lease()).leaseTransitions ?? 0;
    const killedAt = Date.now();
    a.process.child.kill('SIGKILL');
    for (let i = 0; i < 3; i++) wanted.set(`after-kill-${String(i)}`, 1);
    wanted.set('echo-0', 2);
    await createEchoes(
      admin,
      ns.name,
      new Map([...wanted].filter(([n]) => n.startsWith('after-kill'))),
    );
    await admin.request({
      method: 'PATCH',
      path: `/apis/example.com/v1/namespaces/${ns.name}/echoes/echo-0`,
      body: { spec: { replicas: 2 } },
      contentType: 'application/merge-patch+json',
    });

    await whenLeading(b);
    const takeoverMs = Date.now() - killedAt;
    await converged('the changes made after the kill');
    const convergedMs = Date.now() - killedAt;
    t.diagnostic(
      `SIGKILL → standby leads: ${String(takeoverMs)} ms; → converged: ${String(convergedMs)} ms`,
    );
    // The last renewal was at most a retry period before the kill: taking over much sooner than
    // the 15 s lease would mean the standby did not respect it.
    assert.ok(
      takeoverMs > 10_000,
      `took over after ${String(takeoverMs)} ms, before the lease expired`,
    );
    const now = await lease();
    assert.match(now.holderIdentity ?? '', /^replica-b_/);
    assert.equal(now.leaseTransitions, transitionsBefore + 1);
    assert.equal(
      await requests(b, (v) => v === 'list'),
      listsBefore,
      'took over with its warm caches',
    );
  });

  it('hands over without waiting for the lease to expire when the leader stops gracefully', async (t) => {
    const b = replicas[1]!;
    const c = await startReplica('replica-c');
    assert.equal(await leading(c), false);
    const handover = await followLease((spec) =>
      (spec.holderIdentity ?? '').startsWith('replica-c_'),
    );
    const stoppedAt = Date.now();
    b.process.child.kill('SIGTERM');
    assert.equal(await b.process.exited, 0);
    await whenLeading(c);
    const handoverMs = Date.now() - stoppedAt;
    // The leader gave the lease up on its way out (no holder, a 1 s duration): the standby's next
    // try takes it, instead of waiting out the 15 s the last renewal promised.
    const states = await handover.states;
    const released = states.findIndex((s) => !s.holderIdentity && s.leaseDurationSeconds === 1);
    assert.ok(released >= 0, `released: ${JSON.stringify(states)}`);
    assert.match(states[released - 1]?.holderIdentity ?? '', /^replica-b_/, 'by replica-b');
    assert.match(states.at(-1)?.holderIdentity ?? '', /^replica-c_/, 'then taken by replica-c');
    wanted.set('after-handover', 3);
    await createEchoes(admin, ns.name, new Map([['after-handover', 3]]));
    await converged('the Echo created after the handover');
    t.diagnostic(`SIGTERM → new leader: ${String(handoverMs)} ms (drain and release included)`);
    // What `kubectl get events` shows about the Lease, as for client-go's operators.
    const history = await eventually('the leadership Events of replica-c', async () => {
      const notes = await leaseEventNotes();
      return notes.some((n) => /^replica-c_\S+ became leader$/.test(n)) ? notes : undefined;
    });
    for (const expected of [/^replica-b_\S+ became leader$/, /^replica-b_\S+ stopped leading$/])
      assert.ok(
        history.some((n) => expected.test(n)),
        `${String(expected)} in ${JSON.stringify(history)}`,
      );
  });

  it('makes a leader frozen past its lease exit on resume, once the standby leads', async (t) => {
    const c = replicas[2]!;
    const d = await startReplica('replica-d');
    const frozenAt = Date.now();
    c.process.child.kill('SIGSTOP');
    await whenLeading(d);
    t.diagnostic(`SIGSTOP of the leader → standby leads: ${String(Date.now() - frozenAt)} ms`);
    wanted.set('while-frozen', 1);
    await createEchoes(admin, ns.name, new Map([['while-frozen', 1]]));
    await converged('the Echo created while the old leader was frozen');

    const resumedAt = Date.now();
    c.process.child.kill('SIGCONT');
    assert.equal(await c.process.exited, 1, 'the old leader exits: it may no longer write');
    t.diagnostic(`SIGCONT → old leader exited: ${String(Date.now() - resumedAt)} ms`);
    assert.match(c.process.stdout(), /leadership lost/);
    assert.equal(await leading(d), true);
    await converged('still converged after the old leader left');
  });

  it('keeps renewing through the drain of a slow in-flight write, and releases the lease after it', async (t) => {
    const team = await testNamespace(t, admin, 'drain');
    const where = { namespace: team.name, name: 'echo-operator' };
    // The Deployment write of Echo `slow` is held by the API server for four retry periods.
    const webhook = await startHoldingWebhook(admin, {
      namespace: team.name,
      name: 'slow',
      delayMs: 8000,
    });
    const p = startMain(
      [
        `--kubeconfig=${clusterKubeconfig()}`,
        `--namespaces=${team.name}`,
        '--leader-elect=true',
        `--leader-elect-namespace=${team.name}`,
      ],
      { POD_NAME: 'draining' },
    );
    try {
      const port = await whenReady(p);
      await eventually('to lead', async () =>
        (await scrape(port)).value('leader_election_master_status', { name: where.name }) === 1
          ? true
          : undefined,
      );
      const released = (s: LeaseSpec): boolean => !s.holderIdentity && s.leaseDurationSeconds === 1;
      const history = await followLease(released, where);
      const createdAt = Date.now();
      await createEchoes(admin, team.name, new Map([['slow', 1]]));
      await eventually('the Deployment write to be held', () =>
        Promise.resolve(webhook.arrivals.length > 0 ? true : undefined),
      );
      const stoppedAt = Date.now();
      p.child.kill('SIGTERM');
      assert.equal(await p.exited, 0);
      const writtenAt = webhook.answered[0] ?? Infinity;
      const states = await history.states;
      const release = states.findIndex(released);
      assert.ok(release > 0, `released: ${JSON.stringify(states)}`);
      const renewedInDrain = states
        .slice(0, release)
        .filter((s) => (s.holderIdentity ?? '').startsWith('draining_'))
        .map((s) => Date.parse(s.renewTime ?? ''))
        .filter((at) => at > stoppedAt && at < writtenAt);
      t.diagnostic(
        `SIGTERM → write let through ${String(writtenAt - stoppedAt)} ms; ` +
          `renewals meanwhile: ${String(renewedInDrain.length)}; ` +
          `release ${String(Date.parse(states[release]?.renewTime ?? '') - writtenAt)} ms after it`,
      );
      assert.ok(renewedInDrain.length >= 1, `renewed during the drain: ${JSON.stringify(states)}`);
      assert.ok(
        Date.parse(states[release]?.renewTime ?? '') >= writtenAt,
        'released after the held write was let through',
      );
      // The API server's own order (its log is written as requests complete): the held write
      // completed before the last lease update, the release.
      const calls = (await auditedCalls(admin, 'echo-admin', createdAt)).filter(
        (c) => c === 'patch deployments slow' || c === `update leases ${where.name}`,
      );
      const write = calls.indexOf('patch deployments slow');
      assert.ok(write >= 0, `the write completed: ${calls.join(', ')}`);
      assert.equal(calls.at(-1), `update leases ${where.name}`, calls.join(', '));
      await admin.request({ path: `${deploymentsPath(team.name)}/slow` });
    } finally {
      p.child.kill('SIGKILL');
      await webhook.remove();
    }
  });

  it('makes a leader that cannot renew within the deadline stop and exit', async (t) => {
    const team = await testNamespace(t, admin, 'renew-refused');
    const leases = {
      apiGroups: ['coordination.k8s.io'],
      resources: ['leases'],
      verbs: ['get', 'create', 'update'],
    };
    await grantRole(admin, team.name, `${team.name}/operator`, [...OPERATOR_RULES, leases]);
    const kubeconfig = await serviceAccountKubeconfig(admin, team.name, 'operator');
    const p = startMain(
      [
        `--kubeconfig=${kubeconfig}`,
        `--namespaces=${team.name}`,
        '--leader-elect=true',
        `--leader-elect-namespace=${team.name}`,
      ],
      { POD_NAME: 'renew-refused' },
    );
    try {
      const port = await whenReady(p);
      await eventually('to lead', async () =>
        (await scrape(port)).value('leader_election_master_status', { name: 'echo-operator' }) === 1
          ? true
          : undefined,
      );
      // Its Role loses the lease rules: every renewal is refused from now on.
      await admin.request({
        method: 'PATCH',
        path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${team.name}/roles/operator`,
        body: { rules: OPERATOR_RULES },
        contentType: 'application/merge-patch+json',
      });
      const revokedAt = Date.now();
      assert.equal(await p.exited, 1, 'it stops writing and exits, for a restart to stand by');
      const exitedMs = Date.now() - revokedAt;
      t.diagnostic(`lease rules removed → leader exited: ${String(exitedMs)} ms`);
      assert.match(p.stdout(), /leases\/{name}: 403 Forbidden/, 'the refusals were logged');
      assert.match(p.stdout(), /leadership lost: the lease could not be renewed in time/);
      // A renewal round lasts the renew deadline (10 s) after a retry period (2 s).
      assert.ok(exitedMs >= 8000, `exited after ${String(exitedMs)} ms, before the renew deadline`);
    } finally {
      p.child.kill('SIGKILL');
    }
  });

  it('runs independent instances side by side, each scoped to its namespaces with its own lease', async (t) => {
    const teams = await Promise.all(['team-a', 'team-b'].map((p) => testNamespace(t, admin, p)));
    const instances = teams.map((team) =>
      startMain(
        [
          `--kubeconfig=${clusterKubeconfig()}`,
          `--namespaces=${team.name}`,
          '--leader-elect=true',
          `--leader-elect-namespace=${team.name}`,
          `--leader-elect-lease-name=echo-${team.name}`,
        ],
        { POD_NAME: team.name },
      ),
    );
    try {
      for (const [i, team] of teams.entries()) {
        const port = await whenReady(instances[i]!);
        await eventually(`the ${team.name} instance to lead its own lease`, async () =>
          (await scrape(port)).value('leader_election_master_status', {
            name: `echo-${team.name}`,
          }) === 1
            ? true
            : undefined,
        );
        const own = new Map([[`${team.name}-echo`, i + 1]]);
        await createEchoes(admin, team.name, own);
        await eventually(`${team.name}'s Echo converged`, async () =>
          (await fleetDifferences(admin, team.name, own)).length === 0 ? true : undefined,
        );
        const metrics = await scrape(port);
        assert.equal(
          metrics.value('echo_operator_informer_objects', { informer: 'echoes' }),
          1,
          'each instance caches its own namespaces only',
        );
      }
    } finally {
      for (const p of instances) p.child.kill('SIGTERM');
      for (const p of instances) assert.equal(await p.exited, 0);
    }
  });
});
