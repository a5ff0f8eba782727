// Startup through a WatchList stream against the paginated list it replaces: N Echoes and N
// Deployments on a local control plane of its own, then a fresh process per run that starts one
// informer of each and exits once both are synced. Runs alternate (list, WatchList, list, ...)
// so that the machine's load falls on both alike. Measured per run: time to synced, bytes read
// from the API server (through a counting TCP proxy, TLS included) and the process's peak RSS.
//   node bench/watchlist.ts [--n 1000] [--rounds 3]
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LocalCluster } from '../hack/cluster/cluster.ts';
import { installCrd } from '../hack/cluster/crd.ts';
import type { Echo } from '../src/echo/api.ts';
import { desiredDeployment } from '../src/echo/desired.ts';
import { KubeClient } from '../src/kube/client.ts';
import { echoManifest } from '../test/support/echo.ts';
import { proxiedCluster } from '../test/support/kube.ts';

interface Run {
  mode: 'list' | 'watchlist';
  syncedMs: number;
  maxRssMiB: number;
  bytes: number;
}

async function createAll(admin: KubeClient, ns: string, n: number): Promise<void> {
  const names = Array.from({ length: n }, (_, i) => `fleet-${String(i)}`);
  for (let i = 0; i < names.length; i += 32) {
    await Promise.all(
      names.slice(i, i + 32).map(async (name) => {
        const echo = await admin.request<Echo>({
          method: 'POST',
          path: `/apis/example.com/v1/namespaces/${ns}/echoes`,
          body: echoManifest({ name, replicas: 1 }),
        });
        // Zero replicas: the objects as the operator makes them, without the pods.
        const deployment = desiredDeployment(echo);
        await admin.apply(
          `/apis/apps/v1/namespaces/${ns}/deployments/${name}`,
          { ...deployment, spec: { ...deployment.spec, replicas: 0 } },
          'bench',
        );
      }),
    );
  }
}

function runChild(kubeconfig: string, ns: string, mode: Run['mode']): Promise<Omit<Run, 'bytes'>> {
  return new Promise((resolve, reject) => {
    const script = join(import.meta.dirname, 'watchlist-child.ts');
    const p = spawn(process.execPath, [script, mode, kubeconfig, ns], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    p.on('exit', (code) => {
      if (code !== 0) reject(new Error(`child ${mode} exited ${String(code)}`));
      else resolve({ mode, ...(JSON.parse(out) as { syncedMs: number; maxRssMiB: number }) });
    });
  });
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { n: { type: 'string', default: '1000' }, rounds: { type: 'string', default: '3' } },
  });
  const n = Number(values.n);
  const cluster = await LocalCluster.start();
  const admin = KubeClient.fromFile(cluster.kubeconfig);
  const { proxy, kubeconfig } = await proxiedCluster(cluster);
  try {
    await installCrd(admin);
    const ns = 'watchlist-bench';
    await admin.request({
      method: 'POST',
      path: '/api/v1/namespaces',
      body: { metadata: { name: ns } },
    });
    await createAll(admin, ns, n);
    const runs: Run[] = [];
    for (let round = 0; round < Number(values.rounds); round++) {
      for (const mode of ['list', 'watchlist'] as const) {
        const before = proxy.bytesToClients();
        const run = await runChild(kubeconfig, ns, mode);
        runs.push({ ...run, bytes: proxy.bytesToClients() - before });
        console.error(JSON.stringify(runs.at(-1)));
      }
    }
    console.log(
      `N=${String(n)} Echoes and ${String(n)} Deployments, ${values.rounds} runs each, medians (min–max)`,
    );
    console.log('| startup | to synced | bytes read | peak RSS |\n|---|---|---|---|');
    for (const mode of ['list', 'watchlist'] as const) {
      const mine = runs.filter((r) => r.mode === mode);
      const cell = (f: (r: Run) => number, unit: string, digits: number): string => {
        const xs = mine.map(f);
        return `${median(xs).toFixed(digits)} ${unit} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
      };
      console.log(
        `| ${mode === 'list' ? 'paginated list' : 'WatchList'} | ${cell((r) => r.syncedMs / 1000, 's', 2)} | ${cell((r) => r.bytes / 2 ** 20, 'MiB', 2)} | ${cell((r) => r.maxRssMiB, 'MiB', 1)} |`,
      );
    }
  } finally {
    await proxy.close();
    await admin.close();
    await cluster.stop();
  }
}

await main();
