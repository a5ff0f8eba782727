// client.authentication.k8s.io exec credential plugins (`aws eks get-token`,
// gke-gcloud-auth-plugin, kubelogin, ...): the command prints an ExecCredential whose token is
// used until its expirationTimestamp, or until the API server answers 401.
import { execFile, type ExecFileException } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { promisify } from 'node:util';
import { KubeconfigError } from '../errors.ts';
import { checkExecEnv, type ExecConfig } from './fields.ts';
import type { Credentials } from './types.ts';

const API_VERSIONS = ['client.authentication.k8s.io/v1', 'client.authentication.k8s.io/v1beta1'];
/** How long a plugin may run: it may call a cloud API, but must not hold the operator for ever. */
const PLUGIN_TIMEOUT_MS = 60_000;

/** What a plugin with `provideClusterInfo` is told about the cluster (ExecCredential spec.cluster). */
export interface ExecCluster {
  server: string;
  'tls-server-name'?: string;
  'insecure-skip-tls-verify'?: boolean;
  /** Base64, whether the kubeconfig had the CA as data or as a file. */
  'certificate-authority-data'?: string;
  'proxy-url'?: string;
  'disable-compression'?: boolean;
  /** The cluster's `client.authentication.k8s.io/exec` extension. */
  config?: unknown;
}

export interface ExecPlugin {
  /** As the kubeconfig names it, for messages. */
  command: string;
  /** The executable found: relative to the kubeconfig when the command has a slash, else on PATH. */
  path: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  apiVersion: string;
  installHint?: string;
}

/** KUBERNETES_EXEC_INFO: the plugin runs without a terminal; the cluster when asked for. */
export function execInfo(apiVersion: string, cluster: ExecCluster | undefined): string {
  return JSON.stringify({
    apiVersion,
    kind: 'ExecCredential',
    spec: { interactive: false, ...(cluster ? { cluster } : {}) },
  });
}

/** The executable `command` names: itself when it has a slash, else the first match on `path`. */
export function findCommand(command: string, path: string | undefined): string | undefined {
  const executable = (file: string): boolean => {
    try {
      accessSync(file, constants.X_OK);
      return statSync(file).isFile();
    } catch {
      return false;
    }
  };
  if (command.includes('/')) return executable(command) ? command : undefined;
  return (path ?? '')
    .split(delimiter)
    .filter(Boolean)
    .map((dir) => join(dir, command))
    .find(executable);
}

function interactiveModeProblem(exec: ExecConfig, apiVersion: string): string | undefined {
  // client-go defaults v1beta1 to IfAvailable and makes v1 say which it wants.
  const mode = exec.interactiveMode ?? (apiVersion.endsWith('/v1beta1') ? 'IfAvailable' : '');
  if (mode === 'Never' || mode === 'IfAvailable') return undefined;
  if (mode === 'Always') {
    return 'interactiveMode Always needs a terminal, and the operator runs without one: use Never or IfAvailable';
  }
  if (!mode) return `interactiveMode must be set with ${apiVersion} (Never or IfAvailable)`;
  return `interactiveMode must be Never, IfAvailable or Always, not "${mode}"`;
}

/**
 * The plugin a kubeconfig user's `exec` (named `where`) describes, checked as client-go checks it,
 * and found: a missing command is an error now, with the kubeconfig's install hint.
 */
export function execPlugin(
  exec: ExecConfig,
  where: string,
  dir: string,
  cluster: ExecCluster,
  env: NodeJS.ProcessEnv,
): ExecPlugin {
  const { command, apiVersion } = exec;
  if (!command) throw new KubeconfigError(`${where}.command must be set`);
  if (!apiVersion || !API_VERSIONS.includes(apiVersion)) {
    throw new KubeconfigError(
      `${where}.apiVersion must be ${API_VERSIONS.join(' or ')}, not "${apiVersion ?? ''}"`,
    );
  }
  const modeProblem = interactiveModeProblem(exec, apiVersion);
  if (modeProblem) throw new KubeconfigError(`${where}.${modeProblem}`);
  const pluginEnv = Object.fromEntries(
    (exec.env ?? []).map((e, i) => {
      const { name, value } = checkExecEnv(e, `${where}.env[${String(i)}]`);
      return [name, value];
    }),
  );
  // A relative command with a slash is relative to the kubeconfig's directory, as in client-go.
  const path = findCommand(
    command.includes('/') && !isAbsolute(command) ? join(dir, command) : command,
    env.PATH,
  );
  if (!path) throw notFound(command, exec.installHint);
  const info = execInfo(apiVersion, exec.provideClusterInfo ? cluster : undefined);
  return {
    command,
    path,
    args: exec.args ?? [],
    env: { ...env, ...pluginEnv, KUBERNETES_EXEC_INFO: info },
    apiVersion,
    ...(exec.installHint ? { installHint: exec.installHint } : {}),
  };
}

