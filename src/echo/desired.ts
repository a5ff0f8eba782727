// Echo → the Deployment it should have. Pure: no I/O, so every rule here is unit-tested.
import { createHash } from 'node:crypto';
import { API_VERSION, DEFAULT_IMAGE, KIND, type Echo } from './api.ts';
import { SLOT_LABEL, slotOf } from '../runtime/sharding/buckets.ts';

export const FIELD_MANAGER = 'echoes.example.com';
export const MANAGED_BY = 'echo-operator';
/** Label selecting every Deployment the operator manages: the scope of its Deployment cache. */
export const MANAGED_BY_SELECTOR = `app.kubernetes.io/managed-by=${MANAGED_BY}`;
/** Hash of the last applied desired state: a changed Echo is seen even where it only removes a field. */
export const APPLIED_HASH_ANNOTATION = 'echoes.example.com/applied-hash';
export const CONTAINER_PORT = 8080;
/** The pods' user and group when the image names none: "nobody", so `runAsNonRoot` holds. */
export const POD_USER = 65534;

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

/** The Deployment fields the operator sets, in server-side apply form. */
export interface DesiredDeployment {
  apiVersion: 'apps/v1';
  kind: 'Deployment';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    annotations: Record<string, string>;
    ownerReferences: OwnerReference[];
  };
  spec: {
    replicas: number;
    selector: { matchLabels: Record<string, string> };
    template: {
      metadata: { labels: Record<string, string> };
      spec: {
        securityContext: {
          runAsNonRoot: true;
          runAsUser: number;
          runAsGroup: number;
          seccompProfile: { type: 'RuntimeDefault' };
        };
        containers: {
          name: string;
          image: string;
          ports: { name: string; containerPort: number }[];
          securityContext: { allowPrivilegeEscalation: false; capabilities: { drop: ['ALL'] } };
        }[];
      };
    };
  };
}

const LABEL_VALUE_MAX = 63;

/**
 * A label value that stands for the Echo's name: the name itself when it fits (63 characters),
 * otherwise a prefix and a hash of the whole name, so names of any valid length stay distinct.
 */
export function instanceLabel(name: string): string {
  if (name.length <= LABEL_VALUE_MAX) return name;
  const hash = createHash('sha256').update(name).digest('hex').slice(0, 10);
  return `${name.slice(0, LABEL_VALUE_MAX - hash.length - 1)}-${hash}`;
}

/**
 * Labels selecting an Echo's pods. Only the name goes in: the selector of a Deployment is
 * immutable, so user labels here would force a delete and recreate on every label edit.
 */
export function podSelector(echo: Echo): Record<string, string> {
  return {
    'app.kubernetes.io/name': 'echo',
    'app.kubernetes.io/instance': instanceLabel(echo.metadata.name),
  };
}

/** The same selector as a string, for status.selector (what `kubectl scale` and an HPA read). */
export function selectorString(echo: Echo): string {
  return Object.entries(podSelector(echo))
    .map(([k, v]) => `${k}=${v}`)
    .join(',');
}

export function ownerReference(echo: Echo): OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: echo.metadata.name,
    uid: echo.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/**
 * The applied-hash of each Echo object seen: a cached Echo is replaced, never changed, so an object
 * seen before has the same hash, and most reconciles (a Deployment's status moved) skip the
 * serializing and hashing. Only the hash is kept: the Deployment itself is rebuilt on each call, a
 * few dozen short-lived objects, rather than held for as long as the Echo is cached
 * (docs/benchmark.md, "Values held once for many objects").
 */
const hashByEcho = new WeakMap<Echo, string>();

/** The desired Deployment of `echo`. */
export function desiredDeployment(echo: Echo): DesiredDeployment {
  const body = desiredBody(echo);
  let hash = hashByEcho.get(echo);
  if (hash === undefined) {
    hash = createHash('sha256').update(JSON.stringify(body)).digest('hex').slice(0, 16);
    hashByEcho.set(echo, hash);
  }
  return {
    ...body,
    metadata: { ...body.metadata, annotations: { [APPLIED_HASH_ANNOTATION]: hash } },
  };
}

/** The desired Deployment without its applied-hash annotation: what the hash is taken of. */
function desiredBody(echo: Echo): Omit<DesiredDeployment, 'metadata'> & {
  metadata: Omit<DesiredDeployment['metadata'], 'annotations'>;
} {
  const selector = podSelector(echo);
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: echo.metadata.name,
      namespace: echo.metadata.namespace,
      // The operator's labels win over a user's label of the same key.
      labels: {
        ...echo.metadata.labels,
        ...selector,
        'app.kubernetes.io/managed-by': MANAGED_BY,
        // Sharded replicas cache only their buckets' Deployments, chosen by this label.
        ...(echo.metadata.uid ? { [SLOT_LABEL]: slotOf(echo.metadata.uid) } : {}),
      },
      ownerReferences: [ownerReference(echo)],
    },
    spec: {
      replicas: echo.spec.replicas,
      selector: { matchLabels: selector },
      template: {
        metadata: { labels: selector },
        // PodSecurity `restricted`, as the chart's own pod: the Echo runs in a namespace of any
        // level. The default image names no user, so one is set for `runAsNonRoot` to hold.
        spec: {
          securityContext: {
            runAsNonRoot: true,
            runAsUser: POD_USER,
            runAsGroup: POD_USER,
            seccompProfile: { type: 'RuntimeDefault' },
          },
          containers: [
            {
              name: 'echo',
              image: echo.spec.image ?? DEFAULT_IMAGE,
              ports: [{ name: 'http', containerPort: CONTAINER_PORT }],
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
            },
          ],
        },
      },
    },
  };
}

