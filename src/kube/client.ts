// The Kubernetes HTTP client: one keep-alive HTTP/2 connection for every request, credentials from
// a kubeconfig or the pod's ServiceAccount (kubeconfig/), typed errors, retries as client-go
// makes them within one deadline per request (transport/retry.ts), and every response reported to an
// observer for metrics.
//
// Why not the typed APIs of @kubernetes/client-node: they open a new connection per request, their
// patch calls default to JSON patch, and importing the package loads the whole generated API; an
// operator wants one pool, server-side apply and per-request accounting, which a small client over
// undici gives directly.
//
// Why not undici's RetryAgent (or its retry interceptor) for the retries: it retries below this
// class, so each attempt would not reach `onResponse` (the metrics count every exchange) or the
// span's resend count; it re-dispatches to the pool it was built on, which after a GOAWAY is the
// retired one that queues new requests behind a watch; it cannot reload credentials after a 401;
// and it has no deadline across attempts. The decisions it would make are in retry.ts instead.
import { setTimeout as sleep } from 'node:timers/promises';
import { SpanKind, type Span } from '@opentelemetry/api';
import { Pool, type Dispatcher } from './transport/undici.ts';
import { VERSION } from '../version.ts';
import { inSpan, type Tracer } from '../telemetry/tracing.ts';
import { CredentialCache } from './kubeconfig/credential-cache.ts';
import { ApiError, parseStatus } from './errors.ts';
import { loadConnection } from './kubeconfig/kubeconfig.ts';
import type { Connection, Credentials } from './kubeconfig/types.ts';
import { LineSplitter } from './transport/lines.ts';
import {
  decodeStatus,
  decodeWatchEvent,
  FrameSplitter,
  PROTOBUF_MEDIA_TYPE,
  PROTOBUF_WATCH_ACCEPT,
  unwrap,
} from './protobuf/protobuf.ts';
import { tunnel, type Tunnel } from './transport/proxy.ts';
import type { WatchEvent } from './object.ts';
import { APPLY_PATCH, describeRequest, type RequestInfo } from './request-info.ts';
import {
  headersTimeoutMs,
  retryDelayMs,
  startsBeforeDeadline,
  type AttemptOutcome,
  type RetryPolicy,
} from './transport/retry.ts';

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  signal?: AbortSignal;
}

export interface WatchOptions<T> extends RequestOptions {
  /** Sets undici's own timers too (headers, then between chunks). */
  idleTimeoutMs?: number;
  onOpen?: () => void;
  onData?: () => void;
  /**
   * Asks for protobuf (served for built-in types) and decodes each event's object with this, given
   * the object's bytes out of their envelope; a server that answers in JSON is read as JSON.
   */
  protobuf?: (object: Buffer) => T;
}

/** The request of a server-side apply: forced (taking over others' fields) unless told not. */
export function applyRequest(
  path: string,
  object: unknown,
  fieldManager: string,
  options: { signal?: AbortSignal; force?: boolean } = {},
): RequestOptions {
  const { signal, force = true } = options;
  return {
    method: 'PATCH',
    path,
    query: { fieldManager, ...(force ? { force: true } : {}) },
    body: object,
    contentType: APPLY_PATCH,
    ...(signal ? { signal } : {}),
  };
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
  /** Attempts in all for a request that is retried (client-go retries up to 10 times). */
  maxAttempts?: number;
  /**
   * How long from its first attempt a request may go on being retried: no wait or attempt begins
   * past it, and the caller gets the last error. The default is the per-attempt timeout (60 s):
   * retries then hold a worker no longer than one slow answer could, and past that the
   * controller's per-key backoff takes the item while the worker serves other keys (ten 429s in
   * a row with APF's largest Retry-After would otherwise hold it for minutes). client-go leaves
   * this to the caller's context, which controller-runtime does not bound.
   */
  requestDeadlineMs?: number;
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
  /** The User-Agent of every request; by default `echo-operator/<version> (<os>/<arch>) node/<version>`. */
  userAgent?: string;
  /**
   * At most this many connections (undici opens another once a connection carries 100 streams);
   * requests past their capacity wait for a stream. Unbounded when unset. See connectionsFor().
   */
  maxConnections?: number;
}

/** undici's cap on concurrent streams per HTTP/2 connection (its maxConcurrentStreams default). */
export const STREAMS_PER_CONNECTION = 100;

/**
 * Connections enough for `watches` streams that never end plus `requests` short ones in flight at
 * once, so that neither waits for the other.
 */
export function connectionsFor(watches: number, requests: number): number {
  return Math.max(1, Math.ceil((watches + requests) / STREAMS_PER_CONNECTION));
}

/** Node's names for CPU architectures where Go's (which client-go's User-Agent uses) differ. */
const GO_ARCH: Partial<Record<string, string>> = { x64: 'amd64', ia32: '386', x32: '386' };

/** A User-Agent shaped as client-go's (`kubectl/v1.34.1 (linux/amd64) kubernetes/abc1234`). */
export function defaultUserAgent(
  version = VERSION,
  platform: string = process.platform,
  arch: string = process.arch,
  node = process.version,
): string {
  const os = platform === 'win32' ? 'windows' : platform;
  return `echo-operator/${version} (${os}/${GO_ARCH[arch] ?? arch}) node/${node}`;
}

