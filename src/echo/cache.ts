// What the informer caches keep of each object: only the fields the reconciler reads, so the
// caches stay small (managedFields, annotations and the rest are dropped as each object arrives).
import type { KubeObject } from '../runtime/informer.ts';
import type { Echo } from './api.ts';
import { APPLIED_HASH_ANNOTATION } from './desired.ts';
import type { ObservedDeployment } from './status.ts';

/** What the Deployment cache keeps of each Deployment: what desired.ts compares and status.ts reads. */
export type CachedDeployment = KubeObject & ObservedDeployment & { spec?: Record<string, unknown> };

/** Keeps only what the reconciler reads of a Deployment, so the cache stays small. */
export function trimDeployment(d: CachedDeployment): CachedDeployment {
  const m = d.metadata;
  const hash = m.annotations?.[APPLIED_HASH_ANNOTATION];
  const status = d.status;
  return {
    metadata: {
      name: m.name,
      ...(m.namespace ? { namespace: m.namespace } : {}),
      ...(m.uid ? { uid: m.uid } : {}),
      ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.generation !== undefined ? { generation: m.generation } : {}),
      ...(m.labels ? { labels: m.labels } : {}),
      ...(hash ? { annotations: { [APPLIED_HASH_ANNOTATION]: hash } } : {}),
      ...(m.ownerReferences ? { ownerReferences: m.ownerReferences } : {}),
    },
    ...(d.spec ? { spec: d.spec } : {}),
    ...(status
      ? {
          status: {
            ...status,
            ...(status.conditions
              ? {
                  conditions: status.conditions.map(({ type, status, reason, message }) => ({
                    type,
                    status,
                    ...(reason ? { reason } : {}),
                    ...(message ? { message } : {}),
                  })),
                }
              : {}),
          },
        }
      : {}),
  };
}

/** Keeps only what the reconciler reads of an Echo: annotations (last-applied copies) go. */
export function trimEcho(e: Echo): Echo {
  const m = e.metadata;
  return {
    apiVersion: e.apiVersion,
    kind: e.kind,
    metadata: {
      name: m.name,
      namespace: m.namespace,
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      ...(m.generation !== undefined ? { generation: m.generation } : {}),
      ...(m.labels ? { labels: m.labels } : {}),
      ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
    spec: e.spec,
    ...(e.status ? { status: e.status } : {}),
  };
}
