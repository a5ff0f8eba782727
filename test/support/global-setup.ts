// node --test --test-global-setup: one local cluster shared by every test file of the run. Test
// files run in child processes and find it through ECHO_TEST_KUBECONFIG. Set that variable
// yourself (e.g. to `make cluster-up`'s kubeconfig) to reuse a running cluster instead.
import { existsSync } from 'node:fs';
import { LocalCluster } from '../../hack/cluster/cluster.ts';
import { isRunning } from '../../hack/cluster/process.ts';
import { installCrd } from '../../hack/cluster/crd.ts';

let cluster: LocalCluster | undefined;

export async function globalSetup(): Promise<void> {
  if (process.env.ECHO_TEST_KUBECONFIG) return;
  const started = Date.now();
  cluster = await LocalCluster.start({
    auditLog: true,
    // Before the controllers: the garbage collector watches Echoes from its start.
    beforeControllers: (admin) => installCrd(admin),
    log: (m) => {
      console.error(`[cluster] ${m}`);
    },
  });
  console.error(
    `[cluster] ready in ${((Date.now() - started) / 1000).toFixed(1)}s: ${cluster.kubeconfig}`,
  );
  process.env.ECHO_TEST_KUBECONFIG = cluster.kubeconfig;
  process.env.ECHO_TEST_CLUSTER_DIR = cluster.state.dir;
  // An interrupted run still tears the cluster down and removes its directory.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      void globalTeardown().finally(() => process.exit(130));
    });
  }
}

/** Stops the cluster, then checks that it left nothing: a leak fails the run. */
export async function globalTeardown(): Promise<void> {
  const c = cluster;
  cluster = undefined;
  if (!c) return;
  const processes = [...c.state.processes];
  await c.stop();
  const leftovers = [
    ...processes
      .filter((p) => isRunning(p.pid, p.command))
      .map((p) => `process ${p.name} (pid ${String(p.pid)})`),
    ...(existsSync(c.state.dir) ? [`directory ${c.state.dir}`] : []),
  ];
  if (leftovers.length > 0) {
    console.error(`[cluster] teardown left behind: ${leftovers.join(', ')}`);
    process.exitCode = 1;
  }
}
