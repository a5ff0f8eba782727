// The Kubernetes HTTP client: one keep-alive HTTP/2 connection for every request, credentials from
// a kubeconfig or the pod's ServiceAccount (kubeconfig.ts), typed errors, Retry-After honoured,
// and every response reported to an observer for metrics.
//
// Why not the typed APIs of @kubernetes/client-node: they open a new connection per request, their
// patch calls default to JSON patch, and importing the package costs about 85 MB of memory; an
// operator wants one pool, server-side apply and per-request accounting, which a small client over
// undici gives directly.
import { setTimeout as sleep } from 'node:timers/promises';
import { SpanKind, type Span } from '@opentelemetry/api';
import { Pool, type Dispatcher } from './undici.ts';
import { inSpan, type Tracer } from '../telemetry/tracing.ts';
import { ApiError, parseStatus } from './errors.ts';
import { loadConnection, type Connection, type Credentials } from './kubeconfig.ts';
import { tunnel, type Tunnel } from './proxy.ts';
import { APPLY_PATCH, describeRequest, type RequestInfo } from './request-info.ts';

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  /** The object; a metav1.Status for ERROR; only metadata.resourceVersion for BOOKMARK. */
  object: T;
}

export interface ResponseEvent extends RequestInfo {
  /** The HTTP method. */
  method: string;
  code: number;
  durationSeconds: number;
}

export interface ClientOptions {
  /** Called once per HTTP exchange, retries included; `code` is 0 when no response arrived. */
  onResponse?: (event: ResponseEvent) => void;
  /** Attempts for a request answered 429 or 503 (client-go retries up to 10 times). */
  maxAttempts?: number;
  /** Upper bound on one Retry-After wait, so a confused server cannot park a worker for long. */
  maxRetryAfterSeconds?: number;
  /**
   * How long a request may wait for its response headers, then for each chunk of its body. A
   * connection that went silent (a dead peer) fails the request instead of holding a worker.
   */
  requestTimeoutMs?: number;
  /**
   * How often an HTTP/2 PING checks the connection. One still unanswered when the next is due
   * drops the connection: its requests and watches fail and are retried on a new one. So a dead
   * connection is noticed within two intervals, whatever the requests' own timeouts (client-go's
   * health check: 30 s without a frame, then 15 s for the PING's answer).
   */
  pingIntervalMs?: number;
  /** When set, every request but a watch gets a client span, child of the active one. */
  tracer?: Tracer;
}

export class KubeClient {
  readonly server: URL;
  private pool: Pool;
  /** Pools retired by a GOAWAY, closing once their open watches end. */
  private readonly draining = new Set<Promise<void>>();
  private readonly connection: Connection;
  private readonly options: Required<
    Pick<
      ClientOptions,
      'maxAttempts' | 'maxRetryAfterSeconds' | 'requestTimeoutMs' | 'pingIntervalMs'
    >
  > &
    ClientOptions;
  private credentials: Promise<Credentials> | undefined;
  /** The CONNECT tunnel every connection goes through, when the kubeconfig names a proxy. */
  private readonly tunnel: Tunnel | undefined;
  private readonly allowH2: boolean;

  constructor(connection: Connection, options: ClientOptions = {}) {
    this.connection = connection;
    this.server = connection.server;
    this.options = {
      maxAttempts: 10,
      maxRetryAfterSeconds: 30,
      requestTimeoutMs: 60_000,
      pingIntervalMs: 15_000,
      ...options,
    };
    // Over HTTP/2 undici joins a header's values into one field ("a, b"), which the API server
    // would read as one group named "a, b"; HTTP/1.1 sends one field per value, as client-go does.
    this.allowH2 = !Object.values(connection.headers ?? {}).some(
      (value) => Array.isArray(value) && value.length > 1,
    );
    this.tunnel = connection.proxy
      ? tunnel(connection.proxy, connection.tls, this.allowH2)
      : undefined;
    this.pool = this.openPool();
  }

