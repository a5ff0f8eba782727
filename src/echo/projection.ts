// What the informer caches keep of each object: only the fields the reconciler reads, so the
// caches stay small (managedFields, annotations, server defaults and the rest are dropped as each
// object arrives).
import type { KubeObject } from '../kube/object.ts';
import { StringPool } from '../runtime/cache/string-pool.ts';
import { API_VERSION, KIND, type Echo } from './api.ts';
import { APPLIED_HASH_ANNOTATION, desiredDeployment } from './desired.ts';
import { STALLED_REASONS, type ObservedDeployment } from './status.ts';

/** What the Deployment cache keeps of each Deployment: what desired.ts compares and status.ts reads. */
export type CachedDeployment = KubeObject & ObservedDeployment & { spec?: Record<string, unknown> };

type Condition = NonNullable<NonNullable<ObservedDeployment['status']>['conditions']>[number];

/**
 * The shape of the spec the operator sets: every Echo's desired Deployment has the same keys,
 * only values differ. Drift is judged on these keys alone (desired.ts), so the server's defaults
 * (the pod's DNS policy, scheduler, termination message path, strategy...) need not be cached.
 */
const SPEC_SHAPE = desiredDeployment({
  apiVersion: API_VERSION,
  kind: KIND,
  metadata: { name: 'shape', namespace: 'shape', uid: 'shape', resourceVersion: '1' },
  spec: { replicas: 1 },
}).spec;

/** Keyed lists kept whole: their merge key reads fields the desired items leave to defaults. */
const KEPT_WHOLE = new Set([
  'template.spec.containers.ports',
  'template.spec.initContainers.ports',
]);

/** `actual` cut down to the keys of `shape`; list items are cut down to the shape's first item. */
function project(shape: unknown, actual: unknown, field: string): unknown {
  if (KEPT_WHOLE.has(field)) return actual;
  if (Array.isArray(shape) && Array.isArray(actual)) {
    const item: unknown = shape[0];
    return item === undefined ? actual : actual.map((a: unknown) => project(item, a, field));
  }
  if (!isRecord(shape) || !isRecord(actual)) return actual;
  const kept: Record<string, unknown> = {};
  for (const [key, sub] of Object.entries(shape)) {
    if (key in actual) kept[key] = project(sub, actual[key], field ? `${field}.${key}` : key);
  }
  return kept;
}

/**
 * Shared by both caches: an Echo and its Deployment repeat each other's labels, and the Echo's
 * name is the Deployment's, its owner reference's and its instance label's. Uids and
 * resourceVersions are unique to each object and stay out of it.
 */
const strings = new StringPool();

const isRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/** The conditions status.ts reads, with their words only where it reports them. */
function keptConditions(conditions: Condition[]): Condition[] {
  return conditions.map(({ type, status, reason, message }) => {
    const reported =
      type === 'ReplicaFailure' ||
      (type === 'Progressing' && reason !== undefined && STALLED_REASONS.has(reason));
    return {
      type,
      status,
      ...(reason ? { reason } : {}),
      ...(message && reported ? { message } : {}),
    };
  });
}

/**
 * Keeps only what the reconciler reads of a Deployment, so the cache stays small. The API server
 * moves `generation` with every change of the spec, so a Deployment of the same uid and generation
 * as the cached one has the same spec: the cached one's, already trimmed, is kept (most events are
 * of the status, and trimming the spec was most of the cost of each).
 */
export function trimDeployment(d: CachedDeployment, cached?: CachedDeployment): CachedDeployment {
  const m = d.metadata;
  const sameSpec =
    m.generation !== undefined &&
    cached?.metadata.generation === m.generation &&
    cached.metadata.uid === m.uid;
  const spec = sameSpec ? cached.spec : d.spec && trimSpec(d.spec);
  const hash = m.annotations?.[APPLIED_HASH_ANNOTATION];
  const status = d.status;
  return {
    metadata: {
      name: strings.intern(m.name),
      ...(m.namespace ? { namespace: strings.intern(m.namespace) } : {}),
      ...(m.uid ? { uid: m.uid } : {}),
      ...(m.resourceVersion ? { resourceVersion: m.resourceVersion } : {}),
      ...(m.generation !== undefined ? { generation: m.generation } : {}),
      ...(m.labels ? { labels: strings.internAll(m.labels) } : {}),
      ...(hash ? { annotations: { [APPLIED_HASH_ANNOTATION]: strings.intern(hash) } } : {}),
      ...(m.ownerReferences ? { ownerReferences: m.ownerReferences.map(internOwner) } : {}),
      // A Deployment being deleted (foreground: until its pods are gone) must not look alive.
      ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
    ...(spec ? { spec } : {}),
    ...(status
      ? {
          status: strings.internAll({
            ...status,
            ...(status.conditions
              ? { conditions: strings.share(strings.internAll(keptConditions(status.conditions))) }
              : {}),
          }),
        }
      : {}),
  };
}

/**
 * The spec fields drift is judged on. The pod template's spec is the same in every Deployment of
 * the same image, so the cache holds it once (as it holds a settled Deployment's conditions once).
 */
function trimSpec(spec: Record<string, unknown>): Record<string, unknown> {
  const kept = strings.internAll(project(SPEC_SHAPE, spec, '') as Record<string, unknown>);
  const template = kept.template;
  if (isRecord(template) && isRecord(template.spec)) template.spec = strings.share(template.spec);
  return kept;
}

type OwnerReference = NonNullable<KubeObject['metadata']['ownerReferences']>[number];

function internOwner(ref: OwnerReference): OwnerReference {
  return {
    ...ref,
    apiVersion: strings.intern(ref.apiVersion),
    kind: strings.intern(ref.kind),
    name: strings.intern(ref.name),
  };
}

/** Keeps only what the reconciler reads of an Echo: annotations (last-applied copies) go. */
export function trimEcho(e: Echo): Echo {
  const m = e.metadata;
  return {
    apiVersion: strings.intern(e.apiVersion),
    kind: strings.intern(e.kind),
    metadata: {
      name: strings.intern(m.name),
      namespace: strings.intern(m.namespace),
      uid: m.uid,
      resourceVersion: m.resourceVersion,
      ...(m.generation !== undefined ? { generation: m.generation } : {}),
      ...(m.labels ? { labels: strings.internAll(m.labels) } : {}),
      ...(m.deletionTimestamp ? { deletionTimestamp: m.deletionTimestamp } : {}),
    },
    spec: e.spec,
    ...(e.status ? { status: strings.internAll(e.status) } : {}),
  };
}
