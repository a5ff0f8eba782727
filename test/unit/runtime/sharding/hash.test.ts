// The hash is the API server's to the bit: the vectors are what k8s.io/apimachinery v0.36.3's
// sharding.HashField answered (run by hand, Go's hash/fnv underneath), for hash_test.go's inputs,
// FNV's published ones, uids as the API server writes them, and bytes beyond ASCII; and the two
// 32-bit halves agree with plain BigInt FNV-1a on any string.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { fnv1a64, hashHex } from '../../../../src/runtime/sharding/hash.ts';

const GO_HASH_FIELD: [string, string][] = [
  // hash_test.go's inputs (it asserts only their form; these are the values).
  ['', 'cbf29ce484222325'],
  ['abc', 'e71fa2190541574b'],
  ['test-uid-12345', 'd4c53b72f9287c28'],
  ['aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee', '93754b7248a00eb9'],
  ['test', 'f9e6e6ef197c2b25'],
  ['different', '88f38c6c33321162'],
  // selector_test.go's object.
  ['test-uid-123', 'd0ba679834556c0b'],
  // FNV-1a 64's published vectors.
  ['a', 'af63dc4c8601ec8c'],
  ['foobar', '85944171f73967e8'],
  // uids, and namespaces (the other shard key).
  ['3f1c2a9e-7b4d-4c1e-9a2f-0d5e6b7c8a91', 'a4962fe91ebc34dc'],
  ['f47ac10b-58cc-4372-a567-0e02b2c3d479', '70ed2686c31eff00'],
  ['00000000-0000-0000-0000-000000000000', '7c384c6218f299f1'],
  ['default', 'ebada5168620c5fe'],
  ['kube-system', 'df65c7bc1d82b35e'],
  // UTF-8 bytes, as Go's []byte(string): two, six and four bytes.
  ['ü', '0ac20a07b71807ea'],
  ['日本', '121d7e35a6d3ce91'],
  ['🦀', 'ff9c5b38758886e6'],
  ['x'.repeat(300), 'e78ddf9f1ba85555'],
];

/** FNV-1a 64 the plain way, one BigInt multiplication a byte. */
function reference(value: string): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(value)) {
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return hash;
}

describe('FNV-1a 64', () => {
  it('hashes as the API server’s sharding.HashField', () => {
    for (const [input, expected] of GO_HASH_FIELD) {
      assert.equal(hashHex(input), expected, JSON.stringify(input));
    }
  });

  it('writes 16 lowercase hex digits, leading zeros kept', () => {
    // 'ü' hashes to 0x0ac2...: below 2^60, so its hex has a leading zero.
    assert.ok(fnv1a64('ü') < 1n << 60n);
    for (const [input] of GO_HASH_FIELD) assert.match(hashHex(input), /^[0-9a-f]{16}$/);
  });

  it('agrees with BigInt arithmetic on any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 80 }), (value) => {
        assert.equal(fnv1a64(value), reference(value));
      }),
      { numRuns: 2000 },
    );
  });
});
