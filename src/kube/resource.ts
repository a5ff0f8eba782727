// A typed handle on one resource, as kube-rs's `Api<K>`: `resource(client, ECHOES).namespace(ns)`
// then get/apply/applyStatus/patch/delete. Every API path and content type the operator sends is
// built here, from the resource's type, so no caller spells `/apis/.../namespaces/...` by hand.
import { applyRequest, type KubeClient } from './client.ts';
import { isNotFound } from './errors.ts';
import type { KubeObject } from './object.ts';

/** What a handle sends its requests through: a KubeClient, or a test's stand-in. */
export type Requester = Pick<KubeClient, 'request'>;

/**
 * A resource type as the API server serves it; `T` types its objects, so that a handle or a cache
 * of it is typed without naming T again. Narrow it by annotation:
 * `const MINE: ResourceType<'deployments', MyDeployment> = DEPLOYMENTS`.
 */
export interface ResourceType<Plural extends string = string, T extends KubeObject = KubeObject> {
  /** `apps/v1`, `example.com/v1`; `v1` for the core group. */
  apiVersion: string;
  kind: string;
  /** The resource's name in URLs; also its informer's name in logs and metrics. */
  plural: Plural;
  /** False for a cluster-scoped type: its paths never name a namespace, whatever a handle is given. */
  namespaced?: boolean;
  /** Never set: carries `T` (a method, so a type narrows or widens to another object type). */
  objectType?(object: T): void;
}

/** A ConfigMap, as far as its data goes. */
export interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
  binaryData?: Record<string, string>;
}

/** The built-in types the runtime itself reads and writes, and that controllers commonly own. */
export const DEPLOYMENTS = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  plural: 'deployments',
} as const;
export const CONFIGMAPS: ResourceType<'configmaps', ConfigMap> = {
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
};
export const LEASES = {
  apiVersion: 'coordination.k8s.io/v1',
  kind: 'Lease',
  plural: 'leases',
} as const;
export const EVENTS = { apiVersion: 'events.k8s.io/v1', kind: 'Event', plural: 'events' } as const;

/** The user a token authenticates as, as TokenReview answers and SubjectAccessReview asks. */
export interface UserInfo {
  username?: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

/**
 * A question to the API server, answered in `status` and stored nowhere: created, never read,
 * listed or named (an empty name is what the API server reads when there is none).
 */
export interface Review<Spec, Status> extends KubeObject {
  spec: Spec;
  status?: Status;
}

export type TokenReview = Review<
  { token: string; audiences?: string[] },
  { authenticated?: boolean; user?: UserInfo; error?: string }
>;

export type SubjectAccessReview = Review<
  UserInfo & {
    user?: string;
    nonResourceAttributes?: { path: string; verb: string };
    resourceAttributes?: Record<string, string>;
  },
  { allowed: boolean; denied?: boolean; reason?: string; evaluationError?: string }
>;

/** Whom a bearer token belongs to (authentication.k8s.io/v1): cluster-scoped, create only. */
export const TOKEN_REVIEWS: ResourceType<'tokenreviews', TokenReview> = {
  apiVersion: 'authentication.k8s.io/v1',
  kind: 'TokenReview',
  plural: 'tokenreviews',
  namespaced: false,
};

/** Whether a user may do something (authorization.k8s.io/v1): cluster-scoped, create only. */
export const SUBJECT_ACCESS_REVIEWS: ResourceType<'subjectaccessreviews', SubjectAccessReview> = {
  apiVersion: 'authorization.k8s.io/v1',
  kind: 'SubjectAccessReview',
  plural: 'subjectaccessreviews',
  namespaced: false,
};

/** The path of the API group version that serves `type`: `/apis/apps/v1`, `/api/v1`. */
export function groupVersionPath(type: Pick<ResourceType, 'apiVersion'>): string {
  return type.apiVersion.includes('/') ? `/apis/${type.apiVersion}` : `/api/${type.apiVersion}`;
}

/**
 * The collection path of `type` in `namespace`, or across the cluster when it is undefined or
 * `type` is cluster-scoped.
 */
export function collectionPath(type: ResourceType, namespace: string | undefined): string {
  const base = groupVersionPath(type);
  return namespace && type.namespaced !== false
    ? `${base}/namespaces/${namespace}/${type.plural}`
    : `${base}/${type.plural}`;
}

export type PatchType = 'merge' | 'strategic' | 'json';

const PATCH_CONTENT_TYPES: Record<PatchType, string> = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
  json: 'application/json-patch+json',
};

