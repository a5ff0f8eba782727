// The API server misbehaving under a running operator, on a cluster of its own: restarted in the
// middle of a create burst, frozen (SIGSTOP) for longer than the watch inactivity timeout, and
// throttling the operator with API Priority and Fairness. Each time the operator must stay up,
// converge, and get there with backoff rather than a hot loop of failing requests.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, request } from 'undici';
import { LocalCluster } from '../../hack/cluster/cluster.ts';
import { installCrd } from '../../hack/cluster/crd.ts';
import type { Echo } from '../../src/echo/api.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { loadConnection } from '../../src/kube/kubeconfig/kubeconfig.ts';
import { informerAttemptsWithin, keyAttemptsWithin } from '../support/backoff.ts';
import { isReady, OPERATOR_RULES } from '../support/fixtures.ts';
import { echoManifest } from '../support/echo.ts';
import {
  converged,
  createEchoes,
  deploymentsPath,
  echoesPath,
  listDeployments,
} from '../support/fleet.ts';
import {
  createNamespace,
  eventually,
  grantRole,
  serviceAccountKubeconfig,
} from '../support/kube.ts';
import { throttleServiceAccount } from '../support/flowcontrol.ts';
import { startMain, whenReady } from '../support/main-process.ts';
import { scrape, type Scrape } from '../support/metrics.ts';
import { startOperator } from '../support/operator.ts';

