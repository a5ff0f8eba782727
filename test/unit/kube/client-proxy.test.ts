// The client through an HTTP CONNECT proxy and with impersonation, against a local TLS server that
// answers with what it received: HTTP/2 inside the tunnel, one tunnel for many requests, proxy
// credentials, and each impersonated group in a header field of its own.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createSecureServer, type Http2SecureServer } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { createPki } from '../../../hack/cluster/pki.ts';
import { KubeClient } from '../../../src/kube/client.ts';
import { loadConnection } from '../../../src/kube/kubeconfig/kubeconfig.ts';
import { startConnectProxy, type ConnectProxy } from '../../support/connect-proxy.ts';

interface Seen {
  version: string;
  /** Every header field as received, lower-cased name first. */
  fields: [string, string][];
}

describe('KubeClient through a proxy, with impersonation', () => {
  let dir: string;
  let caFile: string;
  let server: Http2SecureServer;
  let port: number;
  const proxies: ConnectProxy[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'echo-client-proxy-test-'));
    const pki = await createPki(dir);
    caFile = pki.caCert;
    server = createSecureServer(
      {
        cert: readFileSync(pki.servingCert),
        key: readFileSync(pki.servingKey),
        allowHTTP1: true,
      },
      (req, res) => {
        const fields: [string, string][] = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) {
          fields.push([req.rawHeaders[i]?.toLowerCase() ?? '', req.rawHeaders[i + 1] ?? '']);
        }
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ version: req.httpVersion, fields } satisfies Seen));
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('server has no port');
    port = address.port;
  });

  after(async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  const proxy = async (options: Parameters<typeof startConnectProxy>[0]): Promise<ConnectProxy> => {
    const p = await startConnectProxy(options);
    proxies.push(p);
    return p;
  };

  /** A client for a kubeconfig with this cluster and user, loaded without proxy variables. */
  const client = async (
    cluster: Record<string, unknown>,
    user: Record<string, unknown> = { token: 't' },
  ): Promise<KubeClient> => {
    const path = join(dir, `kubeconfig-${String(Math.random()).slice(2)}`);
    await writeFile(
      path,
      stringify({
        'current-context': 'c',
        contexts: [{ name: 'c', context: { cluster: 'c', user: 'u' } }],
        clusters: [{ name: 'c', cluster: { 'certificate-authority': caFile, ...cluster } }],
        users: [{ name: 'u', user }],
      }),
    );
    return new KubeClient(loadConnection({ path, env: {} }));
  };

  const values = (seen: Seen, name: string): string[] =>
    seen.fields.filter(([n]) => n === name).map(([, v]) => v);

  it('tunnels HTTP/2 through proxy-url, one tunnel for every request, with the proxy’s credentials', async () => {
    // A name only the proxy can resolve; tls-server-name is what the certificate is checked for.
    const p = await proxy({ addresses: { 'kube.internal': '127.0.0.1' } });
    const url = new URL(p.url);
    url.username = 'op';
    url.password = 's3cret:x';
    const c = await client({
      server: `https://kube.internal:${String(port)}`,
      'proxy-url': url.href,
      'tls-server-name': 'kubernetes',
    });
    try {
      const answers = await Promise.all([1, 2, 3].map(() => c.request<Seen>({ path: '/x' })));
      for (const seen of answers) assert.equal(seen.version, '2.0');
      assert.deepEqual(p.tunnels, [`kube.internal:${String(port)}`]);
      assert.deepEqual(p.authorizations, [
        `Basic ${Buffer.from('op:s3cret:x').toString('base64')}`,
      ]);
    } finally {
      await c.close();
    }
  });

  it('fails a request, naming the proxy, when the proxy refuses the tunnel', async () => {
    const p = await proxy({ refuseWith: 403 });
    const c = await client({ server: `https://127.0.0.1:${String(port)}`, 'proxy-url': p.url });
    try {
      await assert.rejects(
        c.request({ path: '/x' }),
        new RegExp(`proxy ${p.url}: CONNECT 127\\.0\\.0\\.1:${String(port)}: answered 403`),
      );
    } finally {
      await c.close();
    }
  });

  it('sends impersonation headers; several groups on HTTP/1.1, one field each', async () => {
    const single = await client(
      { server: `https://127.0.0.1:${String(port)}` },
      {
        token: 't',
        as: 'jane',
        'as-uid': '7',
        'as-groups': ['dev'],
        'as-user-extra': { 'a/b': ['x'] },
      },
    );
    const several = await client(
      { server: `https://127.0.0.1:${String(port)}` },
      { token: 't', as: 'jane', 'as-groups': ['dev', 'ops'], 'as-user-extra': { k: ['1', '2'] } },
    );
    try {
      const one = await single.request<Seen>({ path: '/x' });
      assert.equal(one.version, '2.0');
      assert.deepEqual(values(one, 'impersonate-user'), ['jane']);
      assert.deepEqual(values(one, 'impersonate-uid'), ['7']);
      assert.deepEqual(values(one, 'impersonate-group'), ['dev']);
      assert.deepEqual(values(one, 'impersonate-extra-a%2fb'), ['x']);
      assert.deepEqual(values(one, 'authorization'), ['Bearer t']);
      const many = await several.request<Seen>({ path: '/x' });
      assert.equal(many.version, '1.1');
      assert.deepEqual(values(many, 'impersonate-group'), ['dev', 'ops']);
      assert.deepEqual(values(many, 'impersonate-extra-k'), ['1', '2']);
    } finally {
      await single.close();
      await several.close();
    }
  });
});
