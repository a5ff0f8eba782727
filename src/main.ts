// The operator's entry point. The operator itself arrives with issue 3; for now this proves the
// path from `make run` to a live cluster: load the kubeconfig, reach the API server, report.
import { KubeClient } from './kube/client.ts';

const client = await KubeClient.fromDefault();
try {
  const version = await client.request<{ gitVersion: string }>({ path: '/version' });
  console.log(`connected to ${client.server.origin} (Kubernetes ${version.gitVersion})`);
  console.log('the Echo operator is not written yet (issue 3): nothing to run yet');
} catch (err) {
  console.error(`cannot reach the cluster: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  await client.close();
}
