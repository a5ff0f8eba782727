// `node bench/namespaces.ts`: the operator watching many namespaces (two watches each) on a local
// control plane of its own: TCP connections it opens to the API server (counted with `ss`, and
// its connections metric when it has one), time from start to every cache synced, and the
// latency of a write (Echo created → its Deployment exists) while every watch is open. Runs are
// interleaved by namespace count, so a busy machine affects each alike.
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { LocalCluster } from '../hack/cluster/cluster.ts';
import { installCrd } from '../hack/cluster/crd.ts';
import { diesWithParent } from '../hack/cluster/process.ts';
import { KubeClient } from '../src/kube/client.ts';
import { isNotFound } from '../src/kube/errors.ts';
import { echoManifest } from '../test/support/echo.ts';

const MAIN = fileURLToPath(new URL('../src/main.ts', import.meta.url));

interface Row {
  namespaces: number;
  syncedMs: number;
  /** Established TCP connections of the operator to the API server, per `ss`. */
  connections: number;
  /** The operator's own gauge, when it has one. */
  connectionsMetric: number | undefined;
  writeMs: number[];
}

function parse(): { counts: number[]; writes: number; rounds: number; kubeconfig?: string } {
  const { values } = parseArgs({
    options: {
      namespaces: { type: 'string', default: '1,150' },
      writes: { type: 'string', default: '6' },
      rounds: { type: 'string', default: '1' },
      kubeconfig: { type: 'string' },
    },
  });
  return {
    counts: values.namespaces.split(',').map(Number),
    writes: Number(values.writes),
    rounds: Number(values.rounds),
    ...(values.kubeconfig ? { kubeconfig: values.kubeconfig } : {}),
  };
}

/** Established connections from `pid` to `port` on the loopback. */
function establishedConnections(pid: number, port: number): number {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', 'dst', `127.0.0.1:${port}`], {
    encoding: 'utf8',
  });
  return out.split('\n').filter((l) => l.includes(`pid=${String(pid)},`)).length;
}

async function untilExists(admin: KubeClient, path: string): Promise<void> {
  for (;;) {
    try {
      await admin.request({ path });
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await sleep(10);
    }
  }
}

async function metric(port: number, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${String(port)}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

/** Starts the operator on `namespaces`; resolves with its pid, port and the time its caches took. */
async function startOperator(
  kubeconfig: string,
  namespaces: string[],
): Promise<{ stop: () => Promise<void>; pid: number; port: number; syncedMs: number }> {
  const started = performance.now();
  const [file, argv] = diesWithParent(process.execPath, [
    MAIN,
    `--kubeconfig=${kubeconfig}`,
    '--port=0',
    '--log-format=json',
    `--namespaces=${namespaces.join(',')}`,
  ]);
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  let port = 0;
  let buffered = '';
  const synced = new Promise<number>((resolve) => {
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split('\n').slice(0, -1)) {
        const entry = JSON.parse(line) as { msg?: string; port?: number; level?: number };
        if (entry.msg === 'echo-operator starting') port = entry.port ?? 0;
        if (entry.msg === 'caches synced') resolve(performance.now() - started);
        if ((entry.level ?? 0) >= 40) console.error(`  operator: ${line}`);
      }
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
    });
  });
  const syncedMs = await synced;
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await once(child, 'exit');
  };
  return { stop, pid: child.pid ?? 0, port, syncedMs };
}

async function measure(
  admin: KubeClient,
  kubeconfig: string,
  count: number,
  writes: number,
): Promise<Row> {
  const run = Math.random().toString(36).slice(2, 7);
  const namespaces = Array.from({ length: count }, (_, i) => `bench-ns-${run}-${String(i)}`);
  for (let i = 0; i < namespaces.length; i += 25) {
    await Promise.all(
      namespaces.slice(i, i + 25).map((name) =>
        admin.request({
          method: 'POST',
          path: '/api/v1/namespaces',
          body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } },
        }),
      ),
    );
  }
  const operator = await startOperator(kubeconfig, namespaces);
  const apiPort = Number(admin.server.port);
  const writeMs: number[] = [];
  for (let i = 0; i < writes; i++) {
    // Alternately the last namespace (the last watches opened) and the first.
    const ns = namespaces[i % 2 === 0 ? namespaces.length - 1 : 0] ?? '';
    const name = `write-${String(i)}`;
    const begun = performance.now();
    await admin.request({
      method: 'POST',
      path: `/apis/example.com/v1/namespaces/${ns}/echoes`,
      body: echoManifest({ name, replicas: 1 }),
    });
    await untilExists(admin, `/apis/apps/v1/namespaces/${ns}/deployments/${name}`);
    writeMs.push(Math.round(performance.now() - begun));
  }
  const row: Row = {
    namespaces: count,
    syncedMs: Math.round(operator.syncedMs),
    connections: establishedConnections(operator.pid, apiPort),
    connectionsMetric: await metric(operator.port, 'echo_operator_kubernetes_connections'),
    writeMs,
  };
  await operator.stop();
  await Promise.all(
    namespaces.map((name) =>
      admin.request({ method: 'DELETE', path: `/api/v1/namespaces/${name}` }),
    ),
  );
  return row;
}

const options = parse();
const cluster = options.kubeconfig ? undefined : await LocalCluster.start({});
const kubeconfig = options.kubeconfig ?? cluster?.kubeconfig ?? '';
const admin = KubeClient.fromFile(kubeconfig);
try {
  await installCrd(admin);
  for (let round = 0; round < options.rounds; round++) {
    for (const count of options.counts) {
      const row = await measure(admin, kubeconfig, count, options.writes);
      const sorted = [...row.writeMs].sort((a, b) => a - b);
      console.log(
        JSON.stringify({ ...row, writeMedianMs: sorted[Math.floor(sorted.length / 2)] ?? 0 }),
      );
    }
  }
} finally {
  await admin.close();
  await cluster?.stop();
}
