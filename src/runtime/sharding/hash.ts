// The hash the API server shards by (KEP-5866, k8s.io/apimachinery/pkg/sharding/hash.go): 64-bit
// FNV-1a of the field's value as bytes (Go's []byte(string): UTF-8), nothing prefixed, no key
// mixed in; for `object.metadata.uid`, the 36 characters of the uid as the API server stores it.
// Ours must be the same to the bit: a client that filters what a server ignored, or stamps a
// Deployment with its Echo's slot, must put every object where the server would.
//
// Two 32-bit halves rather than BigInt arithmetic: a client-side filter hashes every event of
// the watch, and doubles multiply the halves exactly (each product is below 2^42).

const OFFSET_HIGH = 0xcbf29ce4;
const OFFSET_LOW = 0x84222325;
/** The FNV prime 2^40 + 0x1b3: multiplying by it is `h * 0x1b3 + (h << 40)`. */
const PRIME_LOW = 0x1b3;
const TWO_TO_32 = 0x1_0000_0000;

const utf8 = new TextEncoder();

/** FNV-1a 64 of `value`'s UTF-8 bytes, as the API server's sharding.HashField computes it. */
export function fnv1a64(value: string): bigint {
  let high = OFFSET_HIGH;
  let low = OFFSET_LOW;
  for (const byte of utf8.encode(value)) {
    low = (low ^ byte) >>> 0;
    const lowProduct = low * PRIME_LOW;
    // h << 40 puts the low half's bottom 24 bits at the top of the high half; the rest overflows.
    high = (high * PRIME_LOW + Math.floor(lowProduct / TWO_TO_32) + ((low << 8) >>> 0)) >>> 0;
    low = lowProduct >>> 0;
  }
  return (BigInt(high) << 32n) | BigInt(low);
}

/** The hash as sharding.HashField writes it: 16 lowercase hex digits, no 0x. */
export function hashHex(value: string): string {
  return fnv1a64(value).toString(16).padStart(16, '0');
}
