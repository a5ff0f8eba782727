// `make run CLUSTER=current`, before the operator starts: the cluster kubectl would use now
// (KUBECONFIG, else ~/.kube/config), named before anything is written to it, checked reachable,
// then given the Echo CRD by server-side apply. The Makefile starts src/main.ts after this, which
// reads the same kubeconfig the same way.
import { KubeClient } from '../../src/kube/client.ts';
import { KubeconfigError, loadConnection } from '../../src/kube/kubeconfig/kubeconfig.ts';
import { errorText } from '../../src/telemetry/logger.ts';
import { installCrd } from './crd.ts';

/** The field manager of the CRD in a user's cluster: who installed it, in `kubectl get -o yaml`. */
const FIELD_MANAGER = 'echo-operator-make-run';
const REACH_TIMEOUT_MS = 10_000;

const say = (message: string): void => {
  console.error(`[current] ${message}`);
};

function refuse(message: string): never {
  say(message);
  process.exit(1);
}

let client: KubeClient;
try {
  const connection = loadConnection();
  say(`using ${connection.source}, server ${connection.server.origin}`);
  client = new KubeClient(connection, { maxAttempts: 1, requestTimeoutMs: REACH_TIMEOUT_MS });
} catch (err) {
  if (!(err instanceof KubeconfigError)) throw err;
  refuse(`${err.message}; or use the local cluster: make run`);
}

try {
  const version = await client.request<{ gitVersion: string }>({ path: '/version' });
  say(`the API server answers: Kubernetes ${version.gitVersion}`);
} catch (err) {
  refuse(`cannot reach the API server at ${client.server.origin}: ${errorText(err)}`);
}

try {
  await installCrd(client, FIELD_MANAGER);
  say('Echo CRD installed or updated (server-side apply); starting the operator');
} catch (err) {
  refuse(`cannot install the Echo CRD: ${errorText(err)}`);
} finally {
  await client.close();
}
