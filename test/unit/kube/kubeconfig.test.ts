import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { KubeClient } from '../../../src/kube/client.ts';
import {
  CREDENTIAL_TTL_MS,
  KubeconfigError,
  loadConnection,
} from '../../../src/kube/kubeconfig.ts';

const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-test-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
function write(content: unknown, name = `config-${String(++files)}`): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : stringify(content));
  return path;
}

function kubeconfig(user: Record<string, unknown>, cluster: Record<string, unknown> = {}): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'ctx',
    contexts: [{ name: 'ctx', context: { cluster: 'c', user: 'u' } }],
    clusters: [{ name: 'c', cluster: { server: 'https://10.0.0.1:6443', ...cluster } }],
    users: [{ name: 'u', user }],
  };
}

/** A server that answers `{}` and keeps the Authorization header of the last request. */
const server = createServer((req, res) => {
  lastAuthorization = req.headers.authorization;
  res.setHeader('content-type', 'application/json');
  res.end('{}');
});
let lastAuthorization: string | undefined;
let serverUrl = '';
before(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverUrl = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
});
after(() => {
  server.close();
});

/** The Authorization header a request of `client` carried. */
async function sentAuthorization(client: KubeClient): Promise<string | undefined> {
  lastAuthorization = undefined;
  await client.request({ path: '/api' });
  return lastAuthorization;
}

