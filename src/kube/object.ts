// What every Kubernetes object has, as far as this operator reads it, and the events a watch
// brings of them: the object model shared by the client, the caches and the controllers.

export interface ObjectMetadata {
  name: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: {
    apiVersion: string;
    kind: string;
    name: string;
    uid: string;
    controller?: boolean;
  }[];
  deletionTimestamp?: string;
  creationTimestamp?: string;
}

export interface KubeObject {
  /** Absent on objects a cache trimmed; present on what is written. */
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMetadata;
}

/** The key an object is cached and queued under: `namespace/name`, or `name` if cluster-scoped. */
export function objectKey(object: KubeObject): string {
  const { namespace, name } = object.metadata;
  return namespace ? `${namespace}/${name}` : name;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  /** The object; a metav1.Status for ERROR; only metadata.resourceVersion for BOOKMARK. */
  object: T;
}
