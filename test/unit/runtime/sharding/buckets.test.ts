// Buckets tile the hash space; an object's bucket, its slot label and the filters of a set of
// buckets all agree with the hash ranges the API server filters on.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  DEFAULT_BUCKET_COUNT,
  SLOT_COUNT,
  bucketCountProblem,
  bucketFilter,
  bucketOf,
  bucketOfSlot,
  bucketRange,
  slotOf,
} from '../../../../src/runtime/sharding/buckets.ts';
import { fnv1a64, hashHex } from '../../../../src/runtime/sharding/hash.ts';
import { HASH_SPACE } from '../../../../src/runtime/sharding/selector.ts';

const COUNTS = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const LABEL = 'example.com/slot';

describe('buckets', () => {
  it('takes a power of two up to the 256 slots, the default among them', () => {
    for (const count of COUNTS) assert.equal(bucketCountProblem(count), undefined, String(count));
    for (const count of [0, -2, 3, 48, 1.5, 512, Number.NaN]) {
      assert.match(bucketCountProblem(count) ?? '', /power of two from 1 to 256/, String(count));
    }
    assert.equal(bucketCountProblem(DEFAULT_BUCKET_COUNT), undefined);
  });

  it('tiles the hash space, each bucket 2^64/B wide', () => {
    for (const count of COUNTS) {
      let start = 0n;
      for (let b = 0; b < count; b++) {
        const r = bucketRange(b, count);
        assert.equal(r.start, start, `bucket ${b} of ${count} starts where ${b - 1} ends`);
        assert.equal(r.end - r.start, HASH_SPACE / BigInt(count));
        start = r.end;
      }
      assert.equal(start, HASH_SPACE, `the last of ${count} ends at 2^64`);
    }
  });

  it('puts an object in the bucket whose range holds its hash, and its slot in that bucket', () => {
    fc.assert(
      fc.property(fc.uuid(), fc.constantFrom(...COUNTS), (uid, count) => {
        const bucket = bucketOf(uid, count);
        const { start, end } = bucketRange(bucket, count);
        const hash = fnv1a64(uid);
        assert.ok(start <= hash && hash < end);
        const slot = slotOf(uid);
        assert.equal(slot, hashHex(uid).slice(0, 2), 'the top byte of the hash');
        assert.equal(Math.floor((parseInt(slot, 16) * count) / SLOT_COUNT), bucket);
      }),
      { numRuns: 1000 },
    );
  });

  it('hashes the edges of the space into the first and the last bucket', () => {
    // 'test-uid-123' hashes to 0xd0ba...: bucket 26 of 32 (0xd0 = 208 = 26 × 8).
    assert.equal(bucketOf('test-uid-123', 32), 26);
    assert.equal(slotOf('test-uid-123'), 'd0');
    assert.equal(bucketOf('ü', 16), 0, '0x0ac2...');
    assert.equal(slotOf('ü'), '0a');
    assert.equal(bucketOf('🦀', 256), 255, '0xff9c...');
  });
});

describe('bucketFilter', () => {
  it('selects the held buckets as few merged ranges, and their slots', () => {
    const filter = bucketFilter([31, 0, 5, 1, 2], 32, LABEL);
    assert.equal(
      filter.shardSelector,
      "shardRange(object.metadata.uid, '0x0000000000000000', '0x1800000000000000') || " +
        "shardRange(object.metadata.uid, '0x2800000000000000', '0x3000000000000000') || " +
        "shardRange(object.metadata.uid, '0xf800000000000000', '0x10000000000000000')",
    );
    const slots = (first: number, n: number): string[] =>
      Array.from({ length: n }, (_, i) => (first + i).toString(16).padStart(2, '0'));
    const expected = [...slots(0, 24), ...slots(0x28, 8), ...slots(0xf8, 8)];
    assert.equal(filter.labelSelector, `${LABEL} in (${expected.join(',')})`);
  });

  it('selects the whole space when every bucket is held', () => {
    const all = Array.from({ length: 32 }, (_, b) => b);
    assert.equal(
      bucketFilter(all, 32, LABEL).shardSelector,
      "shardRange(object.metadata.uid, '0x0000000000000000', '0x10000000000000000')",
    );
  });

  it('keeps an object on the client, or its owned objects by label, exactly when its bucket is held', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 31 }), { minLength: 1 }),
        fc.uuid(),
        (held, uid) => {
          const filter = bucketFilter(held, 32, LABEL);
          const isHeld = held.includes(bucketOf(uid, 32));
          assert.equal(filter.matches(uid), isHeld);
          const values = /\((.*)\)$/.exec(filter.labelSelector)?.[1]?.split(',') ?? [];
          assert.equal(values.includes(slotOf(uid)), isHeld);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('stays short at worst, every other bucket of 32 held: 16 ranges, 1.3 kB', () => {
    const everyOther = Array.from({ length: 16 }, (_, i) => 2 * i);
    const { shardSelector } = bucketFilter(everyOther, 32, LABEL);
    assert.equal(shardSelector.split(' || ').length, 16);
    assert.ok(shardSelector.length < 1400, `${shardSelector.length} characters`);
  });

  it('refuses no bucket, and a bucket that is not one of the count', () => {
    assert.throws(() => bucketFilter([], 32, LABEL), /at least one hash range/);
    assert.throws(() => bucketFilter([32], 32, LABEL), /no bucket 32 of 32/);
    assert.throws(() => bucketFilter([-1], 32, LABEL), /no bucket -1 of 32/);
  });
});

describe('bucketOfSlot', () => {
  it('maps a slot label to the bucket its slot is in, as bucketOf maps the uid', () => {
    assert.equal(bucketOfSlot('00', 32), 0);
    assert.equal(bucketOfSlot('07', 32), 0);
    assert.equal(bucketOfSlot('08', 32), 1);
    assert.equal(bucketOfSlot('d0', 32), 26);
    assert.equal(bucketOfSlot('ff', 32), 31);
    assert.equal(bucketOfSlot('ff', 256), 255);
    assert.equal(bucketOfSlot('ff', 1), 0);
    fc.assert(
      fc.property(fc.uuid(), fc.constantFrom(...COUNTS), (uid, count) => {
        assert.equal(bucketOfSlot(slotOf(uid), count), bucketOf(uid, count));
      }),
      { numRuns: 500 },
    );
  });

  it('refuses what is not a slot: no label, another length, upper case, not hex', () => {
    for (const value of [undefined, '', '0', '000', '100', 'D0', 'g0', ' d0', '0x', '-1']) {
      assert.equal(bucketOfSlot(value, 32), undefined, JSON.stringify(value));
    }
  });
});
