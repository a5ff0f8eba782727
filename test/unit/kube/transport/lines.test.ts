// Watch lines cut from chunks as the network delivers them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  LineSplitter,
  LineTooLongError,
  MAX_LINE_LENGTH,
} from '../../../../src/kube/transport/lines.ts';

describe('LineSplitter', () => {
  it('joins an object split across many chunks, once its newline arrives', () => {
    const object = JSON.stringify({ type: 'ADDED', object: { data: 'x'.repeat(10_000) } });
    const lines = new LineSplitter();
    const seen: string[] = [];
    for (let i = 0; i < object.length; i += 7) seen.push(...lines.push(object.slice(i, i + 7)));
    assert.deepEqual(seen, [], 'nothing before the newline');
    assert.deepEqual(lines.push('\n'), [object]);
  });

  it('cuts several objects out of one chunk and keeps the rest for the next', () => {
    const lines = new LineSplitter();
    assert.deepEqual(lines.push('{"a":1}\n{"b":2}\n{"c"'), ['{"a":1}', '{"b":2}']);
    assert.deepEqual(lines.push(':3}\n\n{"d":4}\n'), ['{"c":3}', '', '{"d":4}']);
    assert.deepEqual(lines.push(''), []);
  });

  it('handles a newline that ends or starts a chunk', () => {
    const lines = new LineSplitter();
    assert.deepEqual(lines.push('{"a":1}\n'), ['{"a":1}']);
    assert.deepEqual(lines.push('{"b"'), []);
    assert.deepEqual(lines.push('\n{"c":3}'), ['{"b"']);
    assert.deepEqual(lines.push('\n'), ['{"c":3}']);
  });

  it('refuses a line past its limit as soon as it is held, with or without its newline', () => {
    const lines = new LineSplitter(10);
    assert.deepEqual(lines.push('0123456789\n'), ['0123456789'], 'the limit itself is read');
    assert.deepEqual(lines.push('012345'), []);
    assert.throws(() => lines.push('6789a'), LineTooLongError, 'never ended: refused, not held');
    assert.throws(() => new LineSplitter(10).push('0123456789a\n'), /longer than 10 characters/);
  });

  it("holds no more than client-go's 16 MiB of a line", () => {
    const lines = new LineSplitter();
    const chunk = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 16; i++) lines.push(chunk);
    assert.equal(MAX_LINE_LENGTH, 16 * chunk.length);
    assert.throws(() => lines.push('x'), LineTooLongError);
  });
});
