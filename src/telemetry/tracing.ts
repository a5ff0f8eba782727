// Tracing helpers on the OpenTelemetry API alone: spans around work, the active span's ids for log
// lines. Without a tracer (tracing off) they do nothing; the SDK that exports spans is in
// tracing-sdk.ts, loaded only when tracing is on.
import {
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
  type SpanKind,
  type Tracer,
} from '@opentelemetry/api';

export type { Tracer };

/** The sampled span active here, for log lines and exemplars; undefined when there is none. */
export function sampledSpanIds(): { trace_id: string; span_id: string } | undefined {
  const span = trace.getActiveSpan();
  if (!span?.isRecording()) return undefined;
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

export interface SpanDescription {
  name: string;
  kind?: SpanKind;
  attributes?: Attributes;
}

/**
 * Runs `fn` inside a new active span, which ends when `fn` settles and records a thrown error.
 * Without a tracer it just runs `fn`; `describe` is called only with one, so tracing off builds
 * no span name or attributes on the hot path.
 */
export async function inSpan<T>(
  tracer: Tracer | undefined,
  describe: () => SpanDescription,
  fn: (span: Span | undefined) => Promise<T>,
): Promise<T> {
  if (!tracer) return fn(undefined);
  const { name, ...options } = describe();
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