/** A request as `send` sends it on each attempt. */
interface Exchange {
  method: string;
  path: string;
  contentType: string | undefined;
  body: string | undefined;
  info: RequestInfo;
  opts: RequestOptions;
  span: Span | undefined;
}

/** What `send` made of one attempt: the body of a 2xx, or the error and what it was. */
type Attempted =
  | { text: string }
  | { failure: Error; outcome: AttemptOutcome & { code?: number }; sent: Credentials };

export class KubeClient {
  readonly server: URL;
  private pool: Pool;
  /** Pools retired by a GOAWAY, closing once their open watches end. */
  private readonly draining = new Set<Promise<void>>();
  private readonly connection: Connection;
  private readonly options: Required<
    Pick<ClientOptions, 'requestTimeoutMs' | 'pingIntervalMs' | 'userAgent'>
  > &
    ClientOptions;
  private readonly retryPolicy: RetryPolicy;
  private readonly credentials: CredentialCache;
  /** The CONNECT tunnel every connection goes through, when the kubeconfig names a proxy. */
  private readonly tunnel: Tunnel | undefined;
  private readonly allowH2: boolean;
  private connected = 0;

  constructor(connection: Connection, options: ClientOptions = {}) {
    this.connection = connection;
    this.server = connection.server;
    this.credentials = new CredentialCache(() => connection.credentials());
    this.options = {
      requestTimeoutMs: 60_000,
      pingIntervalMs: 15_000,
      userAgent: defaultUserAgent(),
      ...options,
    };
    this.retryPolicy = {
      maxAttempts: options.maxAttempts ?? 10,
      maxRetryAfterMs: (options.maxRetryAfterSeconds ?? 30) * 1000,
      // undici's RetryHandler starts at the same half second; the cap keeps several waits
      // within the deadline.
      backoffBaseMs: 500,
      backoffCapMs: 10_000,
      deadlineMs: options.requestDeadlineMs ?? this.options.requestTimeoutMs,
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
      // The bound counts HTTP/2 streams; over HTTP/1.1 a connection carries one request at a time,
      // so bounding it would leave watches waiting for each other.
      ...(this.options.maxConnections && this.allowH2
        ? { connections: this.options.maxConnections }
        : {}),
    });
    pool.on('connect', () => this.connected++);
    pool.on('disconnect', () => this.connected--);
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

