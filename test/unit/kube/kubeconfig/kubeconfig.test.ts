import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { KubeClient } from '../../../../src/kube/client.ts';
import {
  CREDENTIAL_TTL_MS,
  KubeconfigError,
  configSource,
  loadConnection,
} from '../../../../src/kube/kubeconfig/kubeconfig.ts';

const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-test-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});

let files = 0;
/** Writes `content` (YAML when not a string) to `name` under the test directory. */
function write(content: unknown, name = `config-${String(++files)}`): string {
  const path = join(dir, name);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, typeof content === 'string' ? content : stringify(content));
  return path;
}

/**
 * A shell script that prints an ExecCredential and keeps what it was given (KUBERNETES_EXEC_INFO,
 * its arguments, $PLUGIN_ENV) in `<path>.seen`.
 */
function plugin(name: string, credential: string): string {
  const path = write(
    `#!/bin/sh\nprintf '%s\\n%s\\n%s\\n' "$KUBERNETES_EXEC_INFO" "$*" "$PLUGIN_ENV" > "$0.seen"\ncat <<'EOF'\n${credential}\nEOF\n`,
    name,
  );
  chmodSync(path, 0o755);
  return path;
}
const seenBy = (path: string): { info: unknown; args: string; env: string } => {
  const [info = '', args = '', env = ''] = readFileSync(`${path}.seen`, 'utf8').split('\n');
  return { info: JSON.parse(info), args, env };
};
const credential = (token: string, apiVersion = 'client.authentication.k8s.io/v1'): string =>
  JSON.stringify({
    apiVersion,
    kind: 'ExecCredential',
    status: { token, expirationTimestamp: '2030-01-01T00:00:00Z' },
  });

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

const refusal = (content: unknown, message: RegExp, env: NodeJS.ProcessEnv = {}): void => {
  assert.throws(
    () => loadConnection({ path: write(content), env }),
    (err: unknown) => err instanceof KubeconfigError && message.test(err.message),
    String(message),
  );
};

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

