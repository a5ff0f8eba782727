// Buckets: the fixed units of work that replicas hold and hand over. Bucket i of B is the hash
// range [i·2^64/B, (i+1)·2^64/B) of FNV-1a 64(uid): contiguous, so the buckets a replica holds
// merge into few ranges and its one shardSelector stays short. An owned object (a Deployment) has
// its own uid, which says nothing of its owner's bucket, so it carries its owner's slot as a
// label: the top byte of the owner's hash, 256 slots, each bucket a run of them. A slot does not
// depend on B, so a Deployment keeps its label whatever the bucket count.
import { fnv1a64 } from './hash.ts';
import { HASH_SPACE, matches, shardSelector, type HashRange } from './selector.ts';

/**
 * 32. Shares differ by one bucket, so for R replicas the busiest carries ceil(32/R) against 32/R:
 * 3% over an even split at R = 3 (11, 11, 10), at most 12.5% up to R = 9 (25% at R = 10, where
 * 64 would give 9%). What grows with B: each held bucket is a Lease renewed every retry period, B
 * writes per retry period across the replicas (16/s at 2 s), and a replica's selector, in the
 * worst case every other bucket, B/2 ranges (1.3 kB at 32). Past 10 replicas, take 64.
 */
export const DEFAULT_BUCKET_COUNT = 32;

/** The label an owned object carries its owner's slot in: its reconciler stamps it (slotOf). */
export const SLOT_LABEL = 'sharding.example.com/slot';

/** The slots: a bucket count must divide them, so at most 256 buckets. */
export const SLOT_COUNT = 256;

/** Why `count` cannot be a bucket count, or undefined: a power of two, so that bounds are exact. */
export function bucketCountProblem(count: number): string | undefined {
  const powerOfTwo = Number.isInteger(count) && count >= 1 && (count & (count - 1)) === 0;
  if (!powerOfTwo || count > SLOT_COUNT) {
    return `the bucket count must be a power of two from 1 to ${SLOT_COUNT}, not ${count}`;
  }
  return undefined;
}

/** The hashes of `bucket` of `count`. */
export function bucketRange(bucket: number, count: number): HashRange {
  const size = HASH_SPACE / BigInt(count);
  return { start: BigInt(bucket) * size, end: BigInt(bucket + 1) * size };
}

/** The bucket of `count` that an object of this uid is in. */
export function bucketOf(uid: string, count: number): number {
  return Number((fnv1a64(uid) * BigInt(count)) / HASH_SPACE);
}

/** The label value an owned object carries for an owner of this uid: two hex digits, `00`-`ff`. */
export function slotOf(uid: string): string {
  return (fnv1a64(uid) >> 56n).toString(16).padStart(2, '0');
}

/** The bucket of `count` that a slot label value is in, or undefined for a value not a slot. */
export function bucketOfSlot(slot: string | undefined, count: number): number | undefined {
  if (slot === undefined || !/^[0-9a-f]{2}$/.test(slot)) return undefined;
  return Math.floor(parseInt(slot, 16) / (SLOT_COUNT / count));
}

/** What a replica's caches are narrowed to, for the buckets it holds. */
export interface BucketFilter {
  /** The owners' watch: its `shardSelector`. */
  shardSelector: string;
  /** The owned objects' watch: their slot label among the buckets' slots. */
  labelSelector: string;
  /** The owners' filter on the client, when the server ignores `shardSelector`. */
  matches(uid: string): boolean;
}

/** The filter of `buckets` (at least one) of `count`, owned objects labelled `slotLabel`. */
export function bucketFilter(
  buckets: Iterable<number>,
  count: number,
  slotLabel: string,
): BucketFilter {
  const held = [...new Set(buckets)].sort((a, b) => a - b);
  const outside = held.find((b) => !Number.isInteger(b) || b < 0 || b >= count);
  if (outside !== undefined) throw new RangeError(`no bucket ${outside} of ${count}`);
  const ranges = held.map((b) => bucketRange(b, count));
  const perBucket = SLOT_COUNT / count;
  const slots = held.flatMap((b) =>
    Array.from({ length: perBucket }, (_, i) => (b * perBucket + i).toString(16).padStart(2, '0')),
  );
  return {
    shardSelector: shardSelector(ranges),
    labelSelector: `${slotLabel} in (${slots.join(',')})`,
    matches: (uid) => matches(ranges, uid),
  };
}