function notFound(command: string, installHint: string | undefined): KubeconfigError {
  const hint = installHint?.trim();
  return new KubeconfigError(
    `exec credential plugin "${command}" not found${command.includes('/') ? '' : ' on PATH'}${hint ? `\n\n${hint}` : ''}`,
  );
}

interface ExecCredential {
  apiVersion?: string;
  kind?: string;
  status?: {
    token?: string;
    expirationTimestamp?: string;
    clientCertificateData?: string;
    clientKeyData?: string;
  };
}

/** The credentials an ExecCredential printed by `plugin` gives. */
export function parseExecCredential(stdout: string, plugin: ExecPlugin): Credentials {
  const fail = (why: string): KubeconfigError =>
    new KubeconfigError(`exec credential plugin ${plugin.command} ${why}`);
  let credential: ExecCredential;
  try {
    credential = JSON.parse(stdout) as ExecCredential;
  } catch {
    throw fail('did not print an ExecCredential (not JSON)');
  }
  if (credential.kind !== 'ExecCredential') throw fail('did not print an ExecCredential');
  if (credential.apiVersion !== plugin.apiVersion) {
    throw fail(
      `printed ${credential.apiVersion ?? 'no apiVersion'} where its kubeconfig asks for ${plugin.apiVersion}`,
    );
  }
  const { token, expirationTimestamp, clientCertificateData } = credential.status ?? {};
  if (clientCertificateData) {
    throw fail('gave a client certificate: only tokens from exec plugins are supported');
  }
  if (!token) throw fail('gave no token');
  const expiresAt = expirationTimestamp ? Date.parse(expirationTimestamp) : Infinity;
  if (Number.isNaN(expiresAt)) {
    throw fail(`gave an expirationTimestamp that is not a time: "${expirationTimestamp ?? ''}"`);
  }
  return { headers: { authorization: `Bearer ${token}` }, expiresAt };
}

const run = promisify(execFile);

/**
 * Runs the plugin each time the credentials it gave expire (or were refused). A failure is told by
 * the command and how it ended only: its arguments and environment may hold secrets
 * (`--client-secret`), and the error reaches logs, spans and readiness messages. What it writes to
 * stderr may echo them, so it goes to the operator's stderr as it comes, never into the error, as
 * client-go does (its error has the exit code only): whoever reads the container's output still
 * sees the plugin's own explanation.
 */
export function execCredentials(plugin: ExecPlugin): () => Promise<Credentials> {
  return async () => {
    let stdout: string;
    try {
      const running = run(plugin.path, plugin.args, {
        env: plugin.env,
        timeout: PLUGIN_TIMEOUT_MS,
      });
      // Not interactive: a plugin that reads its input gets end-of-file, not a wait.
      running.child.stdin?.end();
      running.child.stderr?.pipe(process.stderr, { end: false });
      ({ stdout } = await running);
    } catch (err) {
      // Node's error quotes the command line and stderr, in its message and its fields: none of
      // it is passed on.
      throw runFailure(plugin, err as ExecFileException);
    }
    return parseExecCredential(stdout, plugin);
  };
}

function runFailure(plugin: ExecPlugin, e: ExecFileException): KubeconfigError {
  if (e.code === 'ENOENT') return notFound(plugin.command, plugin.installHint);
  const why =
    typeof e.code === 'number'
      ? `failed with exit code ${String(e.code)}`
      : e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER'
        ? 'printed more than 1 MiB'
        : e.killed
          ? `did not finish within ${String(PLUGIN_TIMEOUT_MS / 1000)} s`
          : e.signal
            ? `was stopped by ${e.signal}`
            : `could not run (${e.code ?? e.name})`;
  return new KubeconfigError(`exec credential plugin ${plugin.command} ${why}`);
}