type MergeKey = (item: Record<string, unknown>) => string;

const byName: MergeKey = (item) => `name=${String(item.name)}`;
// The API server defaults a port's protocol to TCP, and the key is taken after defaulting.
const byPort: MergeKey = (item) => {
  const protocol = typeof item.protocol === 'string' ? item.protocol : 'TCP';
  return `containerPort=${String(item.containerPort)},protocol=${protocol}`;
};

/**
 * The lists the desired Deployment sets that server-side apply merges item by item, by their path
 * (list positions left out) and merge key, as apps/v1 declares them (`listType=map`). An item is
 * matched by key wherever it sits, and items others added are theirs. Any other list is atomic:
 * compared whole.
 */
const MERGE_KEYS: Readonly<Record<string, MergeKey>> = {
  'metadata.ownerReferences': (item) => `uid=${String(item.uid)}`,
  'spec.template.spec.containers': byName,
  'spec.template.spec.initContainers': byName,
  'spec.template.spec.volumes': byName,
  'spec.template.spec.containers.env': byName,
  'spec.template.spec.initContainers.env': byName,
  'spec.template.spec.containers.ports': byPort,
  'spec.template.spec.initContainers.ports': byPort,
};

const isRecord = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * Where `actual` fails to hold what `desired` says, as a path
 * (`spec.template.spec.containers[name=echo].image`), or undefined when it holds all of it, judged
 * as server-side apply merges: each object key of `desired` present with a matching value, items
 * of keyed lists (MERGE_KEYS) matched by key, other lists equal element by element. Keys and list
 * items only in `actual` (server defaults, fields others own) do not count.
 */
export function firstDifference(desired: unknown, actual: unknown): string | undefined {
  const diff = difference(desired, actual, '');
  return diff === undefined ? undefined : diff.join('');
}

/**
 * Where `actual` differs, as the path's parts below here (`.image`, `[name=echo]`), built only
 * once a difference is found: the common case, no difference, builds no string but `field`, the
 * path without list keys or positions that MERGE_KEYS are looked up by.
 */
function difference(desired: unknown, actual: unknown, field: string): string[] | undefined {
  if (Array.isArray(desired)) {
    if (!Array.isArray(actual)) return [];
    const key = MERGE_KEYS[field];
    return key
      ? keyedListDifference(desired, actual, key, field)
      : atomicListDifference(desired, actual, field);
  }
  if (isRecord(desired)) {
    if (!isRecord(actual)) return [];
    for (const k in desired) {
      const diff = difference(desired[k], actual[k], field ? `${field}.${k}` : k);
      if (diff !== undefined) return [field ? `.${k}` : k, ...diff];
    }
    return undefined;
  }
  return desired === actual ? undefined : [];
}

function keyedListDifference(
  desired: unknown[],
  actual: unknown[],
  key: MergeKey,
  field: string,
): string[] | undefined {
  const byKey = new Map<string, unknown>();
  for (const item of actual) {
    const k = isRecord(item) ? key(item) : undefined;
    if (k !== undefined && !byKey.has(k)) byKey.set(k, item);
  }
  for (const item of desired) {
    if (!isRecord(item)) return [];
    const k = key(item);
    const diff = difference(item, byKey.get(k), field);
    if (diff !== undefined) return [`[${k}]`, ...diff];
  }
  return undefined;
}

function atomicListDifference(
  desired: unknown[],
  actual: unknown[],
  field: string,
): string[] | undefined {
  if (desired.length !== actual.length) return [];
  for (const [i, d] of desired.entries()) {
    const diff = difference(d, actual[i], field);
    if (diff !== undefined) return [`[${String(i)}]`, ...diff];
  }
  return undefined;
}

/**
 * Why applying `desired` would change the Deployment (the path of the first difference, or
 * `missing`), or undefined when it would not: the only case where the operator writes.
 */
export function deploymentDrift(desired: DesiredDeployment, actual: unknown): string | undefined {
  if (actual === undefined) return 'missing';
  // apiVersion and kind identify the request; list items do not even carry them.
  const { apiVersion: _apiVersion, kind: _kind, ...fields } = desired;
  return firstDifference(fields, actual);
}
