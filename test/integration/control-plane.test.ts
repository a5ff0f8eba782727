// The local control plane does what the operator's tests rely on: Deployments roll out to Ready
// pods on kwok's fake node, the garbage collector follows owner references, RBAC refuses what
// was not granted, PodSecurity admission judges pod specs, and lists take a shardSelector.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isForbidden, isNotFound } from '../../src/kube/errors.ts';
import { HASH_SPACE, matches, shardSelector } from '../../src/runtime/sharding/selector.ts';
import { eventually, serviceAccountClient } from '../support/kube.ts';
import { useNamespace, testNamespace } from '../support/namespaces.ts';

interface Deployment {
  status?: { readyReplicas?: number; replicas?: number };
}

describe('local control plane', () => {
  const { admin, ns } = useNamespace('smoke');

  it('rolls a Deployment out to 3 Ready replicas', async () => {
    await admin.request({
      method: 'POST',
      path: `/apis/apps/v1/namespaces/${ns.name}/deployments`,
      body: {
        apiVersion: 'apps/v1',
        kind: 'Deployment',
        metadata: { name: 'web' },
        spec: {
          replicas: 3,
          selector: { matchLabels: { app: 'web' } },
          template: {
            metadata: { labels: { app: 'web' } },
            spec: { containers: [{ name: 'web', image: 'registry.invalid/web:1' }] },
          },
        },
      },
    });
    const ready = await eventually('3 ready replicas', async () => {
      const d = await admin.request<Deployment>({
        path: `/apis/apps/v1/namespaces/${ns.name}/deployments/web`,
      });
      return d.status?.readyReplicas === 3 ? d.status.readyReplicas : undefined;
    });
    assert.equal(ready, 3);
  });

  it('garbage-collects a dependent when its owner is deleted', async () => {
    const owner = await admin.request<{ metadata: { uid: string } }>({
      method: 'POST',
      path: `/api/v1/namespaces/${ns.name}/configmaps`,
      body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'owner' } },
    });
    await admin.request({
      method: 'POST',
      path: `/api/v1/namespaces/${ns.name}/configmaps`,
      body: {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: {
          name: 'dependent',
          ownerReferences: [
            { apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata.uid },
          ],
        },
      },
    });
    await admin.request({
      method: 'DELETE',
      path: `/api/v1/namespaces/${ns.name}/configmaps/owner`,
    });
    await eventually('the dependent to be garbage-collected', async () => {
      try {
        await admin.request({ path: `/api/v1/namespaces/${ns.name}/configmaps/dependent` });
        return undefined;
      } catch (err) {
        if (isNotFound(err)) return true;
        throw err;
      }
    });
  });

  it('refuses a ServiceAccount what RBAC did not grant, and allows what it did', async () => {
    await admin.request({
      method: 'POST',
      path: `/api/v1/namespaces/${ns.name}/serviceaccounts`,
      body: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'reader' } },
    });
    const reader = await serviceAccountClient(admin, ns.name, 'reader');
    try {
      const refused = await reader
        .request({ path: `/api/v1/namespaces/${ns.name}/configmaps` })
        .then(
          () => undefined,
          (err: unknown) => err,
        );
      assert.ok(isForbidden(refused), `expected 403 Forbidden, got ${String(refused)}`);
      assert.equal(refused.code, 403);

      await admin.request({
        method: 'POST',
        path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns.name}/roles`,
        body: {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'Role',
          metadata: { name: 'read-configmaps' },
          rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['list'] }],
        },
      });
      await admin.request({
        method: 'POST',
        path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns.name}/rolebindings`,
        body: {
          apiVersion: 'rbac.authorization.k8s.io/v1',
          kind: 'RoleBinding',
          metadata: { name: 'reader' },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'read-configmaps' },
          subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: ns.name }],
        },
      });
      const list = await eventually('the RoleBinding to take effect', () =>
        reader.request<{ items: unknown[] }>({ path: `/api/v1/namespaces/${ns.name}/configmaps` }),
      );
      assert.ok(Array.isArray(list.items));
    } finally {
      await reader.close();
    }
  });

  it('enforces PodSecurity restricted on a labelled namespace', async (t) => {
    const restricted = await testNamespace(t, admin, 'restricted', {
      'pod-security.kubernetes.io/enforce': 'restricted',
    });
    const pod = (securityContext: object) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { generateName: 'p-' },
      spec: { containers: [{ name: 'c', image: 'registry.invalid/c:1', securityContext }] },
    });
    const rejected = await admin
      .request({
        method: 'POST',
        path: `/api/v1/namespaces/${restricted.name}/pods`,
        body: pod({}),
      })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    assert.ok(isForbidden(rejected), `expected PodSecurity to refuse, got ${String(rejected)}`);
    assert.match(rejected.message, /violates PodSecurity "restricted/);

    await admin.request({
      method: 'POST',
      path: `/api/v1/namespaces/${restricted.name}/pods`,
      body: pod({
        runAsNonRoot: true,
        runAsUser: 65534,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
        seccompProfile: { type: 'RuntimeDefault' },
      }),
    });
  });

  it('filters a list by shardSelector as FNV-1a 64 of the uids says (ShardedListAndWatch)', async (t) => {
    const version = await admin.request<{ minor: string }>({ path: '/version' });
    if (Number.parseInt(version.minor, 10) < 36) {
      t.skip(`Kubernetes 1.${version.minor} has no ShardedListAndWatch`);
      return;
    }
    for (let i = 0; i < 8; i++) {
      await admin.request({
        method: 'POST',
        path: `/api/v1/namespaces/${ns.name}/configmaps`,
        body: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: `shard-${String(i)}` } },
      });
    }
    interface ConfigMapList {
      metadata: { shardInfo?: { selector: string } };
      items: { metadata: { name: string; uid: string } }[];
    }
    const path = `/api/v1/namespaces/${ns.name}/configmaps`;
    const lowerHalf = [{ start: 0n, end: HASH_SPACE / 2n }];
    const [all, sharded] = await Promise.all([
      admin.request<ConfigMapList>({ path }),
      admin.request<ConfigMapList>({ path, query: { shardSelector: shardSelector(lowerHalf) } }),
    ]);
    assert.equal(sharded.metadata.shardInfo?.selector, shardSelector(lowerHalf));
    const names = (list: ConfigMapList['items']): string[] => list.map((c) => c.metadata.name);
    assert.deepEqual(
      names(sharded.items),
      names(all.items.filter((c) => matches(lowerHalf, c.metadata.uid))),
    );
  });
});