describe('configSource: controller-runtime order', () => {
  const existing = write('{}', 'exists');
  const home = join(dir, 'home');
  write('{}', 'home/.kube/config');

  it('takes the flag first, then the KUBECONFIG list', () => {
    assert.deepEqual(configSource('/flag', { KUBECONFIG: existing }, true), ['/flag']);
    assert.deepEqual(
      configSource(
        undefined,
        { KUBECONFIG: `${existing}::${join(dir, 'none')}:${existing}` },
        true,
      ),
      [existing],
    );
  });

  it('prefers in-cluster to ~/.kube/config when KUBECONFIG is unset', () => {
    assert.equal(configSource(undefined, { HOME: home }, true), 'in-cluster');
    assert.deepEqual(configSource(undefined, { HOME: home }, false), [
      join(home, '.kube', 'config'),
    ]);
  });

  it('falls back to in-cluster when no KUBECONFIG file exists, else says so', () => {
    const missing = { KUBECONFIG: join(dir, 'none'), HOME: home };
    assert.equal(configSource(undefined, missing, true), 'in-cluster');
    assert.throws(() => configSource(undefined, missing, false), /no file of KUBECONFIG exists/);
    assert.throws(
      () => configSource(undefined, { HOME: join(dir, 'nowhere') }, false),
      /no kubeconfig: pass --kubeconfig/,
    );
  });
});

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
    assert.equal(conn.proxy, undefined);
    assert.equal(conn.headers, undefined);
    assert.deepEqual((await conn.credentials()).headers, { authorization: 'Bearer abc' });
  });

  it('reads client certificate files relative to the kubeconfig', () => {
    write('CERT', 'rel/client.crt');
    write('KEY', 'rel/client.key');
    write('CAFILE', 'rel/ca.crt');
    const conn = loadConnection({
      path: write(
        kubeconfig(
          { 'client-certificate': 'client.crt', 'client-key': 'client.key' },
          { 'certificate-authority': 'ca.crt' },
        ),
        'rel/config',
      ),
    });
    assert.equal(conn.tls.cert?.toString(), 'CERT');
    assert.equal(conn.tls.key?.toString(), 'KEY');
    assert.equal(conn.tls.ca?.toString(), 'CAFILE');
  });

  it('skips TLS verification when asked, but not with a CA as well (as client-go)', () => {
    const conn = loadConnection({
      path: write(kubeconfig({ token: 't' }, { 'insecure-skip-tls-verify': true })),
    });
    assert.equal(conn.tls.rejectUnauthorized, false);
    refusal(
      kubeconfig(
        { token: 't' },
        { 'insecure-skip-tls-verify': true, 'certificate-authority-data': 'Q0E=' },
      ),
      /clusters\[0\]\.cluster: insecure-skip-tls-verify cannot be combined with certificate-authority/,
    );
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

  it('sends the impersonation of the user as headers', () => {
    const conn = loadConnection({
      path: write(
        kubeconfig({
          token: 't',
          as: 'jane',
          'as-uid': '42',
          'as-groups': ['dev', 'ops'],
          'as-user-extra': { 'scopes.example.com/reason': ['audit'] },
        }),
      ),
    });
    assert.deepEqual(conn.headers, {
      'Impersonate-User': 'jane',
      'Impersonate-Uid': '42',
      'Impersonate-Group': ['dev', 'ops'],
      'Impersonate-Extra-scopes.example.com%2Freason': ['audit'],
    });
  });

  it('takes the proxy from proxy-url, else from HTTPS_PROXY unless NO_PROXY says otherwise', () => {
    const path = write(kubeconfig({ token: 't' }, { 'proxy-url': 'http://proxy.corp:3128' }));
    const env = { HTTPS_PROXY: 'http://env-proxy:8080' };
    assert.equal(loadConnection({ path, env }).proxy?.href, 'http://proxy.corp:3128/');
    const plain = write(kubeconfig({ token: 't' }));
    assert.equal(loadConnection({ path: plain, env }).proxy?.href, 'http://env-proxy:8080/');
    assert.equal(
      loadConnection({ path: plain, env: { ...env, NO_PROXY: '10.0.0.0/8' } }).proxy,
      undefined,
    );
    refusal(
      kubeconfig({ token: 't' }, { 'proxy-url': 'socks5://proxy:1080' }),
      /clusters\[0\]\.cluster\.proxy-url: socks5 proxies are not supported/,
    );
  });

  it('merges KUBECONFIG files first-wins, each file’s paths relative to its directory', () => {
    write('CA-OF-A', 'a/ca.crt');
    write('CERT-OF-B', 'b/client.crt');
    write('KEY-OF-B', 'b/client.key');
    const first = write(
      {
        'current-context': 'b',
        clusters: [
          {
            name: 'cb',
            cluster: { server: 'https://first:6443', 'certificate-authority': 'ca.crt' },
          },
        ],
      },
      'a/config',
    );
    const second = write(
      {
        'current-context': 'a',
        contexts: [{ name: 'b', context: { cluster: 'cb', user: 'ub' } }],
        clusters: [{ name: 'cb', cluster: { server: 'https://second:6443' } }],
        users: [
          { name: 'ub', user: { 'client-certificate': 'client.crt', 'client-key': 'client.key' } },
        ],
      },
      'b/config',
    );
    const conn = loadConnection({
      env: { KUBECONFIG: `${first}::${join(dir, 'missing')}:${second}` },
    });
    assert.equal(conn.server.host, 'first:6443');
    assert.equal(conn.tls.ca?.toString(), 'CA-OF-A');
    assert.equal(conn.tls.cert?.toString(), 'CERT-OF-B');
    assert.match(conn.source, /\(context b\)$/);
  });

  it('refuses a KUBECONFIG file that exists but is broken', () => {
    const broken = write('clusters: [unclosed');
    assert.throws(
      () =>
        loadConnection({ env: { KUBECONFIG: `${write(kubeconfig({ token: 't' }))}:${broken}` } }),
      /is not valid YAML/,
    );
  });

  it('uses the pod ServiceAccount in a cluster, before ~/.kube/config', async () => {
    const sa = mkdtempSync(join(dir, 'sa-'));
    writeFileSync(join(sa, 'token'), 'pod-token');
    writeFileSync(join(sa, 'ca.crt'), 'CLUSTER-CA');
    write(kubeconfig({ token: 'home' }), 'pod-home/.kube/config');
    const conn = loadConnection({
      env: {
        HOME: join(dir, 'pod-home'),
        KUBERNETES_SERVICE_HOST: 'fd00::1',
        KUBERNETES_SERVICE_PORT: '443',
      },
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
      [
        {
          'current-context': 'x',
          contexts: [{ name: 'x', context: { cluster: 'c', user: 'nobody' } }],
          clusters: [{ name: 'c', cluster: { server: 'https://h' } }],
        },
        /names no known user \("nobody"\)/,
      ],
      [kubeconfig({ token: 't' }, { server: 'not a url' }), /server "not a url" is not a URL/],
      [
        kubeconfig({ token: 't' }, { server: undefined }),
        /clusters\[0\]\.cluster\.server must be set/,
      ],
      [
        kubeconfig({ 'client-certificate-data': 'Q0VSVA==' }),
        /users\[0\]\.user: client-certificate needs client-key/,
      ],
      [
        kubeconfig({ token: 't', tokenFile: '/t' }),
        /users\[0\]\.user sets token and tokenFile: keep one/,
      ],
      [kubeconfig({ password: 'p' }), /users\[0\]\.user\.password needs username/],
      [
        kubeconfig({ token: 't' }, { 'certificate-authority': 'no-such-ca.crt' }),
        /certificate-authority: cannot read .*no-such-ca\.crt/,
      ],
    ];
    for (const [content, message] of cases) refusal(content, message);
    assert.throws(
      () => loadConnection({ path: join(dir, 'does-not-exist') }),
      /cannot read kubeconfig/,
    );
  });

  it('refuses any field it does not support, naming it, in the entries it uses', () => {
    const cases: [unknown, RegExp][] = [
      [
        kubeconfig({ 'auth-provider': { name: 'gcp' } }),
        /users\[0\]\.user\.auth-provider is not supported: use an exec credential plugin/,
      ],
      [kubeconfig({ token: 't', 'act-as': 'x' }), /users\[0\]\.user\.act-as is not supported/],
      [
        kubeconfig({ token: 't' }, { 'ca-file': 'x' }),
        /clusters\[0\]\.cluster\.ca-file is not supported/,
      ],
      [
        kubeconfig({ token: 't' }, { 'insecure-skip-tls-verify': 'yes' }),
        /insecure-skip-tls-verify must be true or false/,
      ],
      [kubeconfig({ token: 't', 'as-groups': 'dev' }), /as-groups must be a list of strings/],
      [{ ...(kubeconfig({ token: 't' }) as object), colours: true }, /: colours is not supported/],
      [
        {
          'current-context': 'x',
          contexts: [{ name: 'x', context: { cluster: 'c', 'default-namespace': 'a' } }],
          clusters: [{ name: 'c', cluster: { server: 'https://h' } }],
        },
        /contexts\[0\]\.context\.default-namespace is not supported/,
      ],
      [
        kubeconfig({
          exec: {
            command: 'x',
            apiVersion: 'client.authentication.k8s.io/v1',
            interactiveMode: 'Never',
            timeout: 5,
          },
        }),
        /users\[0\]\.user\.exec\.timeout is not supported/,
      ],
      [
        kubeconfig({ 'as-groups': ['dev'] }),
        /users\[0\]\.user\.as-groups needs users\[0\]\.user\.as/,
      ],
    ];
    for (const [content, message] of cases) refusal(content, message);
    // An entry the context does not use is not read: someone else's user does not stop the operator.
    const unused = kubeconfig({ token: 't' }) as { users: unknown[] };
    unused.users.push({ name: 'old', user: { 'auth-provider': { name: 'gcp' } } });
    assert.doesNotThrow(() => loadConnection({ path: write(unused) }));
  });
});

describe('exec credential plugins', () => {
  const v1 = 'client.authentication.k8s.io/v1';

  it('runs the plugin with its args, its env and what it needs to know', async () => {
    const script = plugin('exec/plugin.sh', credential('tok'));
    const conn = loadConnection({
      path: write(
        kubeconfig({
          exec: {
            apiVersion: v1,
            command: './plugin.sh',
            args: ['cluster-a'],
            env: [{ name: 'PLUGIN_ENV', value: 'from-kubeconfig' }],
            interactiveMode: 'Never',
          },
        }),
        'exec/config',
      ),
    });
    const creds = await conn.credentials();
    assert.equal(creds.headers.authorization, 'Bearer tok');
    assert.equal(creds.expiresAt, Date.parse('2030-01-01T00:00:00Z'));
    const seen = seenBy(script);
    assert.equal(seen.args, 'cluster-a');
    assert.equal(seen.env, 'from-kubeconfig');
    assert.deepEqual(seen.info, {
      apiVersion: v1,
      kind: 'ExecCredential',
      spec: { interactive: false },
    });
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
              interactiveMode: 'Never',
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

  it('tells the plugin about the cluster when provideClusterInfo is set', async () => {
    const script = plugin(
      'info/plugin.sh',
      credential('tok', 'client.authentication.k8s.io/v1beta1'),
    );
    const conn = loadConnection({
      path: write(
        kubeconfig(
          {
            exec: {
              apiVersion: 'client.authentication.k8s.io/v1beta1',
              command: script,
              provideClusterInfo: true,
            },
          },
          {
            'certificate-authority-data': Buffer.from('CA').toString('base64'),
            'tls-server-name': 'kubernetes',
            'proxy-url': 'http://proxy:3128',
            extensions: [
              { name: 'client.authentication.k8s.io/exec', extension: { audience: 'cluster-a' } },
              { name: 'other', extension: { ignored: true } },
            ],
          },
        ),
      ),
    });
    await conn.credentials();
    assert.deepEqual(seenBy(script).info, {
      apiVersion: 'client.authentication.k8s.io/v1beta1',
      kind: 'ExecCredential',
      spec: {
        interactive: false,
        cluster: {
          server: 'https://10.0.0.1:6443',
          'tls-server-name': 'kubernetes',
          'certificate-authority-data': Buffer.from('CA').toString('base64'),
          'proxy-url': 'http://proxy:3128',
          config: { audience: 'cluster-a' },
        },
      },
    });
  });

  it('finds a command by name on PATH', async () => {
    plugin('bin/eks-token', credential('from-path'));
    const conn = loadConnection({
      path: write(
        kubeconfig({
          exec: { apiVersion: v1, command: 'eks-token', interactiveMode: 'IfAvailable' },
        }),
      ),
      env: { PATH: `/nonexistent:${join(dir, 'bin')}:${process.env.PATH ?? ''}` },
    });
    assert.equal((await conn.credentials()).headers.authorization, 'Bearer from-path');
  });

  it('refuses a plugin it cannot run, with the install hint when the command is missing', () => {
    const exec = (fields: Record<string, unknown>): unknown =>
      kubeconfig({
        exec: { apiVersion: v1, command: '/bin/sh', interactiveMode: 'Never', ...fields },
      });
    refusal(
      exec({
        command: 'gke-gcloud-auth-plugin',
        installHint: 'Install it with gcloud components install.',
      }),
      /exec credential plugin "gke-gcloud-auth-plugin" not found on PATH\n\nInstall it with gcloud/,
      { PATH: '/nonexistent' },
    );
    refusal(exec({ interactiveMode: 'Always' }), /exec\.interactiveMode Always needs a terminal/);
    refusal(
      exec({ interactiveMode: undefined }),
      /exec\.interactiveMode must be set with client\.authentication\.k8s\.io\/v1/,
    );
    refusal(
      exec({ interactiveMode: 'Sometimes' }),
      /interactiveMode must be Never, IfAvailable or Always, not "Sometimes"/,
    );
    refusal(
      exec({ apiVersion: 'client.authentication.k8s.io/v1alpha1' }),
      /exec\.apiVersion must be/,
    );
    refusal(exec({ command: undefined }), /exec\.command must be set/);
    refusal(exec({ env: [{ value: 'x' }] }), /exec\.env\[0\]\.name must be set/);
  });

  it('says what is wrong with what a plugin printed', async () => {
    const cases: [string, RegExp][] = [
      ['not json', /did not print an ExecCredential/],
      [
        credential('t', 'client.authentication.k8s.io/v1beta1'),
        /printed client\.authentication\.k8s\.io\/v1beta1 where its kubeconfig asks for client\.authentication\.k8s\.io\/v1/,
      ],
      [
        JSON.stringify({
          apiVersion: v1,
          kind: 'ExecCredential',
          status: { clientCertificateData: 'x', clientKeyData: 'y' },
        }),
        /gave a client certificate/,
      ],
      [JSON.stringify({ apiVersion: v1, kind: 'ExecCredential', status: {} }), /gave no token/],
    ];
    for (const [printed, message] of cases) {
      const script = plugin(`bad-${String(++files)}.sh`, printed);
      const conn = loadConnection({
        path: write(
          kubeconfig({ exec: { apiVersion: v1, command: script, interactiveMode: 'Never' } }),
        ),
      });
      await assert.rejects(conn.credentials(), message);
    }
  });
});
