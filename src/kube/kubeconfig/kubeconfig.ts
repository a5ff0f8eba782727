// Where the API server is and how to reach and authenticate to it, read as kubectl reads it:
// controller-runtime's order (the --kubeconfig file, the KUBECONFIG list merged with client-go's
// rules, the pod's ServiceAccount, ~/.kube/config), impersonation, proxies, exec credential
// plugins. Credentials that change (token files, exec plugins, the in-cluster token) are read
// again when they expire. What the operator does not support is refused by name
// (fields.ts); docs/kubeconfig.md lists every field.
//
// Why not @kubernetes/client-node's KubeConfig: importing it loads the whole generated API, more
// memory than the rest of the operator (docs/design.md); this is the part we use.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join } from 'node:path';
import { parse } from 'yaml';
import { KubeconfigError } from '../errors.ts';
import { execCredentials, execPlugin, type ExecCluster } from './exec-credential.ts';
import { impersonationHeaders, type Headers } from './impersonation.ts';
import {
  checkCluster,
  checkContext,
  checkExec,
  checkFile,
  checkUser,
  extension,
  namedEntry,
  type User,
} from './fields.ts';
import { proxyFor } from '../transport/proxy.ts';
import type { Connection, Credentials, TlsOptions } from './types.ts';

export { KubeconfigError } from '../errors.ts';

/** How long read credentials stay valid (client-go re-reads token files every minute). */
export const CREDENTIAL_TTL_MS = 60_000;
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** An entry of a merged kubeconfig and where it came from: its file, and its index there. */
interface Origin {
  file: string;
  index: number;
  entry: unknown;
}

interface Merged {
  currentContext: string | undefined;
  clusters: Map<string, Origin>;
  users: Map<string, Origin>;
  contexts: Map<string, Origin>;
  files: string[];
}

export interface LoadOptions {
  /** An explicit kubeconfig file (--kubeconfig); otherwise KUBECONFIG, in-cluster, ~/.kube/config. */
  path?: string;
  env?: NodeJS.ProcessEnv;
  /** Where the pod's ServiceAccount files are (tests point it elsewhere). */
  serviceAccountDir?: string;
  now?: () => number;
}

export function loadConnection(options: LoadOptions = {}): Connection {
  const env = options.env ?? process.env;
  const now = options.now ?? Date.now;
  const saDir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  const source = configSource(options.path, env, inClusterPossible(env, saDir));
  if (source === 'in-cluster') return inCluster(env, saDir, now);
  return fromMerged(merge(source), env, now);
}

/**
 * controller-runtime's order: the --kubeconfig file; else the files of the KUBECONFIG list that
 * exist (split on `:`, empty entries and missing files skipped); else the pod's ServiceAccount;
 * else ~/.kube/config. A KUBECONFIG naming no file that exists falls back to the ServiceAccount,
 * as client-go does with an empty configuration.
 */
export function configSource(
  path: string | undefined,
  env: NodeJS.ProcessEnv,
  inClusterPossible: boolean,
): string[] | 'in-cluster' {
  if (path) return [path];
  if (env.KUBECONFIG) {
    const files = [...new Set(env.KUBECONFIG.split(delimiter))].filter((f) => f && existsSync(f));
    if (files.length > 0) return files;
    if (inClusterPossible) return 'in-cluster';
    throw new KubeconfigError(`no kubeconfig: no file of KUBECONFIG exists (${env.KUBECONFIG})`);
  }
  if (inClusterPossible) return 'in-cluster';
  const home = join(env.HOME ?? homedir(), '.kube', 'config');
  if (existsSync(home)) return [home];
  throw new KubeconfigError(
    'no kubeconfig: pass --kubeconfig, set KUBECONFIG, run in a cluster or create ~/.kube/config',
  );
}

/** client-go's test: the service environment variables, and a token file. */
function inClusterPossible(env: NodeJS.ProcessEnv, saDir: string): boolean {
  if (!env.KUBERNETES_SERVICE_HOST || !env.KUBERNETES_SERVICE_PORT) return false;
  try {
    return statSync(join(saDir, 'token')).isFile();
  } catch {
    return false;
  }
}

/** Runs `read`, naming `file` in the message of a KubeconfigError it throws. */
function inFile<T>(file: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (!(err instanceof KubeconfigError)) throw err;
    throw new KubeconfigError(`kubeconfig ${file}: ${err.message}`, { cause: err });
  }
}

function readKubeconfig(path: string): ReturnType<typeof checkFile> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new KubeconfigError(`cannot read kubeconfig ${path}: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = parse(text);
  } catch (err) {
    throw new KubeconfigError(`kubeconfig ${path} is not valid YAML: ${(err as Error).message}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new KubeconfigError(`kubeconfig ${path} is not a kubeconfig (not a YAML mapping)`);
  }
  return inFile(path, () => checkFile(parsed));
}

