// The kubeconfig fields the operator reads, entry by entry, checked before use. A field it does not
// support is refused by name, never skipped: a kubeconfig that asks for something the client
// would not do (an auth provider, an unknown option) must not half-work. Types are checked too,
// as client-go's strict decoding does (`insecure-skip-tls-verify: "yes"` is an error, not false).
import { KubeconfigError } from '../errors.ts';

type FieldType = 'string' | 'boolean' | 'strings' | 'string-lists' | 'mapping' | 'list';
type Fields = Record<string, FieldType>;

export interface Cluster {
  server?: string;
  'certificate-authority'?: string;
  'certificate-authority-data'?: string;
  'insecure-skip-tls-verify'?: boolean;
  'tls-server-name'?: string;
  'proxy-url'?: string;
  'disable-compression'?: boolean;
  extensions?: unknown[];
}

export interface ExecConfig {
  command?: string;
  args?: string[];
  env?: unknown[];
  apiVersion?: string;
  installHint?: string;
  provideClusterInfo?: boolean;
  interactiveMode?: string;
}

export interface User {
  token?: string;
  tokenFile?: string;
  'client-certificate'?: string;
  'client-certificate-data'?: string;
  'client-key'?: string;
  'client-key-data'?: string;
  username?: string;
  password?: string;
  as?: string;
  'as-uid'?: string;
  'as-groups'?: string[];
  'as-user-extra'?: Record<string, string[]>;
  exec?: Record<string, unknown>;
  extensions?: unknown[];
}

export interface Context {
  cluster?: string;
  user?: string;
  namespace?: string;
  extensions?: unknown[];
}

export interface KubeconfigFile {
  'current-context'?: string;
  clusters?: unknown[];
  users?: unknown[];
  contexts?: unknown[];
}

const FILE: Fields = {
  apiVersion: 'string',
  kind: 'string',
  preferences: 'mapping',
  clusters: 'list',
  users: 'list',
  contexts: 'list',
  'current-context': 'string',
  extensions: 'list',
};

const CLUSTER: Fields = {
  server: 'string',
  'certificate-authority': 'string',
  'certificate-authority-data': 'string',
  'insecure-skip-tls-verify': 'boolean',
  'tls-server-name': 'string',
  'proxy-url': 'string',
  // Accepted: the client never asks for compressed responses, which is what this turns off.
  'disable-compression': 'boolean',
  extensions: 'list',
};

const USER: Fields = {
  token: 'string',
  tokenFile: 'string',
  'client-certificate': 'string',
  'client-certificate-data': 'string',
  'client-key': 'string',
  'client-key-data': 'string',
  username: 'string',
  password: 'string',
  as: 'string',
  'as-uid': 'string',
  'as-groups': 'strings',
  'as-user-extra': 'string-lists',
  exec: 'mapping',
  extensions: 'list',
};

const EXEC: Fields = {
  command: 'string',
  args: 'strings',
  env: 'list',
  apiVersion: 'string',
  installHint: 'string',
  provideClusterInfo: 'boolean',
  interactiveMode: 'string',
};

const EXEC_ENV: Fields = { name: 'string', value: 'string' };

const CONTEXT: Fields = {
  cluster: 'string',
  user: 'string',
  // Accepted: kubectl's default namespace; the operator's namespaces come from --namespaces.
  namespace: 'string',
  extensions: 'list',
};

/** Fields client-go knows that the operator refuses, with what to use instead. */
const REFUSED: Record<string, string> = {
  'auth-provider':
    'use an exec credential plugin instead (kubelogin for OIDC and Azure, gke-gcloud-auth-plugin for GKE)',
};

const typeNames: Record<FieldType, string> = {
  string: 'a string',
  boolean: 'true or false',
  strings: 'a list of strings',
  'string-lists': 'a mapping of names to lists of strings',
  mapping: 'a mapping',
  list: 'a list',
};

function isMapping(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function isStrings(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

function hasType(value: unknown, type: FieldType): boolean {
  switch (type) {
    case 'string':
      return typeof value === 'string';
    case 'boolean':
      return typeof value === 'boolean';
    case 'strings':
      return isStrings(value);
    case 'string-lists':
      return isMapping(value) && Object.values(value).every(isStrings);
    case 'mapping':
      return isMapping(value);
    case 'list':
      return Array.isArray(value);
  }
}

/**
 * `value` checked against `fields`: every key known and of its type; null and absent fields
 * dropped (YAML writes `env: null`). `where` names the entry in messages, e.g. `users[0].user`
 * (empty for the top level).
 */
function checked(value: unknown, fields: Fields, where: string): Record<string, unknown> {
  if (value === null || value === undefined) return {};
  if (!isMapping(value)) throw new KubeconfigError(`${where} must be a mapping`);
  const result: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) {
    const name = where ? `${where}.${key}` : key;
    const refusal = REFUSED[key];
    if (refusal) throw new KubeconfigError(`${name} is not supported: ${refusal}`);
    const type = fields[key];
    if (!type) throw new KubeconfigError(`${name} is not supported`);
    if (field === null) continue;
    if (!hasType(field, type)) throw new KubeconfigError(`${name} must be ${typeNames[type]}`);
    result[key] = field;
  }
  return result;
}

export function checkFile(value: unknown): KubeconfigFile {
  return checked(value, FILE, '');
}

export const checkCluster = (value: unknown, where: string): Cluster =>
  checked(value, CLUSTER, where);
export const checkUser = (value: unknown, where: string): User => checked(value, USER, where);
export const checkContext = (value: unknown, where: string): Context =>
  checked(value, CONTEXT, where);
export const checkExec = (value: unknown, where: string): ExecConfig => checked(value, EXEC, where);

export function checkExecEnv(value: unknown, where: string): { name: string; value: string } {
  const entry = checked(value, EXEC_ENV, where) as { name?: string; value?: string };
  if (!entry.name) throw new KubeconfigError(`${where}.name must be set`);
  return { name: entry.name, value: entry.value ?? '' };
}

/** A named entry of `clusters`, `users` or `contexts`: its name and its inner mapping. */
export function namedEntry(
  value: unknown,
  inner: 'cluster' | 'user' | 'context',
  where: string,
): { name: string; entry: unknown } {
  if (!isMapping(value)) throw new KubeconfigError(`${where} must be a mapping`);
  const { name, [inner]: entry, ...rest } = value;
  if (typeof name !== 'string' || !name) throw new KubeconfigError(`${where}.name must be set`);
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) throw new KubeconfigError(`${where}.${unknown} is not supported`);
  return { name, entry };
}

/** The `extension` of the NamedExtension called `name` in a list of extensions. */
export function extension(extensions: unknown[] | undefined, name: string): unknown {
  const found = extensions?.find((e) => isMapping(e) && e.name === name);
  return isMapping(found) ? found.extension : undefined;
}
