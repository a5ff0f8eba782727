// Watch lines cut from chunks as the network delivers them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LineSplitter } from '../../../src/kube/lines.ts';

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
});
