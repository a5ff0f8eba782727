// The operator's HTTP endpoints: /metrics, /healthz (the process serves), /readyz (caches
// synced), and a plain 404 elsewhere. `?verbose` lists the individual checks, as the Kubernetes components do.
// A port serves the health endpoints, /metrics, or both; over TLS, and /metrics only to callers an
// authorizer lets through, when asked (the metrics port of controller-runtime's secure serving).
// Any pod in the cluster may reach this port (the chart's NetworkPolicy is off by default), and an
// exception out of the listener would end the process: no request, however malformed, may throw.
import type { OutgoingHttpHeaders, RequestListener, Server, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { createRequire } from 'node:module';
import type { AddressInfo, Socket } from 'node:net';

// Required, not imported: an ES import of node:http builds its namespace, which reads the lazy
// WebSocket exports and so loads Node's bundled undici, a client this server never uses
// (docs/benchmark.md, "Where the memory goes"). node:https only when a port serves TLS.
const require = createRequire(import.meta.url);
const { createServer } = require('node:http') as typeof import('node:http');

/** True passes; false fails; a string fails and says why (what is failing, named). */
export type Check = () => boolean | string;

type Exposition = Promise<{ contentType: string; body: string }>;

/** A certificate and its private key, PEM. */
export interface Certificate {
  cert: string;
  key: string;
}

/** Whether a request may read /metrics: yes, or the answer to give instead. */
export type AccessDecision =
  { allowed: true } | { allowed: false; code: 401 | 403 | 500 | 503; message: string };

/** Decides on a request's Authorization header (undefined when it sent none). Never rejects. */
export type Authorizer = (authorization: string | undefined) => Promise<AccessDecision>;

export interface HttpServerOptions {
  port: number;
  /** The IP address to listen on; empty or absent: every interface. */
  bindAddress?: string;
  /** Named readiness checks: all must pass for /readyz to answer 200. Absent: no health endpoints. */
  readiness?: Record<string, Check>;
  /** Renders the metrics exposition for an Accept header. Absent: no /metrics on this port. */
  metrics?: (accept: string | undefined) => Exposition;
  /** Who may read /metrics; absent: whoever reaches the port. */
  authorize?: Authorizer;
  /** Serves HTTPS with this certificate (RunningServer.setCertificate replaces it). */
  tls?: Certificate;
  /** Tighter bounds than `httpLimits`, for tests. */
  limits?: Partial<HttpLimits>;
}

export interface HttpLimits {
  maxHeaderSize: number;
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  connectionsCheckingIntervalMs: number;
  keepAliveTimeoutMs: number;
  idleTimeoutMs: number;
  maxConnections: number;
  maxMetricsRenders: number;
  handshakeTimeoutMs: number;
}

/** The bounds of a port that only the kubelet's probes and Prometheus need. */
const httpLimits: HttpLimits = {
  // Probes and scrapes send a few hundred bytes of headers; Node allows 16 KiB. Past it: 431.
  maxHeaderSize: 8 * 1024,
  // A probe gives up after 1 s by default and a scrape after 10 s: a client still sending its
  // headers after 5 s is holding the connection, not using it (408, closed).
  headersTimeoutMs: 5_000,
  // The whole request; none here has a body (413), so this only backs the headers' bound.
  requestTimeoutMs: 10_000,
  // How often Node looks for connections past those two: its 30 s default would let a connection
  // outstay them six times over.
  connectionsCheckingIntervalMs: 1_000,
  // Node's default, and no longer: Prometheus comes back once a scrape interval (15 s or more), so
  // a longer wait would only hold idle connections.
  keepAliveTimeoutMs: 5_000,
  // A connection with no progress either way, such as a client that stops reading its answer;
  // Node's default is never.
  idleTimeoutMs: 30_000,
  // A kubelet and a Prometheus or two hold a few connections; the bound caps the memory a flood
  // of them can take (a socket, a parser and buffers each). Past it a connection is closed at once.
  maxConnections: 256,
  // Renders of /metrics at once. Scrapes sending the same Accept header share one (one per format
  // in practice); past the bound 503, so varied Accept headers cannot queue renders on the event
  // loop that renews the lease.
  maxMetricsRenders: 4,
  // A TLS handshake not done in 5 s (Node waits 120 s) is a client holding the connection, as
  // headers not sent in 5 s are.
  handshakeTimeoutMs: 5_000,
};

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

export interface RunningTlsServer extends RunningServer {
  /** Serves `certificate` to the connections that begin from now on. */
  setCertificate(certificate: Certificate): void;
}

export async function startHttpServer(
  options: HttpServerOptions & { tls: Certificate },
): Promise<RunningTlsServer>;
export async function startHttpServer(options: HttpServerOptions): Promise<RunningServer>;
export async function startHttpServer(
  options: HttpServerOptions,
): Promise<RunningServer | RunningTlsServer> {
  const limits = { ...httpLimits, ...options.limits };
  // Requests the parser refuses (malformed, headers too large, too slow) never reach the handler:
  // Node's default clientError handling answers 400, 431 or 408 and closes the connection.
  const listener = handler(options, limits.maxMetricsRenders);
  const httpOptions = {
    maxHeaderSize: limits.maxHeaderSize,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    connectionsCheckingInterval: limits.connectionsCheckingIntervalMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
  };
  let tlsServer: HttpsServer | undefined;
  if (options.tls) {
    const https = require('node:https') as typeof import('node:https');
    tlsServer = https.createServer(
      { ...httpOptions, ...options.tls, handshakeTimeout: limits.handshakeTimeoutMs },
      listener,
    );
    // A failed handshake (garbage, plain HTTP, a client refusing the certificate, a timeout):
    // Node destroys the socket; listening says so here rather than leaving it to a default.
    tlsServer.on('tlsClientError', (_err: Error, socket: Socket) => {
      socket.destroy();
    });
  }
  const server: Server = tlsServer ?? createServer(httpOptions, listener);
  // A client asking before it sends a body gets its 413 at once, not Node's 100 Continue.
  server.on('checkContinue', listener);
  server.setTimeout(limits.idleTimeoutMs);
  server.maxConnections = limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const host = options.bindAddress ? { host: options.bindAddress } : {};
    server.listen({ port: options.port, ...host }, () => {
      resolve();
    });
  });
  const running: RunningServer = {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
  const secure = tlsServer;
  if (!secure) return running;
  return {
    ...running,
    setCertificate: (certificate) => {
      secure.setSecureContext(certificate);
    },
  };
}

