// The secure metrics port: TLS with a self-signed certificate made in memory or one read from a
// directory (and read again when it changes), /metrics behind the authorizer, and hostile input on
// the TLS listener (garbage for a ClientHello, plain HTTP, a handshake never finished, a refused
// certificate, a huge Authorization header, an authorizer that throws) answered or closed, never an
// exception out of the server.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type PeerCertificate } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import {
  loadCertificate,
  selfSignedCertificate,
  watchCertificate,
} from '../../../src/http/certificates.ts';
import {
  startHttpServer,
  type Authorizer,
  type Certificate,
  type HttpServerOptions,
  type RunningTlsServer,
} from '../../../src/http/server.ts';

const metrics: NonNullable<HttpServerOptions['metrics']> = () =>
  Promise.resolve({ contentType: 'text/plain', body: 'echo_up 1\n' });

/** Lets `Bearer good` through, refuses other tokens, and wants one. */
const authorize: Authorizer = (authorization) => {
  if (authorization === undefined)
    return Promise.resolve({ allowed: false, code: 401, message: 'Unauthorized' });
  return Promise.resolve(
    authorization === 'Bearer good'
      ? { allowed: true }
      : { allowed: false, code: 403, message: 'Forbidden' },
  );
};

interface Answer {
  /** What the server sent, as latin1: empty when it closed without answering. */
  text: string;
  status: number | undefined;
  /** The certificate the server presented, if the handshake finished. */
  peer: PeerCertificate | undefined;
}

/** `request` over TLS (the server's certificate taken as is), read until the server closes. */
function overTls(port: number, request: string, waitMs = 5_000): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let peer: PeerCertificate | undefined;
    const socket = connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => {
      peer = socket.getPeerCertificate();
      socket.end(request);
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection still open after ${String(waitMs)} ms`));
    }, waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1];
      resolve({ text, status: status === undefined ? undefined : Number(status), peer });
    });
  });
}

/** Raw bytes on a plain TCP connection to the TLS port; resolves with what came back when it closes. */
function raw(port: number, bytes: string | Uint8Array, { end = true, waitMs = 5_000 } = {}) {
  return new Promise<{ text: string; ms: number }>((resolve, reject) => {
    const started = performance.now();
    const chunks: Buffer[] = [];
    const socket = tcpConnect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connection still open after ${String(waitMs)} ms`));
    }, waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text: Buffer.concat(chunks).toString('latin1'), ms: performance.now() - started });
    });
    if (bytes.length > 0) socket.write(bytes);
    if (end) socket.end();
  });
}

const get = (path: string, headers: Record<string, string> = {}): string =>
  `GET ${path} HTTP/1.1\r\nHost: x\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}Connection: close\r\n\r\n`;

/** Waits until `ok` holds: the watcher looks every 50 ms, but a loaded machine runs timers late. */
async function until(ok: () => boolean, what: string): Promise<void> {
  const deadline = performance.now() + 10_000;
  while (!ok()) {
    if (performance.now() > deadline) assert.fail(`not within 10 s: ${what}`);
    await sleep(20);
  }
}

