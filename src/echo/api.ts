// The Echo API as the operator sees it: names, limits and types. The types come, through Static<>,
// from the TypeBox schemas in crd.ts, which are also the CRD's OpenAPI schema; the imports are
// type-only, so the running operator never loads TypeBox.
import type { Static } from 'typebox';
import type {
  Condition as ConditionSchema,
  EchoSpec as EchoSpecSchema,
  EchoStatus as EchoStatusSchema,
} from './crd.ts';

export const GROUP = 'example.com';
export const VERSION = 'v1';
export const KIND = 'Echo';
export const PLURAL = 'echoes';
export const API_VERSION = `${GROUP}/${VERSION}`;
/** The Echo resource, for the builder and the typed resource handle. */
export const ECHOES = { apiVersion: API_VERSION, kind: KIND, plural: PLURAL } as const;

/** Upper bound on spec.replicas: a guard against typos (10000 for 10), not a scaling limit. */
export const MAX_REPLICAS = 1000;
export const DEFAULT_IMAGE = 'inanimate/echo-server';

export type EchoSpec = Static<typeof EchoSpecSchema>;
export type EchoStatus = Static<typeof EchoStatusSchema>;
export type Condition = Static<typeof ConditionSchema>;

export interface ObjectMeta {
  name: string;
  namespace: string;
  uid: string;
  resourceVersion: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  deletionTimestamp?: string;
  creationTimestamp?: string;
}

export interface Echo {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMeta;
  spec: EchoSpec;
  status?: EchoStatus;
}
