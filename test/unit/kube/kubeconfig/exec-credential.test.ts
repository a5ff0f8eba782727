// Exec credential plugins as a client runs them: a failure names the command and its exit code
// but none of the secrets its arguments, environment or stderr may carry, in the error, the span
// or the log line; and one run at a time serves every request, at expiry and after a 401.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it, type TestContext } from 'node:test';
import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { inspect } from 'node:util';
import {
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { stringify } from 'yaml';
import { KubeClient, type ClientOptions } from '../../../../src/kube/client.ts';
import { loadConnection } from '../../../../src/kube/kubeconfig/kubeconfig.ts';
import { createLoggers, errorText } from '../../../../src/telemetry/logger.ts';

const dir = mkdtempSync(join(tmpdir(), 'exec-credential-test-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
function executable(script: string): string {
  const path = join(dir, `plugin-${String(++files)}.sh`);
  writeFileSync(path, script);
  chmodSync(path, 0o755);
  return path;
}

/**
 * A server that answers `{}`, keeps the Authorization header of each request, refuses with 401 the
 * tokens in `revoked`, and holds the next request for a path in `toHold` until the test answers it.
 */
const seen: { path: string; authorization: string | undefined }[] = [];
const revoked = new Set<string>();
const toHold = new Set<string>();
const held: ServerResponse[] = [];
const server = createServer((req, res) => {
  seen.push({ path: req.url ?? '', authorization: req.headers.authorization });
  res.setHeader('content-type', 'application/json');
  if (toHold.delete(req.url ?? '')) held.push(res);
  else if (revoked.has(req.headers.authorization ?? '')) unauthorized(res);
  else res.end('{}');
});
const unauthorized = (res: ServerResponse): void => {
  res.statusCode = 401;
  res.end(
    '{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}',
  );
};
let serverUrl = '';
before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverUrl = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
});
after(() => {
  server.close();
});

/** A client of the test server whose user runs `command` with `args` and `env`. */
function client(
  command: string,
  args: string[],
  env: Record<string, string>,
  options: ClientOptions = {},
): KubeClient {
  const path = join(dir, `config-${String(++files)}`);
  writeFileSync(
    path,
    stringify({
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'ctx',
      contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
      clusters: [{ name: 'c', cluster: { server: serverUrl } }],
      users: [
        {
          name: 'u',
          user: {
            exec: {
              apiVersion: 'client.authentication.k8s.io/v1',
              command,
              args,
              env: Object.entries(env).map(([name, value]) => ({ name, value })),
              interactiveMode: 'Never',
            },
          },
        },
      ],
    }),
  );
  return new KubeClient(loadConnection({ path }), options);
}

describe('a failing exec credential plugin', () => {
  it('is named with its exit code; its arguments, environment and stderr reach no error, span or log line', async (t) => {
    const stderr: string[] = [];
    t.mock.method(process.stderr, 'write', (chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
    const exporter = new InMemorySpanExporter();
    const provider = new TracerProvider({
      spanProcessors: [new SimpleSpanProcessor({ exporter })],
    });
    const failing = executable('#!/bin/sh\necho "login failed: $* $CLIENT_SECRET" >&2\nexit 3\n');
    const c = client(
      failing,
      ['get-token', '--client-secret', 's3cr3t'],
      { CLIENT_SECRET: 'env-s3cr3t' },
      { tracer: provider.getTracer('test') },
    );
    let logged = '';
    const log = createLoggers(
      'info',
      new Writable({
        write(chunk, _encoding, done) {
          logged += String(chunk);
          done();
        },
      }),
    ).module('controller');
    try {
      const err = await c.request({ path: '/api' }).then(
        () => assert.fail('the request went through'),
        (e: unknown) => e as Error,
      );
      // As the controller and the readiness check log what a request threw.
      log.warn({ err: errorText(err) }, 'request failed');
      const everything = [
        err.message,
        err.stack,
        inspect(err, { depth: 10 }),
        logged,
        JSON.stringify(exporter.getFinishedSpans().map((s) => [s.status, s.events])),
      ].join('\n');
      assert.ok(!everything.includes('s3cr3t'), everything);
      assert.ok(!everything.includes('login failed'), 'stderr kept out');
      assert.match(
        err.message,
        /^exec credential plugin \/.*\/plugin-\d+\.sh failed with exit code 3$/,
      );
      assert.match(logged, /failed with exit code 3/);
      assert.match(
        stderr.join(''),
        /login failed: get-token --client-secret s3cr3t env-s3cr3t/,
        "the plugin's stderr passed through to the operator's",
      );
    } finally {
      await c.close();
      await provider.shutdown();
    }
  });
});

describe('exec credential plugin runs', () => {
  const expiry = (n: number): number => Date.UTC(2030, 0, n);

  /**
   * A plugin whose run n (counted by the lines it appends to its runs file) hands out token tok-n
   * valid until midnight of January n, 2030. While the hold file exists, a run waits before it
   * prints. Run $FAIL_RUN fails.
   */
  function numberedPlugin(t: TestContext, env: Record<string, string> = {}) {
    const runsFile = join(dir, `runs-${String(++files)}`);
    const holdFile = `${runsFile}.hold`;
    const plugin = executable(
      '#!/bin/sh\necho run >> "$RUNS"\nn=$(($(wc -l < "$RUNS")))\nday=$(printf %02d "$n")\n' +
        'while [ -e "$HOLD" ]; do sleep 0.01; done\n' +
        'if [ "$n" = "$FAIL_RUN" ]; then exit 1; fi\n' +
        'echo "{\\"apiVersion\\":\\"client.authentication.k8s.io/v1\\",\\"kind\\":\\"ExecCredential\\",' +
        '\\"status\\":{\\"token\\":\\"tok-$n\\",\\"expirationTimestamp\\":\\"2030-01-${day}T00:00:00Z\\"}}"\n',
    );
    t.mock.timers.enable({ apis: ['Date'], now: expiry(1) - 3600_000 });
    const responses: number[] = [];
    const c = client(
      plugin,
      [],
      { RUNS: runsFile, HOLD: holdFile, ...env },
      {
        onResponse: ({ code }) => responses.push(code),
      },
    );
    t.after(() => c.close());
    return {
      c,
      responses,
      runs: (): number =>
        existsSync(runsFile)
          ? readFileSync(runsFile, 'utf8').split('\n').filter(Boolean).length
          : 0,
      hold: (): void => {
        writeFileSync(holdFile, '');
      },
      release: (): void => {
        rmSync(holdFile);
      },
    };
  }

  /** The Authorization headers the server saw for `path`, in order. */
  const sentTo = (path: string): (string | undefined)[] =>
    seen.filter((s) => s.path === path).map((s) => s.authorization);

  const eventually = async (what: string, ok: () => boolean): Promise<void> => {
    for (let i = 0; !ok(); i++) {
      if (i === 500) assert.fail(`never: ${what}`);
      await sleep(10);
    }
  };

  it('runs once for 16 requests that find the token expired', async (t) => {
    const { c, runs } = numberedPlugin(t);
    await c.request({ path: '/first' });
    t.mock.timers.setTime(expiry(1));
    await Promise.all(Array.from({ length: 16 }, () => c.request({ path: '/expired' })));
    assert.equal(runs(), 2, 'one run for the first token, one for all 16 requests');
    assert.deepEqual(new Set(sentTo('/expired')), new Set(['Bearer tok-2']));
  });

  it('fails the requests waiting for a run that failed, and runs again for the next', async (t) => {
    const { c, runs } = numberedPlugin(t, { FAIL_RUN: '1' });
    const failed = await Promise.allSettled(
      Array.from({ length: 4 }, () => c.request({ path: '/failed' })),
    );
    assert.deepEqual(new Set(failed.map((r) => r.status)), new Set(['rejected']));
    assert.equal(runs(), 1, 'one run for all 4');
    await c.request({ path: '/next' });
    assert.equal(runs(), 2, 'the failure was not kept');
    assert.deepEqual(sentTo('/next'), ['Bearer tok-2']);
  });

  it('runs once for 16 requests refused 401 with the same token', async (t) => {
    const { c, runs } = numberedPlugin(t);
    await c.request({ path: '/first' });
    revoked.add('Bearer tok-1');
    t.after(() => {
      revoked.clear();
    });
    await Promise.all(Array.from({ length: 16 }, () => c.request({ path: '/revoked' })));
    assert.equal(runs(), 2, 'one run for the first token, one for all 16 refusals');
    assert.deepEqual(
      sentTo('/revoked').filter((a) => a !== 'Bearer tok-1'),
      Array.from({ length: 16 }, () => 'Bearer tok-2'),
    );
  });

  it('lets a 401 that arrives during a run wait for that run, not start another', async (t) => {
    const { c, runs, responses, hold, release } = numberedPlugin(t);
    seen.length = 0;
    toHold.add('/held');
    const refused = c.request({ path: '/held' });
    await eventually('the request held', () => held.length === 1);
    t.mock.timers.setTime(expiry(1));
    hold();
    const expired = c.request({ path: '/expired' });
    await eventually('a second run under way', () => runs() === 2);
    // tok-1 refused while the run for tok-2 waits.
    const answered = responses.length;
    held.shift()?.writeHead(401).end();
    await eventually('the 401 seen', () => responses.length > answered);
    await setImmediate();
    release();
    await Promise.all([refused, expired]);
    assert.equal(runs(), 2, 'the refused request waited for the run under way');
    assert.deepEqual(sentTo('/held'), ['Bearer tok-1', 'Bearer tok-2']);
    assert.deepEqual(sentTo('/expired'), ['Bearer tok-2']);
  });

  it('lets a 401 to a token already replaced reuse the new one', async (t) => {
    const { c, runs } = numberedPlugin(t);
    seen.length = 0;
    toHold.add('/held');
    const refused = c.request({ path: '/held' });
    await eventually('the request held', () => held.length === 1);
    t.mock.timers.setTime(expiry(1));
    await c.request({ path: '/expired' });
    held.shift()?.writeHead(401).end();
    await refused;
    assert.equal(runs(), 2, 'no run for a refusal of tok-1 once tok-2 is held');
    assert.deepEqual(sentTo('/held'), ['Bearer tok-1', 'Bearer tok-2']);
  });
});
