// An HTTP CONNECT proxy, as corporate networks put in front of clusters: it opens a TCP tunnel to
// the host and port asked for and records each one, so a test can tell that a client went through
// it. Like a real proxy it resolves names the client may not know: `addresses` maps them.
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export interface ConnectProxy {
  /** http://127.0.0.1:<port>, or https:// when started with a certificate. */
  url: string;
  /** The target (`host:port`) of every tunnel asked for, in order. */
  tunnels: string[];
  /** The Proxy-Authorization header of every CONNECT ('' when absent). */
  authorizations: string[];
  close(): Promise<void>;
}

export interface ConnectProxyOptions {
  /** Host name → address the proxy connects to instead. */
  addresses?: Record<string, string>;
  /** Serve the proxy over TLS with this certificate. */
  tls?: { cert: Buffer; key: Buffer };
  /** Answer every CONNECT with this status instead of opening the tunnel. */
  refuseWith?: number;
}

export async function startConnectProxy(options: ConnectProxyOptions = {}): Promise<ConnectProxy> {
  const tunnels: string[] = [];
  const authorizations: string[] = [];
  const open = new Set<Socket | Duplex>();
  const server = options.tls ? createHttpsServer(options.tls) : createHttpServer();
  server.on('connect', (req: IncomingMessage, client: Duplex, head: Buffer) => {
    const target = req.url ?? '';
    tunnels.push(target);
    authorizations.push(req.headers['proxy-authorization'] ?? '');
    open.add(client);
    client.on('error', () => client.destroy()).on('close', () => open.delete(client));
    if (options.refuseWith) {
      client.end(`HTTP/1.1 ${String(options.refuseWith)} Refused\r\ncontent-length: 0\r\n\r\n`);
      return;
    }
    const [, host = '', port = ''] = /^\[?(.+?)\]?:(\d+)$/.exec(target) ?? [];
    const upstream = connect(Number(port), options.addresses?.[host] ?? host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    open.add(upstream);
    upstream
      .on('error', () => client.destroy())
      .on('close', () => {
        open.delete(upstream);
        client.destroy();
      });
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    url: `${options.tls ? 'https' : 'http'}://127.0.0.1:${String(address.port)}`,
    tunnels,
    authorizations,
    close: () =>
      new Promise((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}
