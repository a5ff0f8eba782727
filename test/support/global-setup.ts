// node --test --test-global-setup: one local cluster shared by every test file of the run. Test
// files run in child processes and find it through ECHO_TEST_KUBECONFIG. Set that variable
// yourself (e.g. to `make cluster-up`'s kubeconfig) to reuse a running cluster instead.
import { LocalCluster } from '../../hack/cluster/cluster.ts';

let cluster: LocalCluster | undefined;

export async function globalSetup(): Promise<void> {
  if (process.env.ECHO_TEST_KUBECONFIG) return;
  const started = Date.now();
  cluster = await LocalCluster.start({
    auditLog: true,
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

export async function globalTeardown(): Promise<void> {
  const c = cluster;
  cluster = undefined;
  await c?.stop();
}