describe('the secure metrics port', () => {
  let certificate: Certificate;
  let server: RunningTlsServer;
  const uncaught: Error[] = [];
  const monitor = (err: Error): void => {
    uncaught.push(err);
  };

  before(async () => {
    process.on('uncaughtExceptionMonitor', monitor);
    certificate = await selfSignedCertificate(['metrics.example', 'localhost']);
    server = await startHttpServer({
      port: 0,
      bindAddress: '127.0.0.1',
      metrics,
      authorize,
      tls: certificate,
      limits: { handshakeTimeoutMs: 300 },
    });
  });

  after(async () => {
    await server.close();
    process.off('uncaughtExceptionMonitor', monitor);
    assert.deepEqual(uncaught, [], 'no exception escaped the server');
  });

  it('serves /metrics over TLS with the self-signed certificate, to an allowed token only', async () => {
    const ok = await overTls(server.port, get('/metrics', { authorization: 'Bearer good' }));
    assert.equal(ok.status, 200);
    assert.match(ok.text, /\r\necho_up 1\n\r\n/);
    const presented = new X509Certificate(ok.peer?.raw ?? Buffer.alloc(0));
    assert.equal(presented.subjectAltName, 'DNS:metrics.example, DNS:localhost');
    assert.ok(presented.verify(presented.publicKey), 'self-signed');
    const anonymous = await overTls(server.port, get('/metrics'));
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.text, /\r\nwww-authenticate: Bearer\r\n/i);
    assert.equal(
      (await overTls(server.port, get('/metrics', { authorization: 'Bearer x' }))).status,
      403,
    );
  });

  it('serves neither probes nor anything else there', async () => {
    const answer = await overTls(server.port, get('/readyz'));
    assert.equal(answer.status, 404);
    assert.match(answer.text, /\nendpoints: \/metrics\n\r\n/);
  });

  it('closes a connection that sends garbage for a ClientHello, or plain HTTP', async () => {
    // At most a TLS alert record (content type 21) comes back, then the connection closes.
    const alertOrNothing = ({ text }: { text: string }): boolean =>
      text === '' || text.charCodeAt(0) === 0x15;
    const garbage = new Uint8Array(512).map((_, i) => (i * 37 + 11) % 256);
    assert.ok(alertOrNothing(await raw(server.port, garbage)));
    // A TLS record header announcing a handshake, then nonsense.
    const badRecord = Uint8Array.from([0x16, 0x03, 0x01, 0x00, 0x10, ...new Uint8Array(16)]);
    assert.ok(alertOrNothing(await raw(server.port, badRecord)));
    assert.ok(alertOrNothing(await raw(server.port, get('/metrics'))));
  });

  it('closes a connection whose handshake never finishes, after the handshake timeout', async () => {
    const silent = await raw(server.port, '', { end: false });
    assert.ok(silent.ms >= 250 && silent.ms < 3_000, `closed after ${String(silent.ms)} ms`);
    // Half a ClientHello record, then nothing.
    const half = await raw(server.port, Uint8Array.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), {
      end: false,
    });
    assert.ok(half.ms < 3_000);
  });

  it('goes on serving after a client refuses its certificate', async () => {
    const refused = await new Promise<Error>((resolve) => {
      const socket = connect({ port: server.port, host: '127.0.0.1', servername: 'localhost' });
      socket.on('error', resolve);
    });
    assert.match(refused.message, /self[- ]signed/);
    const ok = await overTls(server.port, get('/metrics', { authorization: 'Bearer good' }));
    assert.equal(ok.status, 200);
  });

  it('answers 431 to an Authorization header past 8 KiB, before any review', async () => {
    const huge = await overTls(
      server.port,
      get('/metrics', { authorization: `Bearer ${'a'.repeat(16 * 1024)}` }),
    );
    assert.equal(huge.status, 431);
  });

  it('answers 500 when the authorizer throws, and goes on serving', async () => {
    const throwing = await startHttpServer({
      port: 0,
      bindAddress: '127.0.0.1',
      metrics,
      authorize: () => Promise.reject(new Error('review exploded')),
      tls: certificate,
    });
    try {
      const answer = await overTls(throwing.port, get('/metrics', { authorization: 'Bearer t' }));
      assert.equal(answer.status, 500);
      assert.match(answer.text, /\r\nmetrics authorization: review exploded\n\r\n/);
    } finally {
      await throwing.close();
    }
  });
});

describe('a certificate directory', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'echo-metrics-certs-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const write = async (certificate: Certificate): Promise<void> => {
    await writeFile(join(dir, 'tls.key'), certificate.key);
    await writeFile(join(dir, 'tls.crt'), certificate.cert);
  };

  it('refuses missing files and a key that is not the certificate’s, with a plain message', async () => {
    await assert.rejects(
      loadCertificate(dir),
      new Error(`metrics certificate: cannot read ${join(dir, 'tls.crt')}: no such file`),
    );
    const [one, two] = await Promise.all([selfSignedCertificate(), selfSignedCertificate()]);
    await write({ cert: one.cert, key: two.key });
    await assert.rejects(
      loadCertificate(dir),
      /^Error: metrics certificate: tls\.crt and tls\.key in .* are not a usable pair: .*key values mismatch/,
    );
  });

  it('is read again when it changes: new connections get the new certificate', async () => {
    const first = await selfSignedCertificate(['first.example']);
    await write(first);
    const loaded = await loadCertificate(dir);
    const server = await startHttpServer({
      port: 0,
      bindAddress: '127.0.0.1',
      metrics,
      tls: loaded,
    });
    const errors: Error[] = [];
    let swaps = 0;
    const stop = watchCertificate(
      dir,
      loaded,
      (next) => {
        server.setCertificate(next);
        swaps++;
      },
      (err) => errors.push(err),
      50,
    );
    const presented = async (): Promise<string | undefined> =>
      new X509Certificate(
        (await overTls(server.port, get('/metrics'))).peer?.raw ?? Buffer.alloc(0),
      ).subjectAltName;
    try {
      assert.equal(await presented(), 'DNS:first.example');
      // Half-written (the key of the next, the old certificate): kept serving the first, said once.
      const second = await selfSignedCertificate(['second.example']);
      await writeFile(join(dir, 'tls.key'), second.key);
      await until(() => errors.length === 1, 'the half-written pair reported');
      await sleep(200);
      assert.equal(await presented(), 'DNS:first.example');
      assert.equal(errors.length, 1, 'said once, not at every look');
      assert.equal(swaps, 0);
      await writeFile(join(dir, 'tls.crt'), second.cert);
      await until(() => swaps === 1, 'the new pair read');
      assert.equal(await presented(), 'DNS:second.example');
    } finally {
      stop();
      await server.close();
    }
  });
});
