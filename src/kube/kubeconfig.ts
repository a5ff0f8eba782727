// Where the API server is and how to authenticate to it, from a kubeconfig (client-go's rules: an
// explicit file, else the KUBECONFIG list merged first-wins, else ~/.kube/config) or from the pod's
// ServiceAccount when running in a cluster. Credentials that change (token files, exec plugins,
// the in-cluster token) are re-read when they expire.
//
// Why not @kubernetes/client-node's KubeConfig: importing it loads the whole generated API (about
// 85 MB of resident memory, twice what the rest of the operator needs); this is the part we use.
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';

export interface TlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  rejectUnauthorized: boolean;
}

export interface Credentials {
  headers: Record<string, string>;
  /** Epoch ms after which the credentials are read again. */
  expiresAt: number;
}

export interface Connection {
  server: URL;
  tls: TlsOptions;
  /** Authorization headers, fresh: files re-read and exec plugins re-run once they expire. */
  credentials: () => Promise<Credentials>;
  /** Where the connection came from, for messages: a file and context, or "in-cluster". */
  source: string;
}

export class KubeconfigError extends Error {
  override readonly name = 'KubeconfigError';
}

/** How long read credentials stay valid (client-go re-reads token files every minute). */
export const CREDENTIAL_TTL_MS = 60_000;
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

interface NamedCluster {
  name: string;
  cluster: {
    server?: string;
    'certificate-authority'?: string;
    'certificate-authority-data'?: string;
    'insecure-skip-tls-verify'?: boolean;
    'tls-server-name'?: string;
    'proxy-url'?: string;
  };
}

interface ExecConfig {
  apiVersion?: string;
  command?: string;
  args?: string[];
  env?: { name: string; value: string }[] | null;
}

interface NamedUser {
  name: string;
  user?: {
    token?: string;
    tokenFile?: string;
    'client-certificate'?: string;
    'client-certificate-data'?: string;
    'client-key'?: string;
    'client-key-data'?: string;
    username?: string;
    password?: string;
    exec?: ExecConfig;
    'auth-provider'?: { name?: string };
  } | null;
}

interface NamedContext {
  name: string;
  context: { cluster?: string; user?: string };
}

interface KubeconfigFile {
  'current-context'?: string;
  clusters?: NamedCluster[] | null;
  users?: NamedUser[] | null;
  contexts?: NamedContext[] | null;
}

/** A merged kubeconfig: each entry remembers its file, for relative paths. */
interface Merged {
  currentContext: string | undefined;
  clusters: Map<string, { entry: NamedCluster['cluster']; dir: string }>;
  users: Map<string, { entry: NonNullable<NamedUser['user']>; dir: string }>;
  contexts: Map<string, NamedContext['context']>;
  files: string[];
}

export interface LoadOptions {
  /** An explicit kubeconfig file (--kubeconfig); otherwise KUBECONFIG, ~/.kube/config, in-cluster. */
  path?: string;
  env?: NodeJS.ProcessEnv;
  /** Where the pod's ServiceAccount files are (tests point it elsewhere). */
  serviceAccountDir?: string;
  now?: () => number;
}

export function loadConnection(options: LoadOptions = {}): Connection {
  const env = options.env ?? process.env;
  const now = options.now ?? Date.now;
  let files: string[];
  if (options.path) {
    files = [options.path];
  } else if (env.KUBECONFIG) {
    files = env.KUBECONFIG.split(':').filter((f) => f && existsSync(f));
  } else {
    const home = join(env.HOME ?? homedir(), '.kube', 'config');
    files = existsSync(home) ? [home] : [];
  }
  if (files.length === 0) {
    if (env.KUBERNETES_SERVICE_HOST && env.KUBERNETES_SERVICE_PORT) {
      return inCluster(env, options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR, now);
    }
    throw new KubeconfigError(
      'no kubeconfig: pass --kubeconfig, set KUBECONFIG, create ~/.kube/config or run in a cluster',
    );
  }
  return fromMerged(merge(files), now);
}

function readKubeconfig(path: string): KubeconfigFile {
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
  return parsed;
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
    const dir = dirname(file);
    // An empty current-context does not count as set.
    if (!merged.currentContext && config['current-context'])
      merged.currentContext = config['current-context'];
    for (const c of config.clusters ?? [])
      if (!merged.clusters.has(c.name)) merged.clusters.set(c.name, { entry: c.cluster, dir });
    for (const u of config.users ?? [])
      if (!merged.users.has(u.name)) merged.users.set(u.name, { entry: u.user ?? {}, dir });
    for (const c of config.contexts ?? [])
      if (!merged.contexts.has(c.name)) merged.contexts.set(c.name, c.context);
  }
  return merged;
}

