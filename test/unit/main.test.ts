// main, called in-process: what it answers before it runs anything. (Running the operator through
// main is test/integration/main.test.ts.)
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, mock } from 'node:test';
import { main } from '../../src/main.ts';

/** Runs `main` with console output captured. */
async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = mock.method(console, 'log', () => undefined);
  const err = mock.method(console, 'error', () => undefined);
  try {
    const code = await main(argv, {});
    const text = (m: typeof out) => m.mock.calls.map((c) => c.arguments.join(' ')).join('\n');
    return { code, out: text(out), err: text(err) };
  } finally {
    out.mock.restore();
    err.mock.restore();
  }
}

describe('main', () => {
  it('prints the flags for --help and the version for --version, and exits 0', async () => {
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.out, /--leader-elect/);
    const version = await run(['--version']);
    assert.equal(version.code, 0);
    assert.match(version.out, /^\d+\.\d+\.\d+/);
  });

  it('refuses a broken configuration with a plain message and exit code 2', async () => {
    const bad = await run(['--port=eighty']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /^echo-operator: .*port.*\nRun with --help for the flags\.$/s);
    assert.equal((await run(['--log-filter=loud'])).code, 2);
  });

  it('exits 1 with the reason when the kubeconfig cannot be loaded', async () => {
    const signal = AbortSignal.abort();
    const code = await main(['--kubeconfig=/nonexistent/kubeconfig', '--port=0'], {}, signal);
    assert.equal(code, 1);
  });

  it('exits 1, listening on nothing, when the metrics certificate directory lacks its files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'echo-main-'));
    try {
      const kubeconfig = join(dir, 'kubeconfig');
      await writeFile(
        kubeconfig,
        'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]\n' +
          'users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n',
      );
      const port = await freePort();
      const code = await main(
        [
          `--kubeconfig=${kubeconfig}`,
          `--port=${String(port)}`,
          '--bind-address=127.0.0.1',
          '--metrics-port=0',
          `--metrics-cert-dir=${join(dir, 'certs')}`,
          '--log-filter=silent',
        ],
        {},
        AbortSignal.abort(),
      );
      assert.equal(code, 1);
      assert.equal(await freePort(port), port, 'the probes’ port is not held');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/** A port free on 127.0.0.1 (`port` itself when given, or a rejection if it is taken). */
function freePort(port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address() as { port: number };
      server.close(() => {
        resolve(bound);
      });
    });
  });
}
