// The requests the operator tests repeat, against one test namespace as admin: create and read
// Echoes and Deployments, merge-patch, and wait for an Echo to be Ready.
import type { Echo } from '../../src/echo/api.ts';
import type { KubeClient } from '../../src/kube/client.ts';
import { eventually } from './kube.ts';
import { isReady } from './fixtures.ts';
import { echoManifest } from './echo.ts';

/** The fields of a Deployment the tests read. */
export interface Deployment {
  metadata: {
    name: string;
    uid: string;
    labels?: Record<string, string>;
    ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[];
  };
  spec: { replicas: number; selector: { matchLabels: Record<string, string> } };
  status?: { readyReplicas?: number };
}

export function namespaceApi(admin: KubeClient, namespace: string) {
  const echoes = (): string => `/apis/example.com/v1/namespaces/${namespace}/echoes`;
  const deployments = (): string => `/apis/apps/v1/namespaces/${namespace}/deployments`;
  const getEcho = (name: string): Promise<Echo> =>
    admin.request<Echo>({ path: `${echoes()}/${name}` });
  return {
    echoes,
    deployments,
    createEcho: (name: string, replicas: number, labels: Record<string, string> = {}) =>
      admin.request<Echo>({
        method: 'POST',
        path: echoes(),
        body: echoManifest({ name, replicas, labels }),
      }),
    getEcho,
    getDeployment: (name: string): Promise<Deployment> =>
      admin.request<Deployment>({ path: `${deployments()}/${name}` }),
    patch: <T = unknown>(path: string, body: unknown): Promise<T> =>
      admin.request<T>({
        method: 'PATCH',
        path,
        body,
        contentType: 'application/merge-patch+json',
      }),
    /** Waits until the Echo says Ready with `replicas` ready pods, for its current generation. */
    readyEcho: (name: string, replicas: number): Promise<Echo> =>
      eventually(`Echo ${name} Ready with ${String(replicas)} replicas`, async () => {
        const echo = await getEcho(name);
        return isReady(echo, replicas) ? echo : undefined;
      }),
  };
}