  /** Connections open to the API server now, those of pools retired by a GOAWAY included. */
  get openConnections(): number {
    return this.connected;
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

  /**
   * Server-side apply of a whole object the caller owns: with `force` (the default) it takes over
   * fields other managers set; without, a field another manager set to another value is a 409.
   */
  async apply<T>(
    path: string,
    object: unknown,
    fieldManager: string,
    options: { signal?: AbortSignal; force?: boolean } = {},
  ): Promise<T> {
    return this.request<T>(applyRequest(path, object, fieldManager, options));
  }

  /**
   * Opens a watch and yields its events as they arrive. `onData` hears every chunk: the caller
   * times the stream's silence itself (the informer's watchdog) and aborts `signal` when it runs
   * out. `idleTimeoutMs`, when given, also sets undici's own timers (headers, then between chunks).
   * Throws ApiError when the server refuses the watch.
   */
  async *watch<T>(opts: WatchOptions<T>): AsyncGenerator<WatchEvent<T>> {
    const query = stringifyQuery({ ...opts.query, watch: true });
    const path = this.url(opts.path, query);
    const info = describeRequest('GET', opts.path, Object.fromEntries(query));
    const started = performance.now();
    let code = 0;
    let sent: Credentials;
    let res: Dispatcher.ResponseData;
    try {
      sent = await this.credentials.get();
      res = await this.pool.request({
        method: 'GET',
        path,
        headers: {
          accept: opts.protobuf ? PROTOBUF_WATCH_ACCEPT : 'application/json',
          ...this.requestHeaders(sent),
        },
        signal: opts.signal ?? null,
        // 0: none. A healthy watch may be quiet for minutes; its caller knows how long.
        bodyTimeout: opts.idleTimeoutMs ?? 0,
        headersTimeout: opts.idleTimeoutMs ?? 0,
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
    if (code === 401) this.credentials.refused(sent);
    const protobuf = isProtobuf(res.headers['content-type']) ? opts.protobuf : undefined;
    if (code !== 200) {
      const status = protobuf
        ? decodeStatus(unwrap(Buffer.from(await res.body.arrayBuffer())))
        : parseStatus(await res.body.text(), code);
      throw new ApiError(code, status, info.verb, info.pathTemplate);
    }
    opts.onOpen?.();
    yield* protobuf
      ? this.protobufWatchEvents<T>(res.body, protobuf, opts)
      : this.watchEvents<T>(res.body, opts);
  }

  /** The events of an open protobuf watch: length-prefixed frames, each a WatchEvent. */
  private async *protobufWatchEvents<T>(
    body: Dispatcher.ResponseData['body'],
    decode: (object: Buffer) => T,
    opts: { signal?: AbortSignal; onData?: () => void },
  ): AsyncGenerator<WatchEvent<T>> {
    const frames = new FrameSplitter();
    for await (const event of this.bodyChunks(body, opts)) {
      for (const frame of frames.push(event)) yield decodeWatchEvent(frame, decode);
    }
  }

  /** The events of an open watch's body, one JSON object per line. */
  private async *watchEvents<T>(
    body: Dispatcher.ResponseData['body'],
    opts: { signal?: AbortSignal; onData?: () => void },
  ): AsyncGenerator<WatchEvent<T>> {
    const lines = new LineSplitter();
    const decoder = new TextDecoder();
    for await (const chunk of this.bodyChunks(body, opts)) {
      for (const line of lines.push(decoder.decode(chunk, { stream: true }))) {
        if (line.trim()) yield JSON.parse(line) as WatchEvent<T>;
      }
    }
  }

  /** A watch body's chunks as they arrive, until it ends or `opts.signal` aborts it. */
  private async *bodyChunks(
    body: Dispatcher.ResponseData['body'],
    opts: { signal?: AbortSignal; onData?: () => void },
  ): AsyncGenerator<Buffer> {
    // Ends the body on abort ourselves, not only through undici: the caller's watchdog must end
    // a stream that undici's own handling of the signal has left hanging.
    const abort = (): void => {
      body.destroy(opts.signal?.reason instanceof Error ? opts.signal.reason : undefined);
    };
    opts.signal?.addEventListener('abort', abort, { once: true });
    if (opts.signal?.aborted) abort();
    try {
      for await (const chunk of body) {
        opts.onData?.();
        yield chunk as Buffer;
      }
    } finally {
      opts.signal?.removeEventListener('abort', abort);
      // Leaving early (abort, error, consumer break) must release the connection.
      body.destroy();
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

  /** Sends a request, retrying as retry.ts rules, until an answer, a final error or the deadline. */
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
    const exchange: Exchange = { method, path, contentType, body, info, opts, span };
    const startedAt = performance.now();
    for (let attempt = 1; ; attempt++) {
      const headersTimeout = headersTimeoutMs(
        this.options.requestTimeoutMs,
        startedAt,
        performance.now(),
        this.retryPolicy,
      );
      const result = await this.attempt(exchange, attempt, headersTimeout);
      if ('text' in result) return result.text;
      if (result.outcome.code === 401 && attempt === 1) {
        // Credentials may have rotated under us: retry once with fresh ones, loaded now unless
        // another request already has.
        this.credentials.refused(result.sent);
        continue;
      }
      const delay = retryDelayMs(
        result.outcome,
        attempt,
        this.retryPolicy,
        Date.now(),
        Math.random(),
      );
      if (
        delay === undefined ||
        opts.signal?.aborted ||
        !startsBeforeDeadline(delay, startedAt, performance.now(), this.retryPolicy)
      ) {
        throw result.failure;
      }
      await sleep(delay, undefined, opts.signal ? { signal: opts.signal } : {});
    }
  }

  /** One HTTP exchange of a request, reported to the observer and the span whatever its end. */
  private async attempt(x: Exchange, attempt: number, headersTimeout: number): Promise<Attempted> {
    const started = performance.now();
    const sent = await this.credentials.get();
    const headers = this.requestHeaders(sent);
    headers.accept = 'application/json';
    if (x.contentType) headers['content-type'] = x.contentType;
    let code = 0;
    try {
      const res = await this.pool.request({
        method: x.method,
        path: x.path,
        headers,
        body: x.body ?? null,
        signal: x.opts.signal ?? null,
        headersTimeout,
        bodyTimeout: this.options.requestTimeoutMs,
      });
      code = res.statusCode;
      const text = await res.body.text();
      if (code >= 200 && code < 300) return { text };
      const retryAfter = res.headers['retry-after'];
      return {
        failure: new ApiError(code, parseStatus(text, code), x.info.verb, x.info.pathTemplate),
        sent,
        outcome: {
          method: x.method,
          code,
          retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter,
        },
      };
    } catch (error) {
      if (!(error instanceof Error)) throw error;
      return { failure: error, outcome: { method: x.method, error }, sent };
    } finally {
      x.span?.setAttributes({
        'http.response.status_code': code,
        'http.request.resend_count': attempt - 1,
      });
      this.options.onResponse?.({
        ...x.info,
        method: x.method,
        code,
        durationSeconds: (performance.now() - started) / 1000,
      });
    }
  }

  /** Who is asking, impersonation and credentials, for every request. */
  private requestHeaders(credentials: Credentials): Record<string, string | string[]> {
    return {
      'user-agent': this.options.userAgent,
      ...this.connection.headers,
      ...credentials.headers,
    };
  }
}

function stringifyQuery(query: RequestOptions['query']): URLSearchParams {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) params.set(k, String(v));
  return params;
}

function isProtobuf(contentType: string | string[] | undefined): boolean {
  const value = Array.isArray(contentType) ? contentType[0] : contentType;
  return value?.startsWith(PROTOBUF_MEDIA_TYPE) ?? false;
}
