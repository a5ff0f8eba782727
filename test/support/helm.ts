// Helm, built from Go modules, against the test cluster; its cache, config and data live beside
// the cluster's kubeconfig, so a run touches nothing in the home directory.
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { toolsBinDir } from '../../hack/cluster/cluster.ts';
import { clusterKubeconfig, kubectl } from './kube.ts';

export const CHART = fileURLToPath(new URL('../../charts/echo-operator', import.meta.url));

/** Where hack/tools/build.sh put the Prometheus Operator's CRDs (ServiceMonitor, PrometheusRule). */
export const MONITORING_CRDS = join(toolsBinDir(), '..', 'monitoring-crds');

/** The environment of the tests' helm: its cache, config (registry logins) and data in the cluster's directory. */
export function helmEnv(): NodeJS.ProcessEnv {
  const home = join(dirname(clusterKubeconfig()), 'helm');
  return {
    ...process.env,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
  };
}

export function helm(...args: string[]): string {
  return execFileSync(
    join(toolsBinDir(), 'helm'),
    [`--kubeconfig=${clusterKubeconfig()}`, ...args],
    { encoding: 'utf8', env: helmEnv() },
  );
}

/**
 * Hands the Echo CRD to a Helm release, as docs/install.md tells a user whose CRD Helm did not
 * create (the test kit's global setup applies it, `make run` too): Helm takes over an object only
 * when it carries the release's name and namespace and `managed-by: Helm`. A CRD kept by an
 * uninstalled release carries that release's: it is handed over the same way.
 */
export function adoptCrd(release: string, namespace: string): void {
  kubectl(
    'annotate',
    '--overwrite',
    'crd/echoes.example.com',
    `meta.helm.sh/release-name=${release}`,
    `meta.helm.sh/release-namespace=${namespace}`,
  );
  kubectl('label', '--overwrite', 'crd/echoes.example.com', 'app.kubernetes.io/managed-by=Helm');
}