function handler(options: HttpServerOptions, maxMetricsRenders: number): RequestListener {
  const metrics = options.metrics && sharedRenders(options.metrics, maxMetricsRenders);
  return (req, res) => {
    try {
      const reply = (code: number, body: string, headers: OutgoingHttpHeaders = {}): void => {
        res.writeHead(code, { ...headers, 'content-type': 'text/plain; charset=utf-8' }).end(body);
      };
      // A body is never read: the connection closes after the answer instead.
      const hasBody =
        req.headers['transfer-encoding'] !== undefined ||
        Number(req.headers['content-length'] ?? 0) !== 0;
      if (hasBody) res.setHeader('connection', 'close');
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        reply(405, 'method not allowed\n', { allow: 'GET, HEAD' });
        return;
      }
      if (hasBody) {
        reply(413, 'this server takes no request body\n');
        return;
      }
      const target = requestTarget(req.url ?? '/');
      if (!target) {
        reply(400, 'bad request target: a path such as /healthz\n');
        return;
      }
      const verbose = target.query.has('verbose');
      const { readiness } = options;
      if (readiness && (target.path === '/healthz' || target.path === '/livez')) {
        reply(200, verbose ? '[+]ping ok\nhealthz check passed\n' : 'ok');
      } else if (readiness && target.path === '/readyz') {
        const [code, body] = readyz(readiness, verbose);
        reply(code, body);
      } else if (metrics && target.path === '/metrics') {
        const serve = (): void => {
          const rendering = metrics(req.headers.accept);
          if (!rendering) {
            reply(503, 'metrics: too many renders at once\n', { 'retry-after': '1' });
            return;
          }
          rendering
            .then(({ contentType, body }) => {
              res.writeHead(200, { 'content-type': contentType }).end(body);
            })
            .catch((err: unknown) => {
              fail(res, 'metrics', err);
            });
        };
        if (!options.authorize) {
          serve();
          return;
        }
        options
          .authorize(req.headers.authorization)
          .then((decision) => {
            if (decision.allowed) {
              serve();
              return;
            }
            const headers: OutgoingHttpHeaders = {
              ...(decision.code === 401 ? { 'www-authenticate': 'Bearer' } : {}),
              ...(decision.code === 503 ? { 'retry-after': '1' } : {}),
            };
            reply(decision.code, `${decision.message}\n`, headers);
          })
          .catch((err: unknown) => {
            fail(res, 'metrics authorization', err);
          });
      } else {
        const endpoints = [
          ...(metrics ? ['/metrics'] : []),
          ...(readiness ? ['/healthz', '/livez', '/readyz'] : []),
        ];
        reply(404, `404 not found: ${target.path}\nendpoints: ${endpoints.join(', ')}\n`);
      }
    } catch (err) {
      fail(res, 'internal error', err);
    }
  };
}

