// Objects the tests create, and the checks they repeat.
import type { Echo } from '../../src/echo/api.ts';
import type { OwnerReference } from '../../src/echo/desired.ts';

/** A Deployment made by someone other than the operator, selecting pods by `labels`. */
export function foreignDeployment(
  name: string,
  labels: Record<string, string>,
  ownerReferences: OwnerReference[] = [],
): object {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, ownerReferences },
    spec: {
      replicas: 1,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: { containers: [{ name: 'app', image: 'registry.invalid/app:1' }] },
      },
    },
  };
}

/** Whether the Echo reports Ready with `replicas` ready pods for its current generation. */
export function isReady(echo: Echo, replicas: number): boolean {
  const ready = echo.status?.conditions?.find((c) => c.type === 'Ready');
  return (
    ready?.status === 'True' &&
    echo.status?.readyReplicas === replicas &&
    echo.status.observedGeneration === echo.metadata.generation
  );
}

/** The operator's RBAC rules for one namespace, as the chart grants them. */
export const OPERATOR_RULES = [
  { apiGroups: ['example.com'], resources: ['echoes'], verbs: ['list', 'watch'] },
  { apiGroups: ['example.com'], resources: ['echoes/status'], verbs: ['patch'] },
  { apiGroups: ['example.com'], resources: ['echoes/finalizers'], verbs: ['update'] },
  {
    apiGroups: ['apps'],
    resources: ['deployments'],
    verbs: ['get', 'list', 'watch', 'create', 'patch', 'delete'],
  },
  { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create'] },
];
