// A TCP proxy in front of the real API server that can make the connections open through it go
// silent: bytes stop flowing both ways but nothing is closed. That is what a dead peer or a
// dropped NAT entry looks like to a client; only a client-side timeout notices it. It can also
// reset them: every stream on them breaks at once, as when a load balancer in between restarts.
import { connect, createServer, type Socket } from 'node:net';

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
