import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLoggers, parseLogFilter } from '../../../src/telemetry/logger.ts';

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      chunks.push(chunk.toString());
      done();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe('parseLogFilter', () => {
  it('reads a default level and per-module levels', () => {
    assert.deepEqual(parseLogFilter('warn,controller=debug,kube=error'), {
      level: 'warn',
      modules: { controller: 'debug', kube: 'error' },
    });
  });
  it('refuses unknown levels', () => {
    assert.throws(() => parseLogFilter('loud'), /"loud" is not one of/);
    assert.throws(() => parseLogFilter('controller=chatty'), /"chatty" is not one of/);
  });
});

describe('createLoggers', () => {
  it('applies the level of each module', () => {
    const out = capture();
    const loggers = createLoggers('warn,controller=debug', out.stream);
    loggers.module('controller').debug('shown');
    loggers.module('informer').info('hidden');
    loggers.module('informer').warn('shown too');
    assert.deepEqual(
      out.lines().map((l) => [l.module, l.level, l.msg]),
      [
        ['controller', 'debug', 'shown'],
        ['informer', 'warn', 'shown too'],
      ],
    );
  });
  it('never writes a bearer token', () => {
    const out = capture();
    const loggers = createLoggers('info', out.stream);
    loggers.root.info(
      { headers: { authorization: 'Bearer secret-token' }, token: 'secret-token' },
      'request',
    );
    assert.doesNotMatch(JSON.stringify(out.lines()), /secret-token/);
  });
});