/** client-go's merge: across the files, the first to name a context, cluster or user wins. */
function merge(files: string[]): Merged {
  const merged: Merged = {
    currentContext: undefined,
    clusters: new Map(),
    users: new Map(),
    contexts: new Map(),
    files,
  };
  for (const file of files) {
    const config = readKubeconfig(file);
    // An empty current-context does not count as set.
    const current = config['current-context'];
    if (merged.currentContext === undefined && current) merged.currentContext = current;
    const add = (
      list: unknown[] | undefined,
      kind: 'cluster' | 'user' | 'context',
      into: Map<string, Origin>,
    ): void => {
      list?.forEach((item, index) => {
        const { name, entry } = inFile(file, () =>
          namedEntry(item, kind, `${kind}s[${String(index)}]`),
        );
        if (!into.has(name)) into.set(name, { file, index, entry });
      });
    };
    add(config.clusters, 'cluster', merged.clusters);
    add(config.users, 'user', merged.users);
    add(config.contexts, 'context', merged.contexts);
  }
  return merged;
}

function fromMerged(config: Merged, env: NodeJS.ProcessEnv, now: () => number): Connection {
  const where = config.files.join(delimiter);
  const contextName = config.currentContext;
  if (!contextName) throw new KubeconfigError(`kubeconfig ${where} has no current-context`);
  const contextOrigin = config.contexts.get(contextName);
  if (!contextOrigin) {
    throw new KubeconfigError(`kubeconfig ${where} has no context "${contextName}"`);
  }
  const context = inFile(contextOrigin.file, () =>
    checkContext(contextOrigin.entry, `contexts[${String(contextOrigin.index)}].context`),
  );
  const clusterOrigin = context.cluster ? config.clusters.get(context.cluster) : undefined;
  if (!clusterOrigin) {
    throw new KubeconfigError(
      `kubeconfig ${where}: context "${contextName}" names no known cluster ("${context.cluster ?? ''}")`,
    );
  }
  const userOrigin = context.user ? config.users.get(context.user) : undefined;
  if (context.user && !userOrigin) {
    throw new KubeconfigError(
      `kubeconfig ${where}: context "${contextName}" names no known user ("${context.user}")`,
    );
  }
  const cluster = inFile(clusterOrigin.file, () => clusterConnection(clusterOrigin, env));
  const user = userOrigin
    ? inFile(userOrigin.file, () => userAuthentication(userOrigin, cluster.execCluster, env, now))
    : { tls: {}, credentials: staticCredentials({}), headers: {} };
  return {
    server: cluster.server,
    tls: { ...cluster.tls, ...user.tls },
    credentials: user.credentials,
    ...(Object.keys(user.headers).length > 0 ? { headers: user.headers } : {}),
    ...(cluster.proxy ? { proxy: cluster.proxy } : {}),
    source: `${where} (context ${contextName})`,
  };
}

/** Bytes from a `-data` field (base64) or else from the file its sibling names. */
function dataOrFile(
  entry: Record<string, unknown>,
  field: string,
  at: string,
  dir: string,
): Buffer | undefined {
  const data = entry[`${field}-data`];
  if (typeof data === 'string' && data) return Buffer.from(data, 'base64');
  const file = entry[field];
  if (typeof file !== 'string' || !file) return undefined;
  const path = isAbsolute(file) ? file : join(dir, file);
  try {
    return readFileSync(path);
  } catch (err) {
    throw new KubeconfigError(`${at}.${field}: cannot read ${path}: ${(err as Error).message}`);
  }
}

function clusterConnection(
  origin: Origin,
  env: NodeJS.ProcessEnv,
): { server: URL; tls: TlsOptions; proxy: URL | undefined; execCluster: ExecCluster } {
  const at = `clusters[${String(origin.index)}].cluster`;
  const c = checkCluster(origin.entry, at);
  if (!c.server) throw new KubeconfigError(`${at}.server must be set`);
  if (!URL.canParse(c.server)) {
    throw new KubeconfigError(`${at}.server "${c.server}" is not a URL`);
  }
  const server = new URL(c.server);
  if (server.protocol !== 'https:' && server.protocol !== 'http:') {
    throw new KubeconfigError(`${at}.server "${c.server}" is not an http or https URL`);
  }
  const ca = dataOrFile(
    c as Record<string, unknown>,
    'certificate-authority',
    at,
    dirname(origin.file),
  );
  const insecure = c['insecure-skip-tls-verify'] === true;
  if (insecure && ca) {
    // As client-go: a CA that is never checked is a mistake, not a configuration.
    throw new KubeconfigError(
      `${at}: insecure-skip-tls-verify cannot be combined with certificate-authority or certificate-authority-data`,
    );
  }
  const tlsServerName = c['tls-server-name'];
  const tls: TlsOptions = {
    rejectUnauthorized: !insecure,
    ...(tlsServerName ? { servername: tlsServerName } : {}),
    ...(ca ? { ca } : {}),
  };
  const execCluster: ExecCluster = {
    server: c.server,
    ...(tlsServerName ? { 'tls-server-name': tlsServerName } : {}),
    ...(insecure ? { 'insecure-skip-tls-verify': true } : {}),
    ...(ca ? { 'certificate-authority-data': ca.toString('base64') } : {}),
    ...(c['proxy-url'] ? { 'proxy-url': c['proxy-url'] } : {}),
    ...(c['disable-compression'] ? { 'disable-compression': true } : {}),
  };
  const config = extension(c.extensions, 'client.authentication.k8s.io/exec');
  if (config !== undefined) execCluster.config = config;
  return {
    server,
    tls,
    proxy: proxyFor(server, c['proxy-url'], `${at}.proxy-url`, env),
    execCluster,
  };
}

