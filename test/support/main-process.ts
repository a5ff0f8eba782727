// The operator as users run it: `node src/main.ts` in a child process, JSON logs captured, with
// helpers to find the port it logged and wait for its readiness.
import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { diesWithParent } from '../../hack/cluster/process.ts';
import { eventually } from './kube.ts';

const main = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

export interface OperatorProcess {
  child: ChildProcess;
  /** stdout and stderr, interleaved. */
  output: () => string;
  /** stdout alone: the log lines. */
  stdout: () => string;
  exited: Promise<number | null>;
}

/** Starts the operator with `args`, and `env` over a copy of this process's environment. */
export function startMain(args: string[], env: Record<string, string> = {}): OperatorProcess {
  // Tied to the test process: an interrupted run leaves no operator behind.
  const [file, argv] = diesWithParent(process.execPath, [
    main,
    '--port=0',
    '--log-format=json',
    ...args,
  ]);
  const child = spawn(file, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, KUBECONFIG: '', ...env },
  });
  return captured(child);
}

/** Collects a child's output (stdout alone, and both interleaved) and its exit. */
export function captured(child: ChildProcessByStdio<null, Readable, Readable>): OperatorProcess {
  let out = '';
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    stdout += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, output: () => out, stdout: () => stdout, exited };
}

/** A port the operator logged at startup: the health endpoints' (`port`), or /metrics'. */
function loggedPort(p: OperatorProcess, field: 'port' | 'metricsPort'): number | undefined {
  for (const line of p.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as { msg?: string; port?: number; metricsPort?: number };
    if (entry.msg === 'echo-operator starting') return entry[field];
  }
  return undefined;
}

/** Waits until the operator logged its HTTP port, and returns it. */
export function logsPort(p: OperatorProcess): Promise<number> {
  return eventually(
    'the operator to log its port',
    () => Promise.resolve(loggedPort(p, 'port')),
    30_000,
  );
}

/** Waits until the operator logged the port of /metrics (its own, or the HTTP port), and returns it. */
export function logsMetricsPort(p: OperatorProcess): Promise<number> {
  return eventually(
    'the operator to log its metrics port',
    () => Promise.resolve(loggedPort(p, 'metricsPort')),
    30_000,
  );
}

/** Waits until the operator serves /readyz with 200, and returns its HTTP port. */
export async function whenReady(p: OperatorProcess): Promise<number> {
  const port = await logsPort(p);
  await eventually('/readyz to pass', async () =>
    (await fetch(`http://127.0.0.1:${String(port)}/readyz`)).ok ? true : undefined,
  );
  return port;
}
