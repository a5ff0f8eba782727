// `make cluster-up` / `make cluster-down` / `make cluster-status`: a long-lived local cluster for
// development, in .cluster/ at the repository root.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalCluster } from './cluster.ts';

const dir = resolve(dirname(fileURLToPath(import.meta.url)), '../../.cluster');
const log = (message: string): void => {
  console.error(`[cluster] ${message}`);
};

async function up(): Promise<void> {
  if (existsSync(join(dir, 'cluster.json'))) {
    const existing = await LocalCluster.attach(dir);
    if (existing.isRunning()) {
      log(`already running at ${existing.state.server}`);
      console.log(existing.kubeconfig);
      return;
    }
    log('a previous cluster is partly down: cleaning it up first');
    await existing.stop();
  }
  const cluster = await LocalCluster.start({ dir, detached: true, auditLog: true, log });
  log(`up: source ${join(dir, 'env')}; kubectl get nodes`);
  console.log(cluster.kubeconfig);
}

async function down(): Promise<void> {
  if (!existsSync(join(dir, 'cluster.json'))) {
    log('no cluster running');
    return;
  }
  const cluster = await LocalCluster.attach(dir);
  await cluster.stop();
  log('down: every process stopped and .cluster/ removed');
}

async function status(): Promise<void> {
  if (!existsSync(join(dir, 'cluster.json'))) {
    log('no cluster');
    process.exitCode = 1;
    return;
  }
  const cluster = await LocalCluster.attach(dir);
  const running = cluster.isRunning();
  log(
    `${running ? 'running' : 'NOT running (run make cluster-down, then make cluster-up)'} at ${cluster.state.server}`,
  );
  console.log(cluster.kubeconfig);
  if (!running) process.exitCode = 1;
}

const commands: Record<string, () => Promise<void>> = { up, down, status };
const command = commands[process.argv[2] ?? ''];
if (!command) {
  console.error('usage: node hack/cluster/cli.ts up|down|status');
  process.exit(2);
}
try {
  await command();
} catch (err) {
  console.error(`[cluster] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