/** Two ways of authenticating in one user would leave which one applies to guesswork. */
function conflictingMethods(u: User): string | undefined {
  const methods = [
    u.exec && 'exec',
    u.token !== undefined && 'token',
    u.tokenFile !== undefined && 'tokenFile',
    (u.username !== undefined || u.password !== undefined) && 'username/password',
  ].filter((m): m is string => typeof m === 'string');
  return methods.length > 1 ? methods.join(' and ') : undefined;
}

function userAuthentication(
  origin: Origin,
  execCluster: ExecCluster,
  env: NodeJS.ProcessEnv,
  now: () => number,
): {
  tls: Pick<TlsOptions, 'cert' | 'key'>;
  credentials: () => Promise<Credentials>;
  headers: Headers;
} {
  const at = `users[${String(origin.index)}].user`;
  const u = checkUser(origin.entry, at);
  const dir = dirname(origin.file);
  const cert = dataOrFile(u as Record<string, unknown>, 'client-certificate', at, dir);
  const key = dataOrFile(u as Record<string, unknown>, 'client-key', at, dir);
  if (Boolean(cert) !== Boolean(key)) {
    throw new KubeconfigError(
      `${at}: ${cert ? 'client-certificate needs client-key' : 'client-key needs client-certificate'} (or their -data forms)`,
    );
  }
  const conflict = conflictingMethods(u);
  if (conflict) throw new KubeconfigError(`${at} sets ${conflict}: keep one`);
  if (u.password !== undefined && u.username === undefined) {
    throw new KubeconfigError(`${at}.password needs username`);
  }
  let credentials: () => Promise<Credentials>;
  if (u.exec) {
    const plugin = execPlugin(checkExec(u.exec, `${at}.exec`), `${at}.exec`, dir, execCluster, env);
    credentials = execCredentials(plugin);
  } else if (u.tokenFile) {
    const path = isAbsolute(u.tokenFile) ? u.tokenFile : join(dir, u.tokenFile);
    credentials = () =>
      Promise.resolve(bearer(readFileSync(path, 'utf8').trim(), now() + CREDENTIAL_TTL_MS));
  } else if (u.token) {
    credentials = staticCredentials({ authorization: `Bearer ${u.token}` });
  } else if (u.username !== undefined) {
    const basic = Buffer.from(`${u.username}:${u.password ?? ''}`).toString('base64');
    credentials = staticCredentials({ authorization: `Basic ${basic}` });
  } else {
    credentials = staticCredentials({});
  }
  return {
    tls: { ...(cert ? { cert } : {}), ...(key ? { key } : {}) },
    credentials,
    headers: impersonationHeaders(u, at),
  };
}

function staticCredentials(headers: Record<string, string>): () => Promise<Credentials> {
  return () => Promise.resolve({ headers, expiresAt: Number.POSITIVE_INFINITY });
}

function bearer(token: string, expiresAt: number): Credentials {
  return { headers: { authorization: `Bearer ${token}` }, expiresAt };
}

/** The pod's ServiceAccount: token and CA mounted by the kubelet; the token rotates. */
function inCluster(env: NodeJS.ProcessEnv, saDir: string, now: () => number): Connection {
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const server = new URL(
    `https://${host.includes(':') ? `[${host}]` : host}:${env.KUBERNETES_SERVICE_PORT ?? '443'}`,
  );
  const tokenPath = join(saDir, 'token');
  // client-go's in-cluster configuration leaves proxies to the environment.
  const proxy = proxyFor(server, undefined, '', env);
  return {
    server,
    tls: { ca: readFileSync(join(saDir, 'ca.crt')), rejectUnauthorized: true },
    credentials: () =>
      Promise.resolve(bearer(readFileSync(tokenPath, 'utf8').trim(), now() + CREDENTIAL_TTL_MS)),
    ...(proxy ? { proxy } : {}),
    source: 'in-cluster (ServiceAccount)',
  };
}
