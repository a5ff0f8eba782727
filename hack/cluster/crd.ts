// Installs the project's Echo CRD into a cluster and waits until the API serves it: for tests and
// the benchmark, which start clusters of their own, and `make run CLUSTER=current`.
import { setTimeout as sleep } from 'node:timers/promises';
import { echoCrd } from '../../src/echo/crd.ts';
import type { KubeClient } from '../../src/kube/client.ts';

/** Installs (or updates) the Echo CRD and waits until the API serves it. */
export async function installCrd(admin: KubeClient, fieldManager = 'echo-tests'): Promise<void> {
  await admin.apply(
    '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/echoes.example.com',
    echoCrd(),
    fieldManager,
  );
  const deadline = Date.now() + 60_000;
  for (;;) {
    const crd = await admin.request<{
      status?: { conditions?: { type: string; status: string }[] };
    }>({
      path: '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/echoes.example.com',
    });
    if (crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True'))
      return;
    if (Date.now() > deadline) throw new Error('the Echo CRD was not established within 60 s');
    await sleep(100);
  }
}
