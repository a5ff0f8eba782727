// The OpenTelemetry SDK: spans batched and exported over OTLP (gRPC or HTTP/JSON). main.ts imports
// this module only when --otlp-endpoint is set, so with tracing off neither the SDK nor gRPC is
// loaded: their memory is paid only with tracing on.
import { context, trace } from '@opentelemetry/api';
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
import type { Tracer } from './tracing.ts';

const SERVICE_NAME = 'echo-operator';

/** OTLP transports: gRPC (port 4317) or protobuf-free JSON over HTTP (port 4318). */
export type OtlpProtocol = 'grpc' | 'http/json';

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
