// Echo objects for tests, in the two forms they need: what a client sends to create one
// (echoManifest), and one as the API server returns it and the operator's caches hold it (echo).
import {
  API_VERSION,
  KIND,
  type Echo,
  type EchoSpec,
  type EchoStatus,
} from '../../src/echo/api.ts';

export interface EchoFields {
  /** 'web' unless given. */
  name?: string;
  replicas?: number;
  image?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** The body of a create: no namespace unless given (the request's path names it). */
export interface EchoManifest {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec: EchoSpec;
}

const spec = ({ replicas = 1, image }: EchoFields): EchoSpec => ({
  replicas,
  ...(image === undefined ? {} : { image }),
});

/** An Echo to create, `replicas` 1 unless given. */
export function echoManifest(fields: EchoFields & { namespace?: string } = {}): EchoManifest {
  const { name = 'web', namespace, labels, annotations } = fields;
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name,
      ...(namespace === undefined ? {} : { namespace }),
      ...(labels === undefined ? {} : { labels }),
      ...(annotations === undefined ? {} : { annotations }),
    },
    spec: spec(fields),
  };
}

/** An Echo to create whose spec is `spec` as given: what the API server's schema should refuse. */
export function invalidEchoManifest(name: string, spec?: unknown): object {
  const manifest = echoManifest({ name });
  return { ...manifest, spec };
}

export interface CachedEchoFields extends EchoFields {
  /** 'team' unless given. */
  namespace?: string;
  /** 'uid-1' unless given. */
  uid?: string;
  /** '7' unless given. */
  resourceVersion?: string;
  /** 1 unless given; undefined for none. */
  generation?: number | undefined;
  deletionTimestamp?: string;
  status?: EchoStatus | undefined;
}

/** An Echo as the API server returns it and the caches hold it, in namespace 'team' unless given. */
export function echo(fields: CachedEchoFields = {}): Echo {
  const {
    name = 'web',
    namespace = 'team',
    uid = 'uid-1',
    resourceVersion = '7',
    labels,
    annotations,
    deletionTimestamp,
    status,
  } = fields;
  const generation = 'generation' in fields ? fields.generation : 1;
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name,
      namespace,
      uid,
      resourceVersion,
      ...(generation === undefined ? {} : { generation }),
      ...(labels === undefined ? {} : { labels }),
      ...(annotations === undefined ? {} : { annotations }),
      ...(deletionTimestamp === undefined ? {} : { deletionTimestamp }),
    },
    spec: spec(fields),
    ...(status === undefined ? {} : { status }),
  };
}