describe('loadConnection', () => {
  it('reads a token, the CA as data and the TLS server name', async () => {
    const conn = loadConnection({
      path: write(
        kubeconfig(
          { token: 'abc' },
          {
            'certificate-authority-data': Buffer.from('CA').toString('base64'),
            'tls-server-name': 'kubernetes',
          },
        ),
      ),
    });
    assert.equal(conn.server.href, 'https://10.0.0.1:6443/');
    assert.equal(conn.tls.ca?.toString(), 'CA');
    assert.equal(conn.tls.servername, 'kubernetes');
    assert.equal(conn.tls.rejectUnauthorized, true);
    assert.deepEqual((await conn.credentials()).headers, { authorization: 'Bearer abc' });
  });

  it('reads client certificate files relative to the kubeconfig', () => {
    write('CERT', 'client.crt');
    write('KEY', 'client.key');
    write('CAFILE', 'ca.crt');
    const conn = loadConnection({
      path: write(
        kubeconfig(
          { 'client-certificate': 'client.crt', 'client-key': 'client.key' },
          { 'certificate-authority': 'ca.crt' },
        ),
      ),
    });
    assert.equal(conn.tls.cert?.toString(), 'CERT');
    assert.equal(conn.tls.key?.toString(), 'KEY');
    assert.equal(conn.tls.ca?.toString(), 'CAFILE');
  });

  it('re-reads a token file once its credentials expire, not before', async (t) => {
    // The clock the credentials' expiry is read against, moved by the test.
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const tokenFile = write('first\n', 'token');
    const conn = loadConnection({ path: write(kubeconfig({ tokenFile }, { server: serverUrl })) });
    assert.equal((await conn.credentials()).expiresAt, 1_000_000 + CREDENTIAL_TTL_MS);
    const client = new KubeClient(conn);
    try {
      assert.equal(await sentAuthorization(client), 'Bearer first');
      write('second\n', 'token');
      t.mock.timers.tick(CREDENTIAL_TTL_MS - 1);
      assert.equal(await sentAuthorization(client), 'Bearer first', 'held until it expires');
      t.mock.timers.tick(1);
      assert.equal(await sentAuthorization(client), 'Bearer second', 're-read once expired');
    } finally {
      await client.close();
    }
  });

  it('sends basic credentials', async () => {
    const conn = loadConnection({ path: write(kubeconfig({ username: 'u', password: 'p' })) });
    assert.equal((await conn.credentials()).headers.authorization, 'Basic dTpw');
  });

  it('runs an exec plugin and keeps its token until it expires', async (t) => {
    const expiry = Date.parse('2030-01-01T00:00:00Z');
    t.mock.timers.enable({ apis: ['Date'], now: expiry - 3600_000 });
    // Each run appends a line to $RUNS and hands out a token numbered by the run, valid until
    // midnight of that day of January 2030.
    const runsFile = join(dir, 'plugin-runs');
    const plugin = write(
      '#!/bin/sh\necho run >> "$RUNS"\nn=$(wc -l < "$RUNS")\n' +
        'echo "{\\"apiVersion\\":\\"client.authentication.k8s.io/v1\\",\\"kind\\":\\"ExecCredential\\",' +
        '\\"status\\":{\\"token\\":\\"$TOKEN_PREFIX-$1-$n\\",\\"expirationTimestamp\\":\\"2030-01-0${n}T00:00:00Z\\"}}"\n',
      'plugin.sh',
    );
    chmodSync(plugin, 0o755);
    const runs = (): number => readFileSync(runsFile, 'utf8').split('\n').filter(Boolean).length;
    const conn = loadConnection({
      path: write(
        kubeconfig(
          {
            exec: {
              apiVersion: 'client.authentication.k8s.io/v1',
              command: './plugin.sh',
              args: ['cluster-a'],
              env: [
                { name: 'TOKEN_PREFIX', value: 'tok' },
                { name: 'RUNS', value: runsFile },
              ],
            },
          },
          { server: serverUrl },
        ),
      ),
    });
    const client = new KubeClient(conn);
    try {
      assert.equal(await sentAuthorization(client), 'Bearer tok-cluster-a-1');
      assert.equal(await sentAuthorization(client), 'Bearer tok-cluster-a-1');
      t.mock.timers.setTime(expiry - 1);
      assert.equal(await sentAuthorization(client), 'Bearer tok-cluster-a-1');
      assert.equal(runs(), 1, 'one run while its token is valid');
      t.mock.timers.setTime(expiry);
      assert.equal(await sentAuthorization(client), 'Bearer tok-cluster-a-2');
      assert.equal(await sentAuthorization(client), 'Bearer tok-cluster-a-2');
      assert.equal(runs(), 2, 'run again once its token expired, and only once');
    } finally {
      await client.close();
    }
  });

  it('says which exec plugin failed', async () => {
    const conn = loadConnection({
      path: write(kubeconfig({ exec: { command: '/nonexistent/plugin' } })),
    });
    await assert.rejects(conn.credentials(), /exec credential plugin \/nonexistent\/plugin failed/);
  });

  it('merges KUBECONFIG files first-wins, the current context from the first that sets one', () => {
    const first = write({
      'current-context': 'b',
      clusters: [{ name: 'cb', cluster: { server: 'https://first:6443' } }],
    });
    const second = write({
      'current-context': 'a',
      contexts: [{ name: 'b', context: { cluster: 'cb', user: 'ub' } }],
      clusters: [{ name: 'cb', cluster: { server: 'https://second:6443' } }],
      users: [{ name: 'ub', user: { token: 't' } }],
    });
    const conn = loadConnection({
      env: { KUBECONFIG: `${first}:${join(dir, 'missing')}:${second}` },
    });
    assert.equal(conn.server.host, 'first:6443');
  });

  it('uses the pod ServiceAccount in a cluster', async () => {
    const sa = mkdtempSync(join(dir, 'sa-'));
    writeFileSync(join(sa, 'token'), 'pod-token');
    writeFileSync(join(sa, 'ca.crt'), 'CLUSTER-CA');
    const conn = loadConnection({
      env: { HOME: dir, KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' },
      serviceAccountDir: sa,
    });
    assert.equal(conn.server.href, 'https://[fd00::1]/');
    assert.equal(conn.tls.ca?.toString(), 'CLUSTER-CA');
    assert.equal((await conn.credentials()).headers.authorization, 'Bearer pod-token');
  });

  it('refuses a broken kubeconfig with a message saying what is wrong', () => {
    const cases: [unknown, RegExp][] = [
      ['clusters: [unclosed', /is not valid YAML/],
      ['- a\n- b\n', /not a YAML mapping/],
      [{ contexts: [] }, /has no current-context/],
      [{ 'current-context': 'x' }, /has no context "x"/],
      [
        { 'current-context': 'x', contexts: [{ name: 'x', context: { cluster: 'nope' } }] },
        /names no known cluster \("nope"\)/,
      ],
      [kubeconfig({ token: 't' }, { server: 'not a url' }), /server "not a url" is not a URL/],
      [kubeconfig({ 'auth-provider': { name: 'gcp' } }), /auth-provider "gcp" is not supported/],
    ];
    for (const [content, message] of cases) {
      assert.throws(
        () => loadConnection({ path: write(content) }),
        (err: unknown) => err instanceof KubeconfigError && message.test(err.message),
        String(message),
      );
    }
    assert.throws(
      () => loadConnection({ path: join(dir, 'does-not-exist') }),
      /cannot read kubeconfig/,
    );
    assert.throws(() => loadConnection({ env: { HOME: dir } }), /no kubeconfig: pass --kubeconfig/);
  });
});
