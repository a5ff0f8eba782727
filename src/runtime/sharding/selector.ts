// KEP-5866's `shardSelector` for list and watch, written exactly as the API server parses it
// (k8s.io/apiserver/pkg/sharding/parser.go): `shardRange(object.metadata.uid, '0x<start>',
// '0x<end>')`, several joined with `||`. Each bound is 0x and exactly 16 lowercase hex digits, but
// the end of the hash space, 2^64, which is '0x10000000000000000'; the server refuses anything
// else (it compares bounds as strings, length first, so '0x80' would not mean 0x80), an empty
// selector, and a range whose start is not below its end. And the same test on the client, for a
// server that ignores the parameter: the object is in when start <= FNV-1a 64(uid) < end.
import { fnv1a64 } from './hash.ts';

/** 2^64: the end of the hash space, and the only bound written with 17 digits. */
export const HASH_SPACE = 1n << 64n;

/** The hashes from `start` (inclusive) to `end` (exclusive), within [0, 2^64]. */
export interface HashRange {
  start: bigint;
  end: bigint;
}

/** The one shard key used here: an Echo's Deployments are tied to it by label, not by their own. */
const FIELD = 'object.metadata.uid';

/** `ranges` sorted, with those that touch or overlap joined: fewer terms for the server to test. */
export function mergeRanges(ranges: readonly HashRange[]): HashRange[] {
  const merged: HashRange[] = [];
  for (const range of [...ranges].sort((a, b) => (a.start < b.start ? -1 : 1))) {
    checkRange(range);
    const last = merged.at(-1);
    if (last && range.start <= last.end) last.end = range.end > last.end ? range.end : last.end;
    else merged.push({ ...range });
  }
  return merged;
}

/** The `shardSelector` of `ranges`; throws when there are none (the server refuses an empty one). */
export function shardSelector(ranges: readonly HashRange[]): string {
  const merged = mergeRanges(ranges);
  if (merged.length === 0) throw new Error('a shard selector needs at least one hash range');
  return merged.map((r) => `shardRange(${FIELD}, '${hex(r.start)}', '${hex(r.end)}')`).join(' || ');
}

/** Whether an object of this uid is in `ranges`: what the server's filter keeps. */
export function matches(ranges: readonly HashRange[], uid: string): boolean {
  const hash = fnv1a64(uid);
  return ranges.some((r) => r.start <= hash && hash < r.end);
}

function hex(bound: bigint): string {
  return `0x${bound.toString(16).padStart(16, '0')}`;
}

function checkRange({ start, end }: HashRange): void {
  if (start < 0n || end > HASH_SPACE || start >= end) {
    throw new RangeError(`no such hash range: [${hex(start)}, ${hex(end)})`);
  }
}
