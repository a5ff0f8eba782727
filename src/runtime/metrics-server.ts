// /metrics on a port of its own, as controller-runtime's metrics server: secure by default (TLS,
// and only callers the API server authenticates and authorizes for `get` on /metrics), or plain
// HTTP open to whoever reaches the port.
import { loadCertificate, selfSignedCertificate, watchCertificate } from '../http/certificates.ts';
import { startHttpServer, type HttpServerOptions, type RunningServer } from '../http/server.ts';
import type { Requester } from '../kube/resource.ts';
import { errorText, type Logger } from '../telemetry/logger.ts';
import { metricsAuthorizer } from './metrics-auth.ts';

export interface MetricsServeOptions {
  /** The port of /metrics alone; 0 picks one. The health endpoints stay on `serve.port`. */
  port: number;
  /**
   * TLS, and /metrics only for bearer tokens the API server authenticates (TokenReview) whose user
   * may `get` the non-resource URL /metrics (SubjectAccessReview); the Manager's identity needs
   * `create` on tokenreviews and subjectaccessreviews. False: plain HTTP, no authentication.
   */
  secure: boolean;
  /** tls.crt and tls.key, read again when they change; absent: a self-signed certificate made at start. */
  certDir?: string;
}

export interface MetricsServerContext {
  bindAddress: string;
  render: NonNullable<HttpServerOptions['metrics']>;
  client: Requester;
  log: Logger;
}

/** Starts the metrics port; rejects with a plain message when the certificate cannot be used. */
export async function startMetricsServer(
  options: MetricsServeOptions,
  { bindAddress, render, client, log }: MetricsServerContext,
): Promise<RunningServer> {
  const base = { port: options.port, bindAddress, metrics: render };
  if (!options.secure) {
    const server = await startHttpServer(base);
    log.info({ port: server.port }, 'serving /metrics over plain HTTP, without authentication');
    return server;
  }
  const { certDir } = options;
  const certificate = certDir ? await loadCertificate(certDir) : await selfSignedCertificate();
  const server = await startHttpServer({
    ...base,
    tls: certificate,
    authorize: metricsAuthorizer({ client, log }),
  });
  const stopWatching = certDir
    ? watchCertificate(
        certDir,
        certificate,
        (next) => {
          server.setCertificate(next);
          log.info({ certDir }, 'metrics certificate changed: serving the new one');
        },
        (err) => {
          log.warn(
            { certDir, err: errorText(err) },
            'metrics certificate unreadable: serving the previous one',
          );
        },
      )
    : () => undefined;
  log.info(
    { port: server.port, certificate: certDir ?? 'self-signed' },
    'serving /metrics over TLS to callers the API server allows get on /metrics',
  );
  return {
    port: server.port,
    close: async () => {
      stopWatching();
      await server.close();
    },
  };
}
