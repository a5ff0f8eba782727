// The operator scoped to 120 namespaces: 240 watches, past the 100 streams undici puts on one
// HTTP/2 connection. Every informer syncs and keeps its one watch, Echoes in the first and the last
// namespace get their Deployments, and the connections stay within the bound the operator logs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { createEchoes, deploymentsPath } from '../support/fleet.ts';
import { clusterKubeconfig, eventually } from '../support/kube.ts';
import { startMain, whenReady } from '../support/main-process.ts';
import { scrape } from '../support/metrics.ts';
import { useNamespaces } from '../support/namespaces.ts';

const COUNT = 120;

/** Established TCP connections of process `pid` to the API server's port, as `ss` sees them. */
function establishedConnections(pid: number, port: string): number {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', 'dst', `127.0.0.1:${port}`], {
    encoding: 'utf8',
  });
  return out.split('\n').filter((l) => l.includes(`pid=${String(pid)},`)).length;
}

describe(`${String(COUNT)} namespaces`, () => {
  const { admin, namespaces } = useNamespaces(Array.from({ length: COUNT }, () => 'many'));

  it('syncs every informer, reconciles in the first and the last, within its connection bound', async (t) => {
    const names = namespaces.map((ns) => ns.name);
    const startedAt = Date.now();
    const p = startMain([`--kubeconfig=${clusterKubeconfig()}`, `--namespaces=${names.join(',')}`]);
    try {
      const port = await whenReady(p);
      t.diagnostic(`started → ready (every cache synced): ${String(Date.now() - startedAt)} ms`);
      const [first = '', last = ''] = [names[0], names.at(-1)];
      await createEchoes(admin, last, new Map([['in-last', 1]]));
      await createEchoes(admin, first, new Map([['in-first', 2]]));
      for (const [ns, name] of [
        [last, 'in-last'],
        [first, 'in-first'],
      ] as const) {
        await eventually(`the Deployment of ${ns}/${name}`, () =>
          admin.request({ path: `${deploymentsPath(ns)}/${name}` }),
        );
      }
      const metrics = await scrape(port);
      for (const informer of ['echoes', 'deployments']) {
        assert.equal(
          metrics.value('echo_operator_informer_watches_total', { informer }),
          COUNT,
          `one ${informer} watch per namespace, none restarted`,
        );
        assert.equal(metrics.value('echo_operator_informer_failures_total', { informer }), 0);
      }
      // 240 watches and 16 workers' requests, at 100 streams a connection.
      const bound = metrics.value('echo_operator_kubernetes_connections_max');
      assert.equal(bound, 3);
      const open = metrics.value('echo_operator_kubernetes_connections');
      const seen = establishedConnections(p.child.pid ?? 0, admin.server.port);
      t.diagnostic(`connections: ${String(open)} by the metric, ${String(seen)} by ss`);
      assert.ok(open >= 3 && open <= bound, `${String(open)} open, bound ${String(bound)}`);
      assert.ok(seen <= bound, `${String(seen)} established, bound ${String(bound)}`);
      assert.match(p.stdout(), /"maxConnections":3/, 'the bound is in the startup log');
    } finally {
      p.child.kill('SIGTERM');
    }
    assert.equal(await p.exited, 0);
  });
});