  private openPool(): Pool {
    const { ca, cert, key, servername, rejectUnauthorized } = this.connection.tls;
    const pool = new Pool(this.server.origin, {
      connect: this.tunnel?.connect ?? {
        ...(ca ? { ca } : {}),
        ...(cert ? { cert } : {}),
        ...(key ? { key } : {}),
        ...(servername ? { servername } : {}),
        rejectUnauthorized,
      },
      // HTTP/2 (the API server offers it through ALPN): every request and watch multiplexed on
      // one connection, as client-go does. A stream that times out makes undici PING the peer
      // and replace a connection that no longer answers.
      allowH2: this.allowH2,
      // A connection reset while this process was stopped (SIGSTOP) was seen to hand over its
      // last bytes, then neither fail nor answer: its requests waited out their own timeouts
      // (60 s; a watch, its 150 s idle timeout). An unanswered PING drops it sooner.
      h2Options: { pingInterval: this.options.pingIntervalMs },
      // Matches client-go's idle connection lifetime.
      keepAliveTimeout: 90_000,
      keepAliveMaxTimeout: 90_000,
    });
    // The API server sends GOAWAY after every 401 (and at random with --goaway-chance). undici
    // then queues new requests until the retired connection's last stream ends, which with a
    // watch open takes minutes; so new requests go to a fresh pool and the old one drains.
    pool.on('disconnect', (_origin, _targets, err) => {
      if (pool !== this.pool || !err.message.includes('GOAWAY')) return;
      this.pool = this.openPool();
      const draining = pool.close().catch(() => undefined);
      this.draining.add(draining);
      void draining.then(() => this.draining.delete(draining));
    });
    return pool;
  }

  /** A client for a kubeconfig file. */
  static fromFile(path: string, options: ClientOptions = {}): KubeClient {
    return new KubeClient(loadConnection({ path }), options);
  }

