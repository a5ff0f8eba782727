// The operator's HTTP endpoints: /metrics, /healthz (the process serves), /readyz (caches
// synced), and a plain 404 elsewhere. `?verbose` lists the individual checks, as the Kubernetes components do.
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';

// Required, not imported: an ES import of node:http builds its namespace, which reads the lazy
// WebSocket exports and so loads Node's bundled undici, about 12 MB of resident memory for a
// client this server never uses (docs/benchmark.md, "Where the memory goes").
const { createServer } = createRequire(import.meta.url)('node:http') as typeof import('node:http');

/** True passes; false fails; a string fails and says why (what is failing, named). */
export type Check = () => boolean | string;

export interface HttpServerOptions {
  port: number;
  /** Named readiness checks: all must pass for /readyz to answer 200. */
  readiness: Record<string, Check>;
  /** Renders the metrics exposition for an Accept header. */
  metrics: (accept: string | undefined) => Promise<{ contentType: string; body: string }>;
}

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

export async function startHttpServer(options: HttpServerOptions): Promise<RunningServer> {
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const verbose = url.searchParams.has('verbose');
    const reply = (code: number, body: string): void => {
      res.writeHead(code, { 'content-type': 'text/plain; charset=utf-8' }).end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      reply(405, 'method not allowed\n');
      return;
    }
    switch (url.pathname) {
      case '/healthz':
      case '/livez':
        reply(200, verbose ? '[+]ping ok\nhealthz check passed\n' : 'ok');
        return;
      case '/readyz': {
        const results = Object.entries(options.readiness).map(
          ([name, check]) => [name, check()] as const,
        );
        const ok = results.every(([, result]) => result === true);
        const detail = results.map(([name, result]) =>
          result === true
            ? `[+]${name} ok`
            : `[-]${name} failed${typeof result === 'string' ? `: ${result}` : ''}`,
        );
        if (verbose || !ok)
          reply(ok ? 200 : 503, `${detail.join('\n')}\nreadyz check ${ok ? 'passed' : 'failed'}\n`);
        else reply(200, 'ok');
        return;
      }
      case '/metrics':
        options.metrics(req.headers.accept).then(
          ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType }).end(body),
          (err: unknown) => {
            reply(500, `metrics: ${err instanceof Error ? err.message : String(err)}\n`);
          },
        );
        return;
      default:
        reply(
          404,
          `404 not found: ${url.pathname}\nendpoints: /metrics, /healthz, /livez, /readyz\n`,
        );
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, () => {
      resolve();
    });
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