export interface ApplyOptions {
  /** The field manager that owns what is applied. */
  fieldManager: string;
  /** Takes over fields other managers set (default true); without it they are a 409 Conflict. */
  force?: boolean;
  signal?: AbortSignal;
}

export interface DeleteOptions {
  /** Deletes only the object of this uid: never another created since under the same name. */
  uid?: string;
  propagationPolicy?: 'Background' | 'Foreground' | 'Orphan';
  signal?: AbortSignal;
}

/** The objects of one resource type, in one namespace or across the cluster. */
export class Resource<T extends KubeObject = KubeObject> {
  readonly type: ResourceType;
  /** Undefined: every namespace (reads), or a cluster-scoped type. */
  readonly namespaceName: string | undefined;
  private readonly client: Requester;

  constructor(client: Requester, type: ResourceType, namespace?: string) {
    this.client = client;
    this.type = type;
    this.namespaceName = namespace;
  }

  /** The same resource in `namespace`. */
  namespace(namespace: string): Resource<T> {
    return new Resource<T>(this.client, this.type, namespace);
  }

  /** The collection's path, or an object's (and its subresource's) when named. */
  path(name?: string, subresource?: string): string {
    const collection = collectionPath(this.type, this.namespaceName);
    if (name === undefined) return collection;
    return subresource ? `${collection}/${name}/${subresource}` : `${collection}/${name}`;
  }

  /** The object; an ApiError (404) if there is none. */
  get(name: string, options: { signal?: AbortSignal } = {}): Promise<T> {
    return this.client.request<T>({ path: this.path(name), ...signalOf(options) });
  }

  /** The object, or undefined if there is none. */
  async find(name: string, options: { signal?: AbortSignal } = {}): Promise<T | undefined> {
    try {
      return await this.get(name, options);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  create(object: T, options: { signal?: AbortSignal } = {}): Promise<T> {
    return this.client.request<T>({
      method: 'POST',
      path: this.path(),
      body: object,
      ...signalOf(options),
    });
  }

  /** Replaces the object (PUT): its resourceVersion, when set, is the precondition. */
  replace(object: T, options: { signal?: AbortSignal } = {}): Promise<T> {
    return this.client.request<T>({
      method: 'PUT',
      path: this.path(object.metadata.name),
      body: object,
      ...signalOf(options),
    });
  }

  /** Server-side apply of `object`, named by its metadata.name. */
  apply(object: ApplyObject<T>, options: ApplyOptions): Promise<T> {
    return this.applyAt(this.path(object.metadata.name), object, options);
  }

  /** Server-side apply of `object`'s status subresource. */
  applyStatus(object: ApplyObject<T>, options: ApplyOptions): Promise<T> {
    return this.applyAt(this.path(object.metadata.name, 'status'), object, options);
  }

  patch(
    name: string,
    type: PatchType,
    body: unknown,
    options: { signal?: AbortSignal } = {},
  ): Promise<T> {
    return this.client.request<T>({
      method: 'PATCH',
      path: this.path(name),
      contentType: PATCH_CONTENT_TYPES[type],
      body,
      ...signalOf(options),
    });
  }

  /** Deletes the object; true if it was there to delete, false if it was gone already. */
  async delete(name: string, options: DeleteOptions = {}): Promise<boolean> {
    const { uid, propagationPolicy, signal } = options;
    try {
      await this.client.request({
        method: 'DELETE',
        path: this.path(name),
        body: {
          ...(propagationPolicy ? { propagationPolicy } : {}),
          ...(uid ? { preconditions: { uid } } : {}),
        },
        ...(signal ? { signal } : {}),
      });
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  private applyAt(path: string, object: unknown, options: ApplyOptions): Promise<T> {
    const { fieldManager, ...rest } = options;
    return this.client.request<T>(applyRequest(path, object, fieldManager, rest));
  }
}

/** What an apply sends: the fields its manager owns, with the object's name at least. */
export type ApplyObject<T extends KubeObject> = Omit<Partial<T>, 'metadata'> & {
  metadata: Partial<T['metadata']> & { name: string };
};

/** A handle on the objects of `type`: `.namespace(ns)` narrows it to one namespace. */
export function resource<T extends KubeObject = KubeObject>(
  client: Requester,
  type: ResourceType<string, T>,
): Resource<T> {
  return new Resource<T>(client, type);
}

function signalOf(options: { signal?: AbortSignal }): { signal?: AbortSignal } {
  return options.signal ? { signal: options.signal } : {};
}