/** The operator's requests, over every verb and resource, whose code `matches`. */
function requestsWith(m: Scrape, matches: (code: number) => boolean): number {
  return m.total('echo_operator_kubernetes_requests_total', (l) => matches(Number(l.code)));
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

describe('API server faults', () => {
  let cluster: LocalCluster;
  let admin: KubeClient;

  before(async () => {
    cluster = await LocalCluster.start();
    admin = KubeClient.fromFile(cluster.kubeconfig);
    await installCrd(admin);
  });

  after(async () => {
    await admin.close();
    await cluster.stop();
  });

  const apiserverPid = (): number => {
    const entry = cluster.state.processes.find((p) => p.name === 'kube-apiserver');
    if (!entry) throw new Error('no kube-apiserver in the cluster');
    return entry.pid;
  };

  it('converges after the API server restarts in the middle of a create burst', async (t) => {
    const ns = (await createNamespace(admin, 'burst')).name;
    const wanted = new Map(
      Array.from({ length: 150 }, (_, i) => [`burst-${String(i)}`, 1 + (i % 3)] as const),
    );
    const p = startMain([`--kubeconfig=${cluster.kubeconfig}`, `--namespaces=${ns}`]);
    // Short timeouts: a probe sent to a server shutting down must not hang for a minute.
    const probe = KubeClient.fromFile(cluster.kubeconfig, { requestTimeoutMs: 1000 });
    try {
      const port = await whenReady(p);
      const creating = createEchoes(admin, ns, wanted);
      await eventually(
        'half the Deployments',
        async () =>
          (await listDeployments(admin, ns)).length >= wanted.size / 2 ? true : undefined,
        120_000,
        100,
      );
      const cut = performance.now();
      const restarting = cluster.restart('kube-apiserver');
      // The outage as a client sees it: from the first request that fails to the first that the
      // new API server answers. restart() itself waits for /readyz, which comes later.
      let down: number | undefined;
      let up: number | undefined;
      while (up === undefined) {
        const answered = await probe.request({ path: echoesPath(ns), query: { limit: 1 } }).then(
          () => true,
          () => false,
        );
        if (!answered) down ??= performance.now();
        else if (down !== undefined) up = performance.now();
        await sleep(100);
      }
      await restarting;
      await creating;
      await converged(admin, ns, wanted, { timeoutMs: 240_000 });
      const convergedAt = performance.now();
      t.diagnostic(
        `outage ${seconds(up - (down ?? cut))}; recovery (API server answering → all ${String(wanted.size)} Echoes converged) ${seconds(convergedAt - up)}`,
      );

      assert.equal(p.child.exitCode, null, 'still running: a lost API server is retried');
      assert.match(p.stdout(), /watch failed, retrying/, 'the restart did cut the watches');
      const m = await scrape(port);
      // The informers reconnect after 800 ms, doubling to 30 s; reconciles retry each Echo after
      // 5 ms, doubling. Over the outage (plus slack for a slow start) that bounds the failures; a
      // hot loop would make thousands a second.
      const outageMs = up - cut + 5000;
      for (const informer of ['echoes', 'deployments']) {
        const failures = m.value('echo_operator_informer_failures_total', { informer });
        const bound = informerAttemptsWithin(outageMs);
        t.diagnostic(`${informer} informer: ${String(failures)} failures (bound ${String(bound)})`);
        assert.ok(failures >= 1, `the ${informer} watch was cut`);
        assert.ok(
          failures <= bound,
          `${informer}: ${String(failures)} failures > ${String(bound)}`,
        );
      }
      const failed = requestsWith(m, (code) => code === 0 || code >= 500);
      // Per Echo: its reconcile's attempts, and one Event; per informer: its own attempts.
      const bound =
        wanted.size * (keyAttemptsWithin(outageMs) + 1) + 2 * informerAttemptsWithin(outageMs);
      t.diagnostic(
        `requests failed (no answer or 5xx): ${String(failed)} (bound ${String(bound)})`,
      );
      assert.ok(failed <= bound, `${String(failed)} failed requests > ${String(bound)}`);
    } finally {
      p.child.kill('SIGTERM');
      await probe.close();
    }
    assert.equal(await p.exited, 0);
  });

  it('reopens its watches after the API server was frozen past the idle timeout', async (t) => {
    const ns = (await createNamespace(admin, 'frozen')).name;
    // The default (150 s) outlasts bookmarks, which come about once a minute; a few seconds keeps
    // the test short. The heartbeat below keeps healthy watches from idling out meanwhile.
    const idleTimeoutMs = 4000;
    type Seen = 'list' | 'watch' | 'failure';
    const seen: { informer: string; kind: Seen; at: number }[] = [];
    const since = (from: number, informer: string, kind: Seen) =>
      seen.filter((e) => e.informer === informer && e.kind === kind && e.at >= from);

    // An annotation on the Echo and on its Deployment, rewritten every half second: an event on
    // each watch that changes nothing the operator acts on, so it makes no request of its own.
    await createEchoes(admin, ns, new Map([['heartbeat', 1]]));
    const beats = KubeClient.fromFile(cluster.kubeconfig, { requestTimeoutMs: 1000 });
    const stopBeating = new AbortController();
    const beating = (async () => {
      for (let n = 0; !stopBeating.signal.aborted; n++) {
        const body = { metadata: { annotations: { heartbeat: String(n) } } };
        await Promise.allSettled(
          [echoesPath(ns), deploymentsPath(ns)].map((path) =>
            beats.request({
              method: 'PATCH',
              path: `${path}/heartbeat`,
              body,
              contentType: 'application/merge-patch+json',
            }),
          ),
        );
        await sleep(500, undefined, { signal: stopBeating.signal }).catch(() => undefined);
      }
    })();
    const op = await startOperator(
      [ns],
      {
        idleTimeoutMs,
        informerObserver: (informer) => ({
          listed: () => seen.push({ informer, kind: 'list', at: performance.now() }),
          watchStarted: () => seen.push({ informer, kind: 'watch', at: performance.now() }),
          failed: () => seen.push({ informer, kind: 'failure', at: performance.now() }),
        }),
      },
      cluster.kubeconfig,
      { requestTimeoutMs: idleTimeoutMs },
    );
    const pid = apiserverPid();
    try {
      const echo = (name: string) => admin.request<Echo>({ path: `${echoesPath(ns)}/${name}` });
      await eventually('the heartbeat Echo Ready', async () =>
        isReady(await echo('heartbeat'), 1) ? true : undefined,
      );
      const steady = performance.now();
      // A measuring window: healthy watches must outlive the idle timeout, so this absence of
      // failures can only be seen over a stretch longer than it (load only makes it longer).
      await sleep(idleTimeoutMs * 1.5);
      for (const informer of ['echoes', 'deployments']) {
        assert.deepEqual(since(steady, informer, 'failure'), [], `${informer}: kept alive`);
      }

      const requestsBefore = op.counts.total();
      const frozen = performance.now();
      process.kill(pid, 'SIGSTOP');
      try {
        // A measuring window: the freeze itself, which must outlast the idle timeout.
        await sleep(idleTimeoutMs * 2.5);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      const resumed = performance.now();
      const requestsWhileFrozen = op.counts.total() - requestsBefore;

      await admin.request({
        method: 'POST',
        path: echoesPath(ns),
        body: echoManifest({ name: 'thawed', replicas: 2 }),
      });
      // Both watches deliver again: the new Echo reaches the Echo cache, and the Deployment the
      // operator makes for it reaches the Deployment cache (no relist: the watches resumed).
      const delivered = await eventually(
        'the new Echo and its Deployment in the caches',
        () =>
          Promise.resolve(
            op.operator.caches.echoes.get(`${ns}/thawed`) &&
              op.operator.caches.deployments.get(`${ns}/thawed`)
              ? performance.now()
              : undefined,
          ),
        60_000,
        50,
      );
      await eventually('the Echo created after the resume Ready', async () =>
        isReady(await echo('thawed'), 2) ? true : undefined,
      );
      const convergedAt = performance.now();
      t.diagnostic(
        `frozen ${seconds(resumed - frozen)} (idle timeout ${seconds(idleTimeoutMs)}); after SIGCONT: watches delivering in ${seconds(delivered - resumed)}, new Echo Ready in ${seconds(convergedAt - resumed)}`,
      );

      // The silence was noticed by the idle timeout, not left hanging until the server came back,
      // and each informer then opened a new watch, with backoff.
      const bound = informerAttemptsWithin(resumed - frozen);
      for (const informer of ['echoes', 'deployments']) {
        const failures = since(frozen, informer, 'failure').filter((e) => e.at <= resumed);
        t.diagnostic(
          `${informer}: ${String(failures.length)} failures while frozen (bound ${String(bound)})`,
        );
        assert.ok(failures[0], `${informer}: the frozen watch timed out`);
        assert.ok(
          failures.length <= bound,
          `${informer}: ${String(failures.length)} failures > ${String(bound)}`,
        );
        assert.ok(since(failures[0].at, informer, 'watch').length >= 1, `${informer}: reopened`);
        assert.equal(since(0, informer, 'list').length, 1, `${informer}: resumed, not relisted`);
      }
      // Only the informers' attempts: no reconcile had anything to do while the server was away.
      t.diagnostic(
        `requests completed (answered, failed or timed out) while frozen: ${String(requestsWhileFrozen)}`,
      );
      assert.ok(requestsWhileFrozen <= 2 * bound, `${String(requestsWhileFrozen)} requests`);
    } finally {
      process.kill(pid, 'SIGCONT');
      stopBeating.abort();
      await beating;
      await beats.close();
      await op.stop();
    }
  });

  it('backs off when API Priority and Fairness rejects it, and still converges', async (t) => {
    const ns = (await createNamespace(admin, 'throttled')).name;
    const account = 'echo-operator';
    await grantRole(admin, ns, `${ns}/${account}`, OPERATOR_RULES);
    const kubeconfig = await serviceAccountKubeconfig(admin, ns, account, cluster.kubeconfig);
    // A priority level with a small share of the server's concurrency (600 seats split by shares:
    // 8 of 253, so 19 seats), nothing borrowed or lent, and no queue: beyond its seats, 429. Not
    // smaller: APF raises its Retry-After (1 to 32 s) with the rate of rejections, and the
    // operator, honouring it, then takes minutes.
    const throttle = await throttleServiceAccount(admin, ns, account, 8);
    const connection = loadConnection({ path: kubeconfig });
    const agent = new Agent({
      connect: { ...(connection.tls.ca ? { ca: connection.tls.ca } : {}) },
      connections: 64,
    });
    /** `count` requests at once as the operator's ServiceAccount: their codes and Retry-After. */
    const asOperator = async (count: number) => {
      const { headers } = await connection.credentials();
      return Promise.all(
        Array.from({ length: count }, async () => {
          const res = await request(`${connection.server.origin}${echoesPath(ns)}?limit=1`, {
            dispatcher: agent,
            headers,
          });
          await res.body.dump();
          const h = res.headers;
          return {
            code: res.statusCode,
            retryAfter: typeof h['retry-after'] === 'string' ? h['retry-after'] : undefined,
            flowSchema: h['x-kubernetes-pf-flowschema-uid'],
          };
        }),
      );
    };
    const wanted = new Map(
      Array.from({ length: 100 }, (_, i) => [`throttled-${String(i)}`, 1 + (i % 2)] as const),
    );
    const concurrency = 50;
    let p: ReturnType<typeof startMain> | undefined;
    try {
      await eventually('the API server to classify the operator under the new schema', async () =>
        (await asOperator(1))[0]?.flowSchema === throttle.flowSchemaUid ? true : undefined,
      );
      p = startMain([
        `--kubeconfig=${kubeconfig}`,
        `--namespaces=${ns}`,
        `--concurrency=${String(concurrency)}`,
      ]);
      const port = await whenReady(p);
      const started = performance.now();
      await createEchoes(admin, ns, wanted);
      // The header the operator honours, seen from beside it in the same priority level.
      const answers = await asOperator(20);
      const retryAfter = answers.find((a) => a.code === 429)?.retryAfter;
      await converged(admin, ns, wanted, { timeoutMs: 180_000 });
      const elapsed = performance.now() - started;
      const m = await scrape(port);
      const throttled = requestsWith(m, (code) => code === 429);
      t.diagnostic(
        `${String(wanted.size)} Echoes converged in ${seconds(elapsed)} with ${String(throttled)} answers 429 to the operator; Retry-After ${retryAfter ?? 'not seen'} (probe: ${String(answers.filter((a) => a.code === 429).length)} of ${String(answers.length)} rejected)`,
      );
      assert.ok(
        throttled > 0,
        'the API server did throttle the operator (else this proves nothing)',
      );
      // Each request answered 429 waits Retry-After (at least a second) before its next attempt,
      // so the 429s are bounded by the requests in flight per second: the workers, the informers,
      // and an Event per Echo at most 10 attempts each. Without the wait: hundreds a second.
      const bound = Math.ceil((concurrency + 2) * (elapsed / 1000 + 1) + wanted.size * 10);
      t.diagnostic(
        `429 rate ${(throttled / (elapsed / 1000)).toFixed(1)}/s; bound ${String(bound)} in all`,
      );
      assert.ok(throttled <= bound, `${String(throttled)} answers 429 > ${String(bound)}`);
      assert.equal(p.child.exitCode, null, 'throttling is retried, not fatal');
    } finally {
      p?.child.kill('SIGTERM');
      await agent.close();
      await throttle.remove();
    }
    assert.ok(p);
    assert.equal(await p.exited, 0);
  });
});
