// The client's connection liveness check, against a local HTTP/2 server behind a proxy that can
// make the connection go silent: a PING left unanswered drops the connection long before the
// request's own timeout (a read is then retried on a new connection), and a slow answer on a healthy connection is left alone.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createSecureServer, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createPki } from '../../../hack/cluster/pki.ts';
import { KubeClient } from '../../../src/kube/client.ts';
import { startFaultProxy, type FaultProxy } from '../../support/fault-proxy.ts';

describe('KubeClient connection liveness', () => {
  let dir: string;
  let ca: Buffer;
  let server: Http2SecureServer;
  let proxy: FaultProxy;
  const sessions = new Set<ServerHttp2Session>();
  let hangArrived: () => void = () => undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'echo-client-test-'));
    const pki = await createPki(dir);
    ca = readFileSync(pki.caCert);
    server = createSecureServer({
      cert: readFileSync(pki.servingCert),
      key: readFileSync(pki.servingKey),
    });
    server.on('session', (s) => sessions.add(s));
    server.on('stream', (stream, headers) => {
      // /slow answers after a second; /hang never does.
      if (headers[':path'] === '/hang') hangArrived();
      if (headers[':path'] !== '/slow') return;
      setTimeout(() => {
        stream.respond({ ':status': 200, 'content-type': 'application/json' });
        stream.end('{"ok":true}');
      }, 1000);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('server has no port');
    proxy = await startFaultProxy(address.port);
  });

  after(async () => {
    await proxy.close();
    for (const s of sessions) s.destroy();
    await new Promise((resolve) => server.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  /** A client through the proxy whose requests would wait a minute for their answer. */
  const client = (pingIntervalMs: number): KubeClient =>
    new KubeClient(
      {
        server: new URL(`https://127.0.0.1:${String(proxy.port)}`),
        tls: { ca, rejectUnauthorized: true },
        credentials: () => Promise.resolve({ headers: {}, expiresAt: Infinity }),
        source: 'test',
      },
      { pingIntervalMs, requestTimeoutMs: 60_000 },
    );

  /** The next request for /hang to reach the server. */
  const nextHang = (): Promise<void> => new Promise<void>((resolve) => (hangArrived = resolve));

  it(
    'drops a connection that stops answering its PINGs, failing a write on it',
    { timeout: 20_000 },
    async () => {
      const c = client(200);
      try {
        const arrived = nextHang();
        const pending = c.request({ method: 'POST', path: '/hang', body: {} });
        // Silenced once the server holds the request: the connection stays open but goes quiet.
        await arrived;
        assert.equal(proxy.silenceOpenConnections(), 1);
        await assert.rejects(pending, /connection unresponsive/);
      } finally {
        await c.close();
      }
    },
  );

  it(
    'drops a connection that stops answering its PINGs, retrying a read on a new one',
    { timeout: 20_000 },
    async () => {
      const c = client(200);
      const stop = new AbortController();
      try {
        let arrived = nextHang();
        const pending = c.request({ path: '/hang', signal: stop.signal });
        await arrived;
        arrived = nextHang();
        // The connection the test before silenced may still be counted.
        assert.ok(proxy.silenceOpenConnections() >= 1);
        // The proxy passes new connections: the retry reaches the server, which holds it too.
        await arrived;
        stop.abort();
        await assert.rejects(pending, { name: 'AbortError' });
      } finally {
        await c.close();
      }
    },
  );

  it('keeps a healthy connection that answers slowly', async () => {
    const c = client(100);
    try {
      assert.deepEqual(await c.request({ path: '/slow' }), { ok: true });
    } finally {
      await c.close();
    }
  });
});
