// The shapes a loaded kubeconfig hands to the rest of the client: where the server is, how to
// trust it, and the credentials to send. Apart from kubeconfig.ts so that the exec plugin, the
// credential cache and the proxy tunnel use them without importing the loader.
import type { Headers } from './impersonation.ts';

export interface TlsOptions {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  rejectUnauthorized: boolean;
}

export interface Credentials {
  headers: Record<string, string>;
  /** Epoch ms after which the credentials are read again. */
  expiresAt: number;
}

export interface Connection {
  server: URL;
  tls: TlsOptions;
  /** Authorization headers, fresh: files re-read and exec plugins re-run once they expire. */
  credentials: () => Promise<Credentials>;
  /** Sent with every request (impersonation); a list is one header field per value. */
  headers?: Headers;
  /** The proxy to reach the server through with HTTP CONNECT; none means directly. */
  proxy?: URL;
  /** Where the connection came from, for messages: a file and context, or "in-cluster". */
  source: string;
}
