// The launcher itself: a second cluster runs beside the shared one on its own ports, stop()
// leaves no process, port or directory behind, a launcher killed outright takes its processes
// with it (the next start removes the files it left), and ShardedListAndWatch can be turned off.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LocalCluster, type ClusterState } from '../../hack/cluster/cluster.ts';
import { isRunning } from '../../hack/cluster/process.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { HASH_SPACE, shardSelector } from '../../src/runtime/sharding/selector.ts';
import { clusterKubeconfig, eventually } from '../support/kube.ts';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

function portOpen(port: number): Promise<boolean> {
  return new Promise((ok) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      ok(true);
    });
    socket.once('error', () => {
      ok(false);
    });
  });
}

function listeningPorts(state: ClusterState): number[] {
  // Every --*port= and --*-urls= flag the launcher passed is a port it opened.
  const ports = new Set<number>();
  for (const p of state.processes) {
    const cmdline = readFileSync(`/proc/${String(p.pid)}/cmdline`, 'utf8').split('\0');
    for (const arg of cmdline) {
      for (const m of arg.matchAll(/(?:port=|127\.0\.0\.1:)(\d+)/g)) ports.add(Number(m[1]));
    }
  }
  return [...ports];
}

describe('cluster launcher', () => {
  it('runs a second cluster beside the shared one and leaves nothing behind when stopped', async () => {
    const cluster = await LocalCluster.start();
    const { state } = cluster;
    const processes = [...state.processes];
    const ports = listeningPorts(state);
    try {
      const sharedServer = /server: (\S+)/.exec(readFileSync(clusterKubeconfig(), 'utf8'))?.[1];
      assert.notEqual(state.server, sharedServer);
      const client = KubeClient.fromFile(cluster.kubeconfig);
      try {
        const nodes = await client.request<{ items: unknown[] }>({ path: '/api/v1/nodes' });
        assert.equal(nodes.items.length, 1);
      } finally {
        await client.close();
      }
      assert.ok(ports.length >= 5, `expected at least 5 ports, found ${ports.join(',')}`);
      assert.ok(state.processes.every((p) => isRunning(p.pid, p.command)));
    } finally {
      await cluster.stop();
    }
    for (const p of processes)
      assert.equal(isRunning(p.pid, p.command), false, `${p.name} stopped`);
    assert.equal(existsSync(state.dir), false, `${state.dir} removed`);
    for (const port of ports)
      assert.equal(await portOpen(port), false, `port ${String(port)} closed`);
  });

  it('takes its processes down when the launching process is killed', async () => {
    // A separate Node process starts a cluster and is then killed with SIGKILL: no handler runs.
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { LocalCluster } from ${JSON.stringify(join(repoRoot, 'hack/cluster/cluster.ts'))};
         const c = await LocalCluster.start();
         console.log(c.state.dir);
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const dir = await new Promise<string>((ok, fail) => {
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('\n')) ok(out.trim());
      });
      child.once('exit', (code) => {
        fail(new Error(`launcher exited early with ${String(code)}`));
      });
    });
    const state = JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as ClusterState;
    assert.ok(state.processes.every((p) => isRunning(p.pid, p.command)));
    child.kill('SIGKILL');
    await eventually(
      'every cluster process to die with its parent',
      () =>
        Promise.resolve(
          state.processes.every((p) => !isRunning(p.pid, p.command)) ? true : undefined,
        ),
      30_000,
    );
    // The next start reaps what the killed run left on disk.
    const next = await LocalCluster.start();
    await next.stop();
    assert.equal(existsSync(dir), false, `${dir} reaped by the next start`);
  });

  it('starts kube-apiserver with ShardedListAndWatch off when asked: shardSelector is ignored', async () => {
    const cluster = await LocalCluster.start({ shardedListAndWatch: false });
    const client = KubeClient.fromFile(cluster.kubeconfig);
    try {
      interface NamespaceList {
        metadata: { shardInfo?: unknown };
        items: unknown[];
      }
      const path = '/api/v1/namespaces';
      const selector = shardSelector([{ start: 0n, end: HASH_SPACE / 2n }]);
      const [all, sharded] = await Promise.all([
        client.request<NamespaceList>({ path }),
        client.request<NamespaceList>({ path, query: { shardSelector: selector } }),
      ]);
      assert.equal(sharded.metadata.shardInfo, undefined);
      assert.equal(sharded.items.length, all.items.length);
    } finally {
      await client.close();
      await cluster.stop();
    }
  });
});
