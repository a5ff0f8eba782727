// A TCP proxy in front of the real API server that can make the connections open through it go
// silent: bytes stop flowing both ways but nothing is closed. That is what a dead peer or a
// dropped NAT entry looks like to a client; only a client-side timeout notices it. It can also
// reset them: every stream on them breaks at once, as when a load balancer in between restarts.
//
// startHttpFaultProxy is the same in front of the API server one level up: it ends TLS with the
// API server's own certificate and forwards each request, so it can answer chosen requests in
// the API server's place (a 503 from a load balancer) or reset the connection a chosen request
// arrived on, and count the attempts of each.
import { readFile } from 'node:fs/promises';
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Pool } from 'undici';

export interface FaultProxy {
  port: number;
  /** Bytes the API server sent back through the proxy so far (TLS included): what a client read. */
  bytesToClients(): number;
  /** Silences every connection open now; later connections pass normally. */
  silenceOpenConnections(): number;
  /** Destroys every connection open now (both sides); later connections pass normally. */
  resetOpenConnections(): number;
  close(): Promise<void>;
}

export async function startFaultProxy(targetPort: number): Promise<FaultProxy> {
  const open = new Set<[Socket, Socket]>();
  let toClients = 0;
  const server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    const pair: [Socket, Socket] = [client, upstream];
    open.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    upstream.on('data', (chunk: Buffer) => {
      toClients += chunk.length;
    });
    const drop = (): void => {
      open.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    port: address.port,
    bytesToClients: () => toClients,
    silenceOpenConnections: () => {
      for (const [client, upstream] of open) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        upstream.pause();
      }
      return open.size;
    },
    resetOpenConnections: () => {
      const count = open.size;
      for (const [client, upstream] of open) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      return count;
    },
    close: () =>
      new Promise((resolve) => {
        for (const [client, upstream] of open) {
          client.destroy();
          upstream.destroy();
        }
        server.close(() => {
          resolve();
        });
      }),
  };
}

/**
 * What the HTTP proxy does to a request in the API server's place: answers it, or resets its
 * connection.
 */
export type InjectedFault = { status: number; headers?: Record<string, string> } | 'reset';

export interface FaultRule {
  /** Wall-clock arrival times (ms) of every request the rule matched, faulted or forwarded. */
  readonly arrivals: number[];
  /** Forwards the requests the rule matches from now on, still counting them. */
  stop(): void;
}

export interface HttpFaultProxy {
  port: number;
  /**
   * Gives `fault` to the next `times` requests that `matches` (method and path with its query),
   * then forwards them again; every match is counted in the returned rule. Rules added later are
   * tried first.
   */
  inject(
    matches: (method: string, path: string) => boolean,
    fault: InjectedFault,
    times?: number,
  ): FaultRule;
  close(): Promise<void>;
}

/** Headers of one hop, which a proxy does not pass on (and HTTP/2 forbids). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'host']);

const forwardable = (headers: Record<string, string | string[] | undefined>) =>
  Object.fromEntries(
    Object.entries(headers).filter(
      ([name, value]) => value !== undefined && !name.startsWith(':') && !HOP_BY_HOP.has(name),
    ),
  ) as Record<string, string | string[]>;

/**
 * An HTTPS (HTTP/2 or 1.1) proxy in front of a test cluster's API server, `server` its URL and
 * `clusterDir` the directory of its certificates: clients trust it with the cluster's CA.
 */
export async function startHttpFaultProxy(
  server: string,
  clusterDir: string,
): Promise<HttpFaultProxy> {
  const file = (name: string) => readFile(join(clusterDir, name));
  const upstream = new Pool(server, { connect: { ca: await file('ca.crt') }, allowH2: true });
  const rules: {
    matches: (m: string, p: string) => boolean;
    fault: InjectedFault;
    left: number;
    rule: FaultRule;
  }[] = [];
  // The TCP connection under each TLS one, by the client's port, to reset it.
  const sockets = new Map<number, Socket>();
  const proxy = createSecureServer(
    { cert: await file('apiserver.crt'), key: await file('apiserver.key'), allowHTTP1: true },
    (req: Http2ServerRequest, res: Http2ServerResponse) => {
      const method = req.method;
      const path = req.url;
      const hit = rules.find((r) => r.matches(method, path));
      hit?.rule.arrivals.push(Date.now());
      if (hit && hit.left > 0) {
        hit.left--;
        if (hit.fault === 'reset') {
          sockets.get(req.socket.remotePort ?? 0)?.resetAndDestroy();
          return;
        }
        res.writeHead(hit.fault.status, { 'content-type': 'text/plain', ...hit.fault.headers });
        res.end(`injected ${String(hit.fault.status)}`);
        return;
      }
      void forward(upstream, req, res);
    },
  );
  proxy.on('connection', (socket: Socket) => {
    const port = socket.remotePort ?? 0;
    sockets.set(port, socket);
    socket.on('close', () => sockets.delete(port));
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = proxy.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    port: address.port,
    inject: (matches, fault, times = Infinity) => {
      const entry = {
        matches,
        fault,
        left: times,
        rule: { arrivals: [] as number[], stop: () => undefined },
      };
      entry.rule.stop = () => {
        entry.left = 0;
      };
      rules.unshift(entry);
      return entry.rule;
    },
    close: async () => {
      for (const socket of sockets.values()) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
      await upstream.close();
    },
  };
}

/** Passes a request to the API server and its answer back, streamed both ways (watches too). */
async function forward(
  upstream: Pool,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
): Promise<void> {
  const clientGone = new AbortController();
  res.on('close', () => {
    clientGone.abort();
  });
  try {
    const answer = await upstream.request({
      method: req.method,
      path: req.url,
      headers: forwardable(req.headers),
      body: req.method === 'GET' ? null : req,
      signal: clientGone.signal,
    });
    res.writeHead(answer.statusCode, forwardable(answer.headers));
    for await (const chunk of answer.body) res.write(chunk as Uint8Array);
  } catch {
    // The API server or the client went away: end what is left of the exchange.
    if (!res.headersSent) res.writeHead(502);
  } finally {
    res.end();
  }
}
