// Child processes of the local cluster. Two lifetimes: tied to this Node process (tests: the kernel
// kills the child if we die, through PR_SET_PDEATHSIG set by util-linux's setpriv) or detached
// (`make cluster-up`: they outlive the command, and `make cluster-down` stops them by pid).
import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  logFile: string;
  detached: boolean;
}

export interface RunningProcess {
  name: string;
  pid: number;
  command: string;
  logFile: string;
  /** Set once the process has exited, with its exit code or signal. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));

/**
 * The command line that runs `command` so the kernel kills it when this process dies, however it
 * dies (setpriv execs the command: same pid, signals reach it). Unchanged without setpriv.
 */
export function diesWithParent(command: string, args: string[]): [string, string[]] {
  return setpriv ? [setpriv, ['--pdeathsig', 'KILL', '--', command, ...args]] : [command, args];
}

export function startProcess(spec: ProcessSpec): RunningProcess {
  const out = openSync(spec.logFile, 'a');
  const [file, args] = spec.detached
    ? [spec.command, spec.args]
    : diesWithParent(spec.command, spec.args);
  const child = spawn(file, args, { stdio: ['ignore', out, out], detached: spec.detached });
  closeSync(out);
  if (child.pid === undefined) throw new Error(`could not start ${spec.name} (${spec.command})`);
  const running: RunningProcess = {
    name: spec.name,
    pid: child.pid,
    command: spec.command,
    logFile: spec.logFile,
    exit: undefined,
  };
  child.on('exit', (code, signal) => {
    running.exit = { code, signal };
  });
  if (spec.detached) child.unref();
  return running;
}

/** True while `pid` is alive and still runs `command` (a recycled pid is not ours). */
export function isRunning(pid: number, command: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${String(pid)}/cmdline`, 'utf8');
    const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
    // A zombie has exited; only its parent's bookkeeping is left.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && cmdline.includes(command);
  } catch {
    return false;
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
export async function stopProcess(pid: number, command: string, graceMs = 5000): Promise<void> {
  if (!isRunning(pid, command)) return;
  signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (isRunning(pid, command)) {
    if (Date.now() > deadline) {
      signal(pid, 'SIGKILL');
      await waitGone(pid, command, 5000);
      return;
    }
    await sleep(50);
  }
}

async function waitGone(pid: number, command: string, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (isRunning(pid, command)) {
    if (Date.now() > deadline)
      throw new Error(`process ${String(pid)} (${command}) survived SIGKILL`);
    await sleep(50);
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/** The last lines of a log file, for error messages. */
export function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Loopback ports free right now, all different. */
export async function freePorts(count: number): Promise<number[]> {
  // Hold every listener until all are chosen, so the same port is never handed out twice.
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((ok, fail) => {
          const s = createServer();
          s.once('error', fail);
          s.listen(0, '127.0.0.1', () => {
            ok(s);
          });
        }),
    ),
  );
  const ports = servers.map((s) => {
    const addr = s.address();
    if (addr === null || typeof addr === 'string') throw new Error('no port');
    return addr.port;
  });
  await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  return ports;
}
