// OpenTelemetry tracing: a span per reconcile with a child span per Kubernetes API call, sent over
// OTLP (gRPC or HTTP/JSON) in batches. Off unless an endpoint is configured; when off nothing is
// registered and the controller and client skip span creation altogether, so it costs nothing.
import {
  SpanKind,
  SpanStatusCode,
  context,
  trace,
  type Attributes,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter as GrpcExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { OTLPTraceExporter as HttpExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import type { OtlpProtocol } from '../config.ts';

export type { Tracer };

export interface TracingOptions {
  endpoint: string;
  protocol: OtlpProtocol;
  sampleRatio: number;
  version: string;
  instance: string;
}

export interface Tracing {
  tracer: Tracer;
  /** Exports what is still batched, then stops. */
  shutdown: () => Promise<void>;
}

export const SERVICE_NAME = 'echo-operator';

export function startTracing(options: TracingOptions): Tracing {
  const exporter =
    options.protocol === 'grpc'
      ? new GrpcExporter({ url: options.endpoint })
      : // The HTTP endpoint is a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is: traces go to /v1/traces.
        new HttpExporter({ url: new URL('v1/traces', withSlash(options.endpoint)).href });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      'service.name': SERVICE_NAME,
      'service.version': options.version,
      'service.instance.id': options.instance,
    }),
    // A reconcile is sampled at the ratio; the API calls it makes follow its decision.
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(options.sampleRatio) }),
    spanProcessors: [new BatchSpanProcessor({ exporter })],
  });
  // Async-local context, so the spans and log lines of concurrent reconciles do not mix.
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  return {
    tracer: provider.getTracer(SERVICE_NAME, options.version),
    shutdown: () => provider.shutdown(),
  };
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

/** The sampled span active here, for log lines and exemplars; undefined when there is none. */
export function sampledSpanIds(): { trace_id: string; span_id: string } | undefined {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return undefined;
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

/**
 * Runs `fn` inside a new active span, which ends when `fn` settles and records a thrown error.
 * Without a tracer it just runs `fn`.
 */
export async function inSpan<T>(
  tracer: Tracer | undefined,
  name: string,
  options: { kind?: SpanKind; attributes?: Attributes },
  fn: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  if (!tracer) return fn(undefined);
  return tracer.startActiveSpan(name, options, async (span) => {
    try {
      return await fn(span);
    } catch (err) {
      recordError(span, err);
      throw err;
    } finally {
      span.end();
    }
  });
}

export function recordError(span: Span, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  span.recordException(err instanceof Error ? err : message);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}
