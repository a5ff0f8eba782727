// An HTTP/2 proxy in front of the real API server that ends TLS and forwards each request as a
// stream of its own, so a test can fault one stream while the connection stays healthy: Node
// answers the client's PINGs and every other request passes. fault-proxy.ts works a layer below,
// on whole TCP connections. The proxy reaches the API server as the cluster's admin, whatever
// the client presented.
import {
  connect,
  constants,
  createSecureServer,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeKubeconfig } from '../../hack/cluster/cluster.ts';

/** A path and query, e.g. `/api/v1/namespaces/x/configmaps?watch=true&...`. */
export type PathMatch = (path: string) => boolean;

export interface StreamProxy {
  /** An admin kubeconfig whose server is the proxy. */
  kubeconfig: string;
  /** Every request the proxy received, in order (performance.now() times). */
  requests: { method: string; path: string; at: number }[];
  /** Stops forwarding the response of every open stream whose path matches; returns how many. */
  silence(match: PathMatch): number;
  /** Ends every open stream whose path matches, cleanly; returns how many. */
  endOpen(match: PathMatch): number;
  /** From now on answers requests that match with 200 and an empty body, at once; undefined: none. */
  answerEmpty(match: PathMatch | undefined): void;
  close(): Promise<void>;
}

interface Forwarded {
  path: string;
  client: ServerHttp2Stream;
  upstream: ClientHttp2Stream;
}

/** Hop-by-hop and pseudo headers: the proxy's own sessions set their own. */
function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(':') && name !== 'connection' && name !== 'host') out[name] = value;
  }
  return out;
}

/** Sends one request on to the API server, its answer back, and tracks it in `open` meanwhile. */
function forward(
  upstream: ClientHttp2Session,
  client: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  open: Set<Forwarded>,
): void {
  const path = headers[':path'] ?? '/';
  const method = headers[':method'] ?? 'GET';
  const forwarded = upstream.request({ ':method': method, ':path': path, ...endToEnd(headers) });
  const entry = { path, client, upstream: forwarded };
  open.add(entry);
  forwarded.on('response', (answer) => {
    client.respond({ ':status': answer[':status'] ?? 502, ...endToEnd(answer) });
    forwarded.pipe(client);
  });
  forwarded.on('error', () => {
    client.close(constants.NGHTTP2_INTERNAL_ERROR);
  });
  forwarded.on('close', () => open.delete(entry));
  client.on('close', () => {
    open.delete(entry);
    forwarded.close();
  });
  client.pipe(forwarded);
}

/**
 * Starts a proxy for the local cluster in `clusterDir` (hack/cluster's layout: its CA, the API
 * server's serving certificate, which names 127.0.0.1, and the admin client certificate).
 */
export async function startStreamProxy(clusterDir: string, server: string): Promise<StreamProxy> {
  const file = (name: string): Buffer => readFileSync(join(clusterDir, name));
  const upstream: ClientHttp2Session = connect(server, {
    ca: file('ca.crt'),
    cert: file('admin.crt'),
    key: file('admin.key'),
  });
  upstream.on('error', () => undefined);
  const requests: StreamProxy['requests'] = [];
  const open = new Set<Forwarded>();
  let empty: PathMatch | undefined;
  const proxy = createSecureServer({ cert: file('apiserver.crt'), key: file('apiserver.key') });
  const sessions = new Set<ServerHttp2Session>();
  proxy.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  proxy.on('stream', (client, headers) => {
    const path = headers[':path'] ?? '/';
    requests.push({ method: headers[':method'] ?? 'GET', path, at: performance.now() });
    client.on('error', () => undefined);
    if (empty?.(path)) {
      client.respond({ ':status': 200, 'content-type': 'application/json' });
      client.end();
      return;
    }
    forward(upstream, client, headers, open);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = proxy.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  const kubeconfig = join(clusterDir, `stream-proxy-${String(address.port)}.kubeconfig`);
  await writeKubeconfig(
    kubeconfig,
    `https://127.0.0.1:${String(address.port)}`,
    join(clusterDir, 'ca.crt'),
    {
      cert: join(clusterDir, 'admin.crt'),
      key: join(clusterDir, 'admin.key'),
    },
  );
  const matching = (match: PathMatch): Forwarded[] => [...open].filter((f) => match(f.path));
  return {
    kubeconfig,
    requests,
    silence: (match) => {
      const streams = matching(match);
      for (const f of streams) {
        f.upstream.unpipe(f.client);
        f.upstream.pause();
      }
      return streams.length;
    },
    endOpen: (match) => {
      const streams = matching(match);
      for (const f of streams) {
        f.upstream.unpipe(f.client);
        f.client.end();
        f.upstream.close();
      }
      return streams.length;
    },
    answerEmpty: (match) => {
      empty = match;
    },
    close: async () => {
      for (const f of open) {
        f.client.close();
        f.upstream.close();
      }
      upstream.close();
      for (const session of sessions) session.destroy();
      await new Promise<void>((resolve) => {
        proxy.close(() => {
          resolve();
        });
      });
    },
  };
}