/** 500 naming the error; a connection whose answer had begun is closed instead. */
function fail(res: ServerResponse, what: string, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res
    .writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
    .end(`${what}: ${err instanceof Error ? err.message : String(err)}\n`);
}

/**
 * The path and query of a request target, or undefined when it is neither origin-form nor
 * absolute-form. Never throws.
 */
function requestTarget(raw: string): { path: string; query: URLSearchParams } | undefined {
  // Origin-form, read as sent: a URL parse would take `//x:99999` for a host and a port, and throw.
  if (raw.startsWith('/')) {
    const q = raw.indexOf('?');
    return q < 0
      ? { path: raw, query: new URLSearchParams() }
      : { path: raw.slice(0, q), query: new URLSearchParams(raw.slice(q + 1)) };
  }
  // Absolute-form, which an HTTP/1.1 server must take too (RFC 9112, section 3.2.2).
  const url = URL.parse(raw);
  return url && (url.protocol === 'http:' || url.protocol === 'https:')
    ? { path: url.pathname, query: url.searchParams }
    : undefined;
}

function readyz(readiness: Record<string, Check>, verbose: boolean): [number, string] {
  const results = Object.entries(readiness).map(([name, check]) => [name, check()] as const);
  const ok = results.every(([, result]) => result === true);
  if (ok && !verbose) return [200, 'ok'];
  const detail = results.map(([name, result]) =>
    result === true
      ? `[+]${name} ok`
      : `[-]${name} failed${typeof result === 'string' ? `: ${result}` : ''}`,
  );
  return [ok ? 200 : 503, `${detail.join('\n')}\nreadyz check ${ok ? 'passed' : 'failed'}\n`];
}

/**
 * Scrapes sending the same Accept header share the render in flight, whatever their number;
 * undefined when `max` different ones are already rendering.
 */
function sharedRenders(
  render: NonNullable<HttpServerOptions['metrics']>,
  max: number,
): (accept: string | undefined) => Exposition | undefined {
  const inFlight = new Map<string, Exposition>();
  return (accept) => {
    const key = accept ?? '';
    const shared = inFlight.get(key);
    if (shared) return shared;
    if (inFlight.size >= max) return undefined;
    const rendering = render(accept).finally(() => inFlight.delete(key));
    inFlight.set(key, rendering);
    return rendering;
  };
}
