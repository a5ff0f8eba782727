// API Priority and Fairness set up to throttle one ServiceAccount on a test cluster: a priority
// level of its own that rejects (429, with Retry-After) what exceeds its seats, and a FlowSchema
// that puts the account's requests, and nobody else's, in it.
import type { KubeClient } from '../../src/kube/client.ts';

const FLOWCONTROL = '/apis/flowcontrol.apiserver.k8s.io/v1';

export interface Throttle {
  /** The FlowSchema's uid, which the API server names in X-Kubernetes-PF-FlowSchema-UID. */
  flowSchemaUid: string;
  remove(): Promise<void>;
}

/**
 * Throttles the ServiceAccount `namespace/account`: its priority level has `shares` of the
 * server's concurrency (600 seats split by shares among every level), borrows and lends nothing,
 * and queues nothing. With 0 shares it has no seat, and every request is rejected.
 */
export async function throttleServiceAccount(
  admin: KubeClient,
  namespace: string,
  account: string,
  shares: number,
): Promise<Throttle> {
  const name = `echo-operator-${namespace}`;
  await admin.request({
    method: 'POST',
    path: `${FLOWCONTROL}/prioritylevelconfigurations`,
    body: {
      metadata: { name },
      spec: {
        type: 'Limited',
        limited: {
          nominalConcurrencyShares: shares,
          lendablePercent: 0,
          borrowingLimitPercent: 0,
          limitResponse: { type: 'Reject' },
        },
      },
    },
  });
  // Matched before the built-in schemas that would take this ServiceAccount (service-accounts,
  // 9000; global-default, 9900), and matching nobody else.
  const schema = await admin.request<{ metadata: { uid: string } }>({
    method: 'POST',
    path: `${FLOWCONTROL}/flowschemas`,
    body: {
      metadata: { name },
      spec: {
        priorityLevelConfiguration: { name },
        matchingPrecedence: 500,
        distinguisherMethod: { type: 'ByUser' },
        rules: [
          {
            subjects: [{ kind: 'ServiceAccount', serviceAccount: { name: account, namespace } }],
            resourceRules: [
              {
                verbs: ['*'],
                apiGroups: ['*'],
                resources: ['*'],
                namespaces: ['*'],
                clusterScope: true,
              },
            ],
            nonResourceRules: [{ verbs: ['*'], nonResourceURLs: ['*'] }],
          },
        ],
      },
    },
  });
  return {
    flowSchemaUid: schema.metadata.uid,
    remove: async () => {
      await admin.request({ method: 'DELETE', path: `${FLOWCONTROL}/flowschemas/${name}` });
      await admin.request({
        method: 'DELETE',
        path: `${FLOWCONTROL}/prioritylevelconfigurations/${name}`,
      });
    },
  };
}
