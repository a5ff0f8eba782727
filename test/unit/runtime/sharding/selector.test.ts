// The shardSelector as the API server parses it (k8s.io/apiserver v0.36.3, sharding/parser.go):
// the strings of its parser_test.go round trips come out of our ranges unchanged, every selector
// we write is in its grammar (16 lowercase hex digits a bound, 2^64 alone with 17, start below
// end, terms joined by ' || '), and matches() keeps what its selector.go Matches keeps.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fnv1a64 } from '../../../../src/runtime/sharding/hash.ts';
import {
  HASH_SPACE,
  matches,
  mergeRanges,
  shardSelector,
  type HashRange,
} from '../../../../src/runtime/sharding/selector.ts';

const HALF = 1n << 63n;
const range = (start: bigint, end: bigint): HashRange => ({ start, end });
const term = (start: string, end: string): string =>
  `shardRange(object.metadata.uid, '${start}', '${end}')`;

/** A term of the parser's grammar, as its extractHexLiteral accepts bounds. */
const BOUND = "'0x(?:[0-9a-f]{16}|10000000000000000)'";
const TERM = new RegExp(`^shardRange\\(object\\.metadata\\.uid, (${BOUND}), (${BOUND})\\)$`);

describe('shardSelector', () => {
  it('writes parser_test.go’s round trips', () => {
    assert.equal(
      shardSelector([range(0n, HALF)]),
      "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')",
    );
    assert.equal(
      shardSelector([range(HALF, HASH_SPACE)]),
      "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')",
    );
    assert.equal(
      shardSelector([range(0n, HASH_SPACE)]),
      "shardRange(object.metadata.uid, '0x0000000000000000', '0x10000000000000000')",
    );
  });

  it('pads every bound to 16 digits, in lowercase, and writes 2^64 with 17', () => {
    assert.equal(
      shardSelector([range(0xan, 0xfn), range(0n, 5n)]),
      `${term('0x0000000000000000', '0x0000000000000005')} || ${term('0x000000000000000a', '0x000000000000000f')}`,
    );
    assert.equal(
      shardSelector([range(0xffffffffffffffffn, HASH_SPACE)]),
      term('0xffffffffffffffff', '0x10000000000000000'),
    );
  });

  it('joins ranges that touch or overlap: parser_test.go’s two and three terms select as one', () => {
    assert.equal(
      shardSelector([range(0n, HALF), range(HALF, HASH_SPACE)]),
      term('0x0000000000000000', '0x10000000000000000'),
    );
    assert.equal(
      shardSelector([range(0n, 5n), range(5n, 0xan), range(0xan, 0xfn)]),
      term('0x0000000000000000', '0x000000000000000f'),
    );
    assert.deepEqual(mergeRanges([range(4n, 9n), range(0n, 6n), range(8n, 12n)]), [range(0n, 12n)]);
  });

  it('writes only what the parser accepts, terms in order and apart', () => {
    const bound = fc.bigInt({ min: 0n, max: HASH_SPACE });
    const ranges = fc.array(
      fc.tuple(bound, bound).filter(([a, b]) => a !== b),
      { minLength: 1, maxLength: 12 },
    );
    fc.assert(
      fc.property(ranges, (pairs) => {
        const selector = shardSelector(pairs.map(([a, b]) => (a < b ? range(a, b) : range(b, a))));
        let previousEnd = -1n;
        for (const text of selector.split(' || ')) {
          const [, start = '', end = ''] = TERM.exec(text) ?? [];
          assert.ok(start && end, `not in the grammar: ${text}`);
          const [s, e] = [BigInt(start.slice(1, -1)), BigInt(end.slice(1, -1))];
          assert.ok(s < e, `start not below end: ${text}`);
          assert.ok(s > previousEnd, `overlaps or touches the term before: ${selector}`);
          previousEnd = e;
        }
      }),
      { numRuns: 500 },
    );
  });

  it('refuses what the server would: no range, an empty or reversed one, beyond 2^64', () => {
    assert.throws(() => shardSelector([]), /at least one hash range/);
    assert.throws(() => shardSelector([range(HALF, HALF)]), RangeError);
    assert.throws(() => shardSelector([range(HALF, 0n)]), RangeError);
    assert.throws(() => shardSelector([range(0n, HASH_SPACE + 1n)]), RangeError);
    assert.throws(() => shardSelector([range(-1n, HALF)]), RangeError);
  });
});

describe('matches', () => {
  const uid = 'test-uid-123';
  const hash = fnv1a64(uid); // 0xd0ba679834556c0b

  it('keeps what selector_test.go’s Matches keeps', () => {
    assert.equal(matches([range(0n, HASH_SPACE)], uid), true, 'full range');
    assert.equal(matches([range(hash, HASH_SPACE)], uid), true, 'hash in range');
    assert.equal(matches([range(0xffffffffffffffffn, HASH_SPACE)], uid), false, 'below start');
    assert.equal(matches([range(0n, 1n)], uid), false, 'at or above end');
  });

  it('includes the start and excludes the end', () => {
    assert.equal(matches([range(hash, hash + 1n)], uid), true);
    assert.equal(matches([range(0n, hash)], uid), false);
    assert.equal(matches([range(hash + 1n, HASH_SPACE)], uid), false);
    assert.equal(matches([range(0n, hash), range(hash, hash + 1n)], uid), true, 'any of several');
  });

  it('keeps the same objects once ranges are merged', () => {
    const bound = fc.bigInt({ min: 0n, max: HASH_SPACE });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(bound, bound).filter(([a, b]) => a < b)),
        fc.uuid(),
        (pairs, id) => {
          const ranges = pairs.map(([a, b]) => range(a, b));
          assert.equal(matches(mergeRanges(ranges), id), matches(ranges, id));
        },
      ),
      { numRuns: 500 },
    );
  });
});
