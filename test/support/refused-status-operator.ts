// An operator under test whose every status write the API server refuses: each second it sets a
// condition with an empty reason on every Echo, as echo-operator-rs does, which the Echo CRD's
// schema (that of metav1.Condition: a reason of at least 1 character) answers with 422. It creates
// no Deployment. Run by the benchmark as any operator: the kubeconfig comes in $KUBECONFIG.
import { setTimeout as sleep } from 'node:timers/promises';
import { KubeClient } from '../../src/kube/client.ts';

const kubeconfig = process.env.KUBECONFIG;
if (!kubeconfig) throw new Error('KUBECONFIG is not set');
const client = KubeClient.fromFile(kubeconfig);
const status = {
  conditions: [
    {
      type: 'Ready',
      status: 'True',
      reason: '',
      message: '',
      lastTransitionTime: '2026-01-01T00:00:00Z',
    },
  ],
};

for (;;) {
  const echoes = await client.request<{
    items: { metadata: { name: string; namespace: string } }[];
  }>({
    path: '/apis/example.com/v1/echoes',
  });
  for (const { metadata } of echoes.items)
    await client
      .request({
        method: 'PATCH',
        path: `/apis/example.com/v1/namespaces/${metadata.namespace}/echoes/${metadata.name}/status`,
        contentType: 'application/merge-patch+json',
        body: { status },
      })
      .catch(() => undefined);
  await sleep(1000);
}