  /** Sends a request and returns the decoded JSON body; throws ApiError for any non-2xx answer. */
  async request<T>(opts: RequestOptions): Promise<T> {
    const text = await this.requestText(opts);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /** Sends a request and returns the body as text, for the non-JSON endpoints (/readyz, /metrics). */
  async text(opts: RequestOptions): Promise<string> {
    return this.requestText(opts);
  }

  /** Server-side apply of a whole object the caller owns. */
  async apply<T>(
    path: string,
    object: unknown,
    fieldManager: string,
    signal?: AbortSignal,
  ): Promise<T> {
    return this.request<T>({
      method: 'PATCH',
      path,
      query: { fieldManager, force: true },
      body: object,
      contentType: APPLY_PATCH,
      ...(signal ? { signal } : {}),
    });
  }

  /**
   * Opens a watch and yields its events as they arrive. `idleTimeoutMs` bounds the silence
   * between two chunks: a stream that stalls without closing (a dead peer, a stopped apiserver)
   * fails instead of hanging. Throws ApiError when the server refuses the watch.
   */
  async *watch<T>(
    opts: RequestOptions & { idleTimeoutMs: number; onOpen?: () => void },
  ): AsyncGenerator<WatchEvent<T>> {
    const query = stringifyQuery({ ...opts.query, watch: true });
    const path = this.url(opts.path, query);
    const info = describeRequest('GET', opts.path, Object.fromEntries(query));
    const started = performance.now();
    let code = 0;
    let res: Dispatcher.ResponseData;
    try {
      res = await this.pool.request({
        method: 'GET',
        path,
        headers: { accept: 'application/json', ...(await this.requestHeaders()) },
        signal: opts.signal ?? null,
        bodyTimeout: opts.idleTimeoutMs,
        headersTimeout: opts.idleTimeoutMs,
      });
      code = res.statusCode;
    } finally {
      this.options.onResponse?.({
        ...info,
        method: 'GET',
        code,
        durationSeconds: (performance.now() - started) / 1000,
      });
    }
    if (code === 401) this.credentials = undefined;
    if (code !== 200) {
      throw new ApiError(
        code,
        parseStatus(await res.body.text(), code),
        info.verb,
        info.pathTemplate,
      );
    }
    opts.onOpen?.();
    let buffered = '';
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body) {
        buffered += decoder.decode(chunk as Uint8Array, { stream: true });
        let newline: number;
        while ((newline = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, newline);
          buffered = buffered.slice(newline + 1);
          if (line.trim()) yield JSON.parse(line) as WatchEvent<T>;
        }
      }
    } finally {
      // Leaving early (abort, error, consumer break) must release the connection.
      res.body.destroy();
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.pool.close(), ...this.draining]);
    await this.tunnel?.close();
  }

  private url(path: string, query: URLSearchParams): string {
    return (
      this.server.pathname.replace(/\/$/, '') + path + (query.size ? `?${query.toString()}` : '')
    );
  }

  private async requestText(opts: RequestOptions): Promise<string> {
    const method = opts.method ?? 'GET';
    const query = stringifyQuery(opts.query);
    const contentType =
      opts.body === undefined ? undefined : (opts.contentType ?? 'application/json');
    const info = describeRequest(method, opts.path, Object.fromEntries(query), contentType);
    return inSpan(
      this.options.tracer,
      () => ({
        name: `${method} ${info.pathTemplate}`,
        kind: SpanKind.CLIENT,
        attributes: {
          'http.request.method': method,
          'url.template': info.pathTemplate,
          'server.address': this.server.hostname,
          'server.port': Number(this.server.port || 443),
          'k8s.api.verb': info.verb,
          'k8s.api.resource': info.resource,
        },
      }),
      (span) => this.send(method, this.url(opts.path, query), contentType, info, opts, span),
    );
  }

  private async send(
    method: string,
    path: string,
    contentType: string | undefined,
    info: RequestInfo,
    opts: RequestOptions,
    span: Span | undefined,
  ): Promise<string> {
    const body =
      opts.body === undefined
        ? undefined
        : typeof opts.body === 'string'
          ? opts.body
          : JSON.stringify(opts.body);

    for (let attempt = 1; ; attempt++) {
      const started = performance.now();
      const headers: Record<string, string | string[]> = {
        accept: 'application/json',
        ...(await this.requestHeaders()),
      };
      if (contentType) headers['content-type'] = contentType;
      let code = 0;
      try {
        const res = await this.pool.request({
          method,
          path,
          headers,
          body: body ?? null,
          signal: opts.signal ?? null,
          headersTimeout: this.options.requestTimeoutMs,
          bodyTimeout: this.options.requestTimeoutMs,
        });
        code = res.statusCode;
        const text = await res.body.text();
        if (code >= 200 && code < 300) return text;
        if (code === 401 && attempt === 1) {
          // Credentials may have rotated under us: reload them once before giving up.
          this.credentials = undefined;
          continue;
        }
        const retryAfter = retryAfterSeconds(res.headers, code);
        if (retryAfter !== undefined && attempt < this.options.maxAttempts) {
          await sleep(Math.min(retryAfter, this.options.maxRetryAfterSeconds) * 1000, undefined, {
            ...(opts.signal ? { signal: opts.signal } : {}),
          });
          continue;
        }
        throw new ApiError(code, parseStatus(text, code), info.verb, info.pathTemplate);
      } finally {
        span?.setAttributes({
          'http.response.status_code': code,
          'http.request.resend_count': attempt - 1,
        });
        this.options.onResponse?.({
          ...info,
          method,
          code,
          durationSeconds: (performance.now() - started) / 1000,
        });
      }
    }
  }

  /** Impersonation and credentials, for every request. */
  private async requestHeaders(): Promise<Record<string, string | string[]>> {
    return { ...this.connection.headers, ...(await this.authHeaders()) };
  }

  private async authHeaders(): Promise<Record<string, string>> {
    const current = this.credentials;
    if (current) {
      const creds = await current;
      if (creds.expiresAt > Date.now()) return creds.headers;
    }
    const next = this.connection.credentials();
    this.credentials = next;
    // A failure (an exec plugin that timed out, say) is not remembered: the next request tries again.
    next.catch(() => {
      if (this.credentials === next) this.credentials = undefined;
    });
    return (await next).headers;
  }
}

function stringifyQuery(query: RequestOptions['query']): URLSearchParams {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) params.set(k, String(v));
  return params;
}

/** Seconds to wait before retrying, for the answers where the server asks for it (429, 503). */
export function retryAfterSeconds(
  headers: Record<string, string | string[] | undefined>,
  code: number,
): number | undefined {
  if (code !== 429 && code !== 503) return undefined;
  const raw = headers['retry-after'];
  const value = Array.isArray(raw) ? raw[0] : raw;
  if (value === undefined) return code === 429 ? 1 : undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : 1;
}
