import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { SpanStatusCode, context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  AlwaysOffSampler,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { createLoggers } from '../../../src/telemetry/logger.ts';
import { inSpan, sampledSpanIds } from '../../../src/telemetry/tracing.ts';

describe('tracing helpers', () => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  const tracer = provider.getTracer('test');
  const contextManager = new AsyncLocalStorageContextManager();

  before(() => {
    context.setGlobalContextManager(contextManager.enable());
  });
  after(async () => {
    contextManager.disable();
    context.disable();
    await provider.shutdown();
  });

  it('runs the function without a span when there is no tracer', async () => {
    const seen = await inSpan(
      undefined,
      () => ({ name: 'x' }),
      (span) => Promise.resolve(span),
    );
    assert.equal(seen, undefined);
  });

  it('makes nested spans and records a thrown error on the span', async () => {
    exporter.reset();
    await assert.rejects(
      inSpan(
        tracer,
        () => ({ name: 'parent', attributes: { a: 1 } }),
        () =>
          inSpan(
            tracer,
            () => ({ name: 'child' }),
            () => Promise.reject(new Error('refused')),
          ),
      ),
      /refused/,
    );
    const spans = exporter.getFinishedSpans();
    const child = spans.find((s) => s.name === 'child');
    const parent = spans.find((s) => s.name === 'parent');
    assert.ok(child && parent);
    assert.equal(child.parentSpanContext?.spanId, parent.spanContext().spanId);
    assert.equal(child.status.code, SpanStatusCode.ERROR);
    assert.equal(child.status.message, 'refused');
    assert.equal(child.events[0]?.name, 'exception');
    assert.equal(parent.attributes.a, 1);
  });

  it('puts the active sampled span in log lines, and nothing outside a span', async () => {
    const chunks: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk.toString());
        done();
      },
    });
    const log = createLoggers('info', stream, true).module('reconciler');
    let ids: ReturnType<typeof sampledSpanIds>;
    await inSpan(
      tracer,
      () => ({ name: 'reconcile' }),
      () => {
        ids = sampledSpanIds();
        log.info('inside');
        return Promise.resolve();
      },
    );
    log.info('outside');
    const [inside, outside] = chunks.map((c) => JSON.parse(c) as Record<string, unknown>);
    assert.ok(ids);
    assert.equal(inside?.trace_id, ids.trace_id);
    assert.equal(inside.span_id, ids.span_id);
    assert.equal(outside?.trace_id, undefined);
  });

  it('gives no ids for a span that was not sampled', async () => {
    const unsampled = new TracerProvider({ sampler: new AlwaysOffSampler() }).getTracer('off');
    const ids = await inSpan(
      unsampled,
      () => ({ name: 'reconcile' }),
      () => Promise.resolve(sampledSpanIds()),
    );
    assert.equal(ids, undefined);
    assert.equal(trace.getActiveSpan(), undefined);
  });
});
