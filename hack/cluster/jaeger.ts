// A real trace backend for tests and the benchmark: Jaeger v2 (the OpenTelemetry Collector with Jaeger's storage and
// query extensions), built from Go modules by hack/tools/build.sh, receiving OTLP over gRPC and
// HTTP on loopback and keeping traces in memory. Tests read back what it received through its
// query API, as a person would in the Jaeger UI.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { toolsBinDir } from './cluster.ts';
import { freePorts, startProcess, stopProcess, tail } from './process.ts';

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  tags: { key: string; type: string; value: unknown }[];
}

export interface Jaeger {
  /** OTLP/gRPC endpoint, for --otlp-protocol=grpc. */
  grpcEndpoint: string;
  /** OTLP/HTTP base URL, for --otlp-protocol=http/json. */
  httpEndpoint: string;
  /** Every span of every trace of `service` that has an `operation` span. */
  traces(service: string, operation: string): Promise<JaegerSpan[][]>;
  stop(): Promise<void>;
}

export function tag(span: JaegerSpan, key: string): unknown {
  return span.tags.find((t) => t.key === key)?.value;
}

export async function startJaeger(): Promise<Jaeger> {
  const [grpc, http, query, queryGrpc] = (await freePorts(4)) as [number, number, number, number];
  const dir = mkdtempSync(join(tmpdir(), 'echo-jaeger-'));
  const config = join(dir, 'config.yaml');
  // The all-in-one defaults, minus what a test does not need (remote sampling, the collector's own
  // metrics on :8888), on ports of our own.
  writeFileSync(
    config,
    `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: { level: none }
    logs: { level: warn }
extensions:
  jaeger_storage:
    backends:
      memory_store: { memory: { max_traces: 100000 } }
  jaeger_query:
    storage: { traces: memory_store }
    http: { endpoint: 127.0.0.1:${String(query)} }
    grpc: { endpoint: 127.0.0.1:${String(queryGrpc)} }
receivers:
  otlp:
    protocols:
      grpc: { endpoint: 127.0.0.1:${String(grpc)} }
      http: { endpoint: 127.0.0.1:${String(http)} }
exporters:
  jaeger_storage_exporter: { trace_storage: memory_store }
`,
  );
  const command = join(toolsBinDir(), 'jaeger');
  const log = join(dir, 'jaeger.log');
  const proc = startProcess({
    name: 'jaeger',
    command,
    args: [`--config=file:${config}`],
    logFile: log,
    detached: false,
  });
  const api = `http://127.0.0.1:${String(query)}/api`;
  const stop = async (): Promise<void> => {
    await stopProcess(proc.pid, command);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 30_000;
    while (
      !(await fetch(`${api}/services`).then(
        (r) => r.ok,
        () => false,
      ))
    ) {
      if (proc.exit) throw new Error(`jaeger exited:\n${tail(log)}`);
      if (Date.now() > deadline) throw new Error(`jaeger did not answer in 30 s:\n${tail(log)}`);
      await sleep(100);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    grpcEndpoint: `http://127.0.0.1:${String(grpc)}`,
    httpEndpoint: `http://127.0.0.1:${String(http)}`,
    traces: async (service, operation) => {
      const params = new URLSearchParams({ service, operation, limit: '1000', lookback: '1h' });
      const res = await fetch(`${api}/traces?${params.toString()}`);
      if (!res.ok) throw new Error(`Jaeger query: ${String(res.status)} ${await res.text()}`);
      const body = (await res.json()) as { data: { spans: JaegerSpan[] }[] | null };
      return (body.data ?? []).map((t) => t.spans);
    },
    stop,
  };
}
