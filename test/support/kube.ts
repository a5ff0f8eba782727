// Helpers for tests that talk to the shared local cluster: clients as admin or as a
// ServiceAccount (so a test holds exactly the RBAC it granted), namespaces, and polling.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse } from 'yaml';
import {
  kubernetesBinDir,
  writeKubeconfig,
  type LocalCluster,
} from '../../hack/cluster/cluster.ts';
import { KubeClient } from '../../src/kube/client.ts';
import { isConflict } from '../../src/kube/errors.ts';
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts';

export function clusterKubeconfig(): string {
  const path = process.env.ECHO_TEST_KUBECONFIG;
  if (!path) {
    throw new Error(
      'ECHO_TEST_KUBECONFIG is not set: run integration tests with "make test-integration"',
    );
  }
  return path;
}

export function adminClient(): KubeClient {
  return KubeClient.fromFile(clusterKubeconfig());
}

/** A token of the ServiceAccount `namespace/name`, from the TokenRequest API (an hour long). */
export async function serviceAccountToken(
  admin: KubeClient,
  namespace: string,
  name: string,
): Promise<string> {
  const review = await admin.request<{ status: { token: string } }>({
    method: 'POST',
    path: `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
    body: {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 3600 },
    },
  });
  return review.status.token;
}

/** A kubeconfig that authenticates as a ServiceAccount with a token from the TokenRequest API. */
export async function serviceAccountKubeconfig(
  admin: KubeClient,
  namespace: string,
  name: string,
  adminKubeconfig = clusterKubeconfig(),
): Promise<string> {
  const token = await serviceAccountToken(admin, namespace, name);
  const { server, caFile } = clusterAddress(adminKubeconfig);
  // Beside the cluster's own kubeconfig, so it goes when the cluster's directory goes.
  const path = join(
    dirname(adminKubeconfig),
    `sa-${namespace}-${name}-${randomBytes(3).toString('hex')}.kubeconfig`,
  );
  await writeKubeconfig(path, server, caFile, { token });
  return path;
}

/** The server and CA file of a test cluster, for kubeconfigs of other identities. */
export function clusterAddress(adminKubeconfig = clusterKubeconfig()): {
  server: string;
  caFile: string;
} {
  // The test clusters' kubeconfigs hold one cluster, whose CA is a file.
  const config = parse(readFileSync(adminKubeconfig, 'utf8')) as {
    clusters: { cluster: { server: string; 'certificate-authority'?: string } }[];
  };
  const cluster = config.clusters[0]?.cluster;
  const caFile = cluster?.['certificate-authority'];
  if (!cluster || !caFile)
    throw new Error('the test kubeconfig names no certificate-authority file');
  return { server: cluster.server, caFile };
}

export interface PolicyRule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
}

/**
 * Grants `rules` in `namespace` to the ServiceAccount `account` ("namespace/name"), creating the
 * ServiceAccount if it is in `namespace` and does not exist yet.
 */
export async function grantRole(
  admin: KubeClient,
  namespace: string,
  account: string,
  rules: PolicyRule[],
): Promise<void> {
  const [saNamespace = '', saName = ''] = account.split('/');
  if (saNamespace === namespace) {
    await admin
      .request({
        method: 'POST',
        path: `/api/v1/namespaces/${namespace}/serviceaccounts`,
        body: { metadata: { name: saName } },
      })
      .catch((err: unknown) => {
        if (!isConflict(err)) throw err;
      });
  }
  const rbac = `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}`;
  await admin.request({
    method: 'POST',
    path: `${rbac}/roles`,
    body: { metadata: { name: saName }, rules },
  });
  await admin.request({
    method: 'POST',
    path: `${rbac}/rolebindings`,
    body: {
      metadata: { name: saName },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: saName },
      subjects: [{ kind: 'ServiceAccount', name: saName, namespace: saNamespace }],
    },
  });
}

export async function serviceAccountClient(
  admin: KubeClient,
  namespace: string,
  name: string,
): Promise<KubeClient> {
  return KubeClient.fromFile(await serviceAccountKubeconfig(admin, namespace, name));
}

/** A namespace of the shared cluster a test made: `remove` deletes it. */
export interface TestNamespace {
  name: string;
  remove: () => Promise<void>;
}

/** `prefix` with a random suffix: a namespace name no other test uses. */
export const namespaceName = (prefix: string): string =>
  `${prefix}-${randomBytes(3).toString('hex')}`;

/** Creates a namespace with a random suffix (or named `name`); the returned function deletes it. */
export async function createNamespace(
  admin: KubeClient,
  prefix: string,
  labels: Record<string, string> = {},
  name = namespaceName(prefix),
): Promise<TestNamespace> {
  await admin.request({
    method: 'POST',
    path: '/api/v1/namespaces',
    body: { apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } },
  });
  return {
    name,
    remove: async () => {
      await admin.request({ method: 'DELETE', path: `/api/v1/namespaces/${name}` });
    },
  };
}

/**
 * Whether the API server serves WatchList (a watch that sends the initial state): its `WatchList`
 * feature gate, as its /metrics reports it. Off by default in 1.33 (and before 1.32), where the
 * informers list in pages instead.
 */
export async function servesWatchList(admin: KubeClient): Promise<boolean> {
  const metrics = await admin.text({ path: '/metrics' });
  const gate = /^kubernetes_feature_enabled\{name="WatchList",[^}]*\} ([01])$/m.exec(metrics);
  if (!gate) throw new Error('the API server reports no WatchList feature gate in /metrics');
  return gate[1] === '1';
}

/** Polls `probe` until it returns a value other than undefined, or fails with `what` after the timeout. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 60_000,
  intervalMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? `; last error: ${lastError.message}` : '';
      throw new Error(`timed out after ${String(timeoutMs / 1000)}s waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}

/** Runs the project's kubectl against the test cluster, with a discovery cache of its own. */
export function kubectl(...args: string[]): string {
  return kubectlWithInput(undefined, ...args);
}

/** kubectl with `input` on its standard input (for `-f -`). */
export function kubectlWithInput(input: string | undefined, ...args: string[]): string {
  const kubeconfig = clusterKubeconfig();
  return execFileSync(
    // The kubectl of the cluster's own release (ECHO_KUBERNETES_VERSION: the compatibility suite).
    join(kubernetesBinDir(process.env.ECHO_KUBERNETES_VERSION), 'kubectl'),
    [
      `--kubeconfig=${kubeconfig}`,
      `--cache-dir=${join(dirname(kubeconfig), 'kube-cache')}`,
      ...args,
    ],
    { encoding: 'utf8', ...(input === undefined ? {} : { input }) },
  );
}

/** A proxy in front of `cluster`'s API server, and an admin kubeconfig that goes through it. */
export async function proxiedCluster(
  cluster: LocalCluster,
): Promise<{ proxy: FaultProxy; kubeconfig: string }> {
  const proxy = await startFaultProxy(Number(new URL(cluster.state.server).port));
  const kubeconfig = join(cluster.state.dir, `proxy-${String(proxy.port)}.kubeconfig`);
  await writeKubeconfig(
    kubeconfig,
    `https://127.0.0.1:${String(proxy.port)}`,
    cluster.caCert,
    cluster.adminCert,
  );
  return { proxy, kubeconfig };
}
