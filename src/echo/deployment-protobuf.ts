// The Deployment cache's watch in protobuf: each event decoded into only the fields projection.ts keeps,
// in the form JSON would give them, then trimmed as a JSON event is. The rest (managedFields, the
// server's defaults of the pod template, timestamps) is skipped unread. Field numbers are those of
// k8s.io/api apps/v1, core/v1 and apimachinery meta/v1 `generated.proto`.
import {
  decodeMessage,
  ProtobufError,
  ProtoReader,
  type Schema,
} from '../kube/protobuf/protobuf.ts';
import { objectKey } from '../kube/object.ts';
import type { CachedDeployment } from './projection.ts';
import { APPLIED_HASH_ANNOTATION } from './desired.ts';

const LABELS = { json: 'labels', type: 'map' } as const;

const OWNER_REFERENCE: Schema = {
  5: { json: 'apiVersion', type: 'string' },
  1: { json: 'kind', type: 'string' },
  3: { json: 'name', type: 'string' },
  4: { json: 'uid', type: 'string' },
  6: { json: 'controller', type: 'bool' },
  7: { json: 'blockOwnerDeletion', type: 'bool' },
};

const OBJECT_META: Schema = {
  1: { json: 'name', type: 'string', omitEmpty: true },
  3: { json: 'namespace', type: 'string', omitEmpty: true },
  5: { json: 'uid', type: 'string', omitEmpty: true },
  6: { json: 'resourceVersion', type: 'string', omitEmpty: true },
  7: { json: 'generation', type: 'int', omitEmpty: true },
  // A meta/v1 Time: seconds since the epoch (its nanos are always 0 in a timestamp of ObjectMeta).
  9: { json: 'deletionTimestamp', type: { 1: { json: 'seconds', type: 'int' } } },
  11: LABELS,
  12: { json: 'annotations', type: 'map', keep: (key) => key === APPLIED_HASH_ANNOTATION },
  13: { json: 'ownerReferences', type: OWNER_REFERENCE, repeated: true },
};

/** Kept whole, as projection.ts keeps a container's ports: every field of core/v1 ContainerPort. */
const CONTAINER_PORT: Schema = {
  1: { json: 'name', type: 'string', omitEmpty: true },
  2: { json: 'hostPort', type: 'int', omitEmpty: true },
  3: { json: 'containerPort', type: 'int' },
  4: { json: 'protocol', type: 'string', omitEmpty: true },
  5: { json: 'hostIP', type: 'string', omitEmpty: true },
};

const CONTAINER: Schema = {
  1: { json: 'name', type: 'string' },
  2: { json: 'image', type: 'string', omitEmpty: true },
  6: { json: 'ports', type: CONTAINER_PORT, repeated: true },
  15: {
    json: 'securityContext',
    type: {
      1: { json: 'capabilities', type: { 2: { json: 'drop', type: 'string', repeated: true } } },
      7: { json: 'allowPrivilegeEscalation', type: 'bool' },
    },
  },
};

const POD_SECURITY_CONTEXT: Schema = {
  2: { json: 'runAsUser', type: 'int' },
  3: { json: 'runAsNonRoot', type: 'bool' },
  6: { json: 'runAsGroup', type: 'int' },
  10: { json: 'seccompProfile', type: { 1: { json: 'type', type: 'string' } } },
};

/** The spec fields drift is judged on (projection.ts SPEC_SHAPE; a unit test holds the two together). */
export const DEPLOYMENT_SPEC: Schema = {
  1: { json: 'replicas', type: 'int' },
  2: { json: 'selector', type: { 1: { json: 'matchLabels', type: 'map' } } },
  3: {
    json: 'template',
    type: {
      1: { json: 'metadata', type: { 11: LABELS } },
      2: {
        json: 'spec',
        type: {
          2: { json: 'containers', type: CONTAINER, repeated: true },
          14: { json: 'securityContext', type: POD_SECURITY_CONTEXT },
        },
      },
    },
  },
};

/** Every field of apps/v1 DeploymentStatus (the cache keeps the status whole) but timestamps. */
const DEPLOYMENT_STATUS: Schema = {
  1: { json: 'observedGeneration', type: 'int', omitEmpty: true },
  2: { json: 'replicas', type: 'int', omitEmpty: true },
  3: { json: 'updatedReplicas', type: 'int', omitEmpty: true },
  7: { json: 'readyReplicas', type: 'int', omitEmpty: true },
  4: { json: 'availableReplicas', type: 'int', omitEmpty: true },
  5: { json: 'unavailableReplicas', type: 'int', omitEmpty: true },
  9: { json: 'terminatingReplicas', type: 'int' },
  6: {
    json: 'conditions',
    repeated: true,
    type: {
      1: { json: 'type', type: 'string' },
      2: { json: 'status', type: 'string' },
      4: { json: 'reason', type: 'string', omitEmpty: true },
      5: { json: 'message', type: 'string', omitEmpty: true },
    },
  },
  8: { json: 'collisionCount', type: 'int' },
};

/** A timestamp as JSON gives it: `2026-12-07T13:00:00Z`. */
function rfc3339(seconds: number): string {
  const time = new Date(seconds * 1000);
  if (Number.isNaN(time.getTime()))
    throw new ProtobufError(`timestamp out of range: ${String(seconds)} s`);
  return time.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A Deployment from its protobuf bytes, as much of it as `trimDeployment` keeps. The spec is left
 * out when the cached Deployment has the same uid and generation: the trim takes it from there.
 */
export function decodeDeployment(
  raw: Buffer,
  cached: (key: string) => CachedDeployment | undefined,
): CachedDeployment {
  const reader = new ProtoReader(raw);
  const decoded: Record<string, unknown> = {};
  let metadata: CachedDeployment['metadata'] = { name: '' };
  while (reader.next()) {
    if (reader.field === 1) {
      metadata = decodeMessage(reader.message(), OBJECT_META) as unknown as typeof metadata;
      const deleted = metadata.deletionTimestamp as { seconds?: number } | undefined;
      if (deleted) metadata.deletionTimestamp = rfc3339(deleted.seconds ?? 0);
      decoded.metadata = metadata;
    } else if (reader.field === 2) {
      const known = cached(objectKey({ metadata }));
      const sameSpec =
        metadata.generation !== undefined &&
        known?.metadata.generation === metadata.generation &&
        known.metadata.uid === metadata.uid;
      if (sameSpec) reader.skip();
      else decoded.spec = decodeMessage(reader.message(), DEPLOYMENT_SPEC);
    } else if (reader.field === 3) {
      decoded.status = decodeMessage(reader.message(), DEPLOYMENT_STATUS);
    } else reader.skip();
  }
  return decoded as unknown as CachedDeployment;
}
