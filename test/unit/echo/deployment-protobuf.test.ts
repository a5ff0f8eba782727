// The Deployment cache's protobuf table on the fields this file's tests name; the whole wire format
// is test/unit/kube/protobuf.test.ts, its agreement with JSON test/integration/protobuf.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeDeployment } from '../../../src/echo/deployment-protobuf.ts';

const varint = (n: number): number[] => {
  const out: number[] = [];
  let v = n;
  do {
    out.push(v > 0x7f ? (v & 0x7f) | 0x80 : v);
    v = Math.floor(v / 128);
  } while (v > 0);
  return out;
};
const message = (field: number, body: number[]): number[] => [
  ...varint(field * 8 + 2),
  ...varint(body.length),
  ...body,
];
const text = (field: number, s: string): number[] => message(field, [...Buffer.from(s)]);
const int = (field: number, n: number): number[] => [...varint(field * 8), ...varint(n)];

describe('decodeDeployment', () => {
  it('keeps the deletionTimestamp of a Deployment being deleted, as JSON gives it', () => {
    const seconds = Date.UTC(2026, 10, 27, 10, 0, 0) / 1000;
    const meta = [...text(1, 'web'), ...text(3, 'team'), ...message(9, int(1, seconds))];
    const going = decodeDeployment(Buffer.from(message(1, meta)), () => undefined);
    assert.equal(going.metadata.deletionTimestamp, '2026-11-27T10:00:00Z');
    const alive = decodeDeployment(Buffer.from(message(1, text(1, 'web'))), () => undefined);
    assert.equal(alive.metadata.deletionTimestamp, undefined);
  });
});