function fromMerged(config: Merged, now: () => number): Connection {
  const where = config.files.join(':');
  const contextName = config.currentContext;
  if (!contextName) throw new KubeconfigError(`kubeconfig ${where} has no current-context`);
  const context = config.contexts.get(contextName);
  if (!context) throw new KubeconfigError(`kubeconfig ${where} has no context "${contextName}"`);
  const cluster = context.cluster ? config.clusters.get(context.cluster) : undefined;
  if (!cluster) {
    throw new KubeconfigError(
      `kubeconfig ${where}: context "${contextName}" names no known cluster ("${context.cluster ?? ''}")`,
    );
  }
  const c = cluster.entry;
  if (!c.server)
    throw new KubeconfigError(
      `kubeconfig ${where}: cluster "${context.cluster ?? ''}" has no server`,
    );
  if (!URL.canParse(c.server)) {
    throw new KubeconfigError(`kubeconfig ${where}: server "${c.server}" is not a URL`);
  }
  if (c['proxy-url']) {
    throw new KubeconfigError(`kubeconfig ${where}: proxy-url is not supported`);
  }
  const user = context.user ? config.users.get(context.user) : undefined;
  const u = user?.entry ?? {};
  const dir = user?.dir ?? cluster.dir;
  const tls: TlsOptions = {
    rejectUnauthorized: c['insecure-skip-tls-verify'] !== true,
    ...(c['tls-server-name'] ? { servername: c['tls-server-name'] } : {}),
  };
  const ca = dataOrFile(c['certificate-authority-data'], c['certificate-authority'], cluster.dir);
  if (ca) tls.ca = ca;
  const cert = dataOrFile(u['client-certificate-data'], u['client-certificate'], dir);
  const key = dataOrFile(u['client-key-data'], u['client-key'], dir);
  if (cert) tls.cert = cert;
  if (key) tls.key = key;
  if (u['auth-provider']) {
    throw new KubeconfigError(
      `kubeconfig ${where}: auth-provider "${u['auth-provider'].name ?? ''}" is not supported; use an exec credential plugin`,
    );
  }
  return {
    server: new URL(c.server),
    tls,
    credentials: userCredentials(u, dir, now),
    source: `${where} (context ${contextName})`,
  };
}

function dataOrFile(
  data: string | undefined,
  file: string | undefined,
  dir: string,
): Buffer | undefined {
  if (data) return Buffer.from(data, 'base64');
  if (file) return readFileSync(isAbsolute(file) ? file : join(dir, file));
  return undefined;
}

function userCredentials(
  user: NonNullable<NamedUser['user']>,
  dir: string,
  now: () => number,
): () => Promise<Credentials> {
  const { token, tokenFile, username, password, exec } = user;
  if (exec) return execCredentials(exec, dir, now);
  if (tokenFile) {
    const path = isAbsolute(tokenFile) ? tokenFile : join(dir, tokenFile);
    return () =>
      Promise.resolve(bearer(readFileSync(path, 'utf8').trim(), now() + CREDENTIAL_TTL_MS));
  }
  const headers: Record<string, string> = token
    ? { authorization: `Bearer ${token}` }
    : username !== undefined && password !== undefined
      ? { authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` }
      : {};
  return () => Promise.resolve({ headers, expiresAt: Number.POSITIVE_INFINITY });
}

function bearer(token: string, expiresAt: number): Credentials {
  return { headers: { authorization: `Bearer ${token}` }, expiresAt };
}

const run = promisify(execFile);

/**
 * client.authentication.k8s.io exec plugins (EKS, GKE, AKS, OIDC helpers): the command prints an
 * ExecCredential whose token is used until its expirationTimestamp.
 */
function execCredentials(
  exec: ExecConfig,
  dir: string,
  now: () => number,
): () => Promise<Credentials> {
  const { command, apiVersion = 'client.authentication.k8s.io/v1' } = exec;
  if (!command) throw new KubeconfigError('kubeconfig exec credential plugin has no command');
  // A relative command with a slash is relative to the kubeconfig's directory, as in client-go.
  const file = command.includes('/') && !isAbsolute(command) ? join(dir, command) : command;
  return async () => {
    let stdout: string;
    try {
      ({ stdout } = await run(file, exec.args ?? [], {
        env: {
          ...process.env,
          ...Object.fromEntries((exec.env ?? []).map((e) => [e.name, e.value])),
          KUBERNETES_EXEC_INFO: JSON.stringify({
            apiVersion,
            kind: 'ExecCredential',
            spec: { interactive: false },
          }),
        },
        timeout: 60_000,
      }));
    } catch (err) {
      throw new KubeconfigError(
        `exec credential plugin ${command} failed: ${(err as Error).message}`,
      );
    }
    let credential: { status?: { token?: string; expirationTimestamp?: string } };
    try {
      credential = JSON.parse(stdout) as typeof credential;
    } catch {
      throw new KubeconfigError(
        `exec credential plugin ${command} did not print an ExecCredential`,
      );
    }
    const t = credential.status?.token;
    if (!t) {
      throw new KubeconfigError(
        `exec credential plugin ${command} gave no token (client certificates from plugins are not supported)`,
      );
    }
    const expires = credential.status?.expirationTimestamp;
    return bearer(t, expires ? Date.parse(expires) : now() + CREDENTIAL_TTL_MS);
  };
}

/** The pod's ServiceAccount: token and CA mounted by the kubelet; the token rotates. */
function inCluster(env: NodeJS.ProcessEnv, saDir: string, now: () => number): Connection {
  const host = env.KUBERNETES_SERVICE_HOST ?? '';
  const server = new URL(
    `https://${host.includes(':') ? `[${host}]` : host}:${env.KUBERNETES_SERVICE_PORT ?? '443'}`,
  );
  const tokenPath = join(saDir, 'token');
  return {
    server,
    tls: { ca: readFileSync(join(saDir, 'ca.crt')), rejectUnauthorized: true },
    credentials: () =>
      Promise.resolve(bearer(readFileSync(tokenPath, 'utf8').trim(), now() + CREDENTIAL_TTL_MS)),
    source: 'in-cluster (ServiceAccount)',
  };
}
