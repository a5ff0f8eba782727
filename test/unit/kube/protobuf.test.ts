// The protobuf reader on bytes built here field by field: varints, JSON's omitempty, maps, nested
// and repeated messages, the k8s envelope and watch framing. That the result matches a real API
// server's JSON is test/integration/protobuf.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEPLOYMENT_SPEC } from '../../../src/echo/deployment-protobuf.ts';
import { desiredDeployment } from '../../../src/echo/desired.ts';
import {
  decodeMessage,
  decodeStatus,
  decodeWatchEvent,
  FrameSplitter,
  ProtobufError,
  ProtoReader,
  unwrap,
  type Schema,
} from '../../../src/kube/protobuf.ts';

// Just enough of an encoder to build test messages.
const varint = (n: bigint): number[] => {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  do {
    const low = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? low | 0x80 : low);
  } while (v > 0n);
  return out;
};
const int = (field: number, n: number): number[] => [
  ...varint(BigInt(field * 8)),
  ...varint(BigInt(n)),
];
const bytes = (field: number, b: number[] | Buffer): number[] => [
  ...varint(BigInt(field * 8 + 2)),
  ...varint(BigInt(b.length)),
  ...b,
];
const str = (field: number, s: string): number[] => bytes(field, Buffer.from(s));
const entry = (field: number, k: string, v: string): number[] =>
  bytes(field, [...str(1, k), ...str(2, v)]);
const envelope = (raw: number[]): Buffer =>
  Buffer.from([
    0x6b,
    0x38,
    0x73,
    0x00,
    ...bytes(1, [...str(1, 'v1'), ...str(2, 'X')]),
    ...bytes(2, raw),
  ]);

const PORT: Schema = {
  1: { json: 'name', type: 'string', omitEmpty: true },
  3: { json: 'containerPort', type: 'int' },
};
const SCHEMA: Schema = {
  1: { json: 'name', type: 'string' },
  2: { json: 'count', type: 'int', omitEmpty: true },
  3: { json: 'replicas', type: 'int' },
  4: { json: 'labels', type: 'map' },
  5: { json: 'annotations', type: 'map', keep: (k) => k === 'kept' },
  6: { json: 'ports', type: PORT, repeated: true },
  7: { json: 'paused', type: 'bool' },
};

describe('protobuf reader', () => {
  it('decodes the named fields as JSON would, and skips the rest unread', () => {
    const message = Buffer.from([
      ...str(1, 'a'),
      ...int(2, 0),
      ...int(3, 0),
      ...entry(4, 'app', 'x'),
      ...entry(4, 'tier', 'y'),
      ...entry(5, 'kept', '1'),
      ...entry(5, 'dropped', '2'),
      ...bytes(6, [...str(1, ''), ...int(3, 8080)]),
      ...bytes(6, [...str(1, 'dns'), ...int(3, 53)]),
      ...int(7, 1),
      // Unknown fields of every wire type: a varint, fixed64, a message, fixed32.
      ...int(20, 300),
      ...varint(21n * 8n + 1n),
      ...[1, 2, 3, 4, 5, 6, 7, 8],
      ...bytes(22, [...str(1, 'managedFields')]),
      ...varint(23n * 8n + 5n),
      ...[1, 2, 3, 4],
    ]);
    assert.deepEqual(decodeMessage(new ProtoReader(message), SCHEMA), {
      name: 'a',
      // count: 0 is dropped (omitEmpty); replicas: 0 is a pointer's zero, kept.
      replicas: 0,
      labels: { app: 'x', tier: 'y' },
      annotations: { kept: '1' },
      ports: [{ containerPort: 8080 }, { name: 'dns', containerPort: 53 }],
      paused: true,
    });
  });

  it('reads large and negative integers', () => {
    const schema: Schema = { 1: { json: 'a', type: 'int' }, 2: { json: 'b', type: 'int' } };
    const message = Buffer.from([...int(1, 2 ** 40 + 3), ...varint(16n), ...varint(-5n)]);
    assert.deepEqual(decodeMessage(new ProtoReader(message), schema), { a: 2 ** 40 + 3, b: -5 });
  });

  it('refuses truncated bytes and objects without the k8s envelope', () => {
    const truncated = Buffer.from(str(1, 'abcdef')).subarray(0, 4);
    assert.throws(() => decodeMessage(new ProtoReader(truncated), SCHEMA), ProtobufError);
    assert.throws(() => unwrap(Buffer.from('{"kind":"Status"}')), /k8s/);
  });

  it('opens a watch event and its object, and a Status', () => {
    const status = envelope([
      ...str(2, 'Failure'),
      ...str(3, 'too old'),
      ...str(4, 'Expired'),
      ...int(6, 410),
    ]);
    const event = Buffer.from([...str(1, 'ERROR'), ...bytes(2, bytes(1, status))]);
    const opened = decodeWatchEvent(event);
    assert.equal(opened.type, 'ERROR');
    assert.deepEqual(decodeStatus(Buffer.from([...status])), {
      kind: 'Status',
      status: 'Failure',
      message: 'too old',
      reason: 'Expired',
      code: 410,
    });
    assert.deepEqual(
      decodeMessage(new ProtoReader(opened.object), { 6: { json: 'code', type: 'int' } }),
      {
        code: 410,
      },
    );
  });

  it('cuts length-prefixed frames out of chunks of any size', () => {
    const frames = [
      Buffer.from('first'),
      Buffer.alloc(70_000, 1),
      Buffer.alloc(0),
      Buffer.from('last'),
    ];
    const stream = Buffer.concat(
      frames.map((f) => {
        const length = Buffer.alloc(4);
        length.writeUInt32BE(f.length);
        return Buffer.concat([length, f]);
      }),
    );
    for (const size of [1, 3, 7, 4096, stream.length]) {
      const splitter = new FrameSplitter();
      const seen: Buffer[] = [];
      for (let i = 0; i < stream.length; i += size)
        seen.push(...splitter.push(stream.subarray(i, i + size)));
      assert.deepEqual(
        seen.map((f) => f.toString('hex')),
        frames.map((f) => f.toString('hex')),
        `chunks of ${String(size)}`,
      );
    }
  });
});

describe('the Deployment spec decoded from protobuf', () => {
  it('names every field of the desired Deployment, which the cache compares', () => {
    const missing: string[] = [];
    const walk = (value: unknown, schema: Schema, path: string): void => {
      if (Array.isArray(value)) {
        walk(value[0], schema, path);
        return;
      }
      if (value === null || typeof value !== 'object') return;
      for (const [key, child] of Object.entries(value)) {
        const spec = Object.values(schema).find((s) => s.json === key);
        if (!spec) missing.push(`${path}.${key}`);
        else if (typeof spec.type === 'object') walk(child, spec.type, `${path}.${key}`);
      }
    };
    const echo = {
      apiVersion: 'example.com/v1' as const,
      kind: 'Echo' as const,
      metadata: { name: 'a', namespace: 'b', uid: 'c', resourceVersion: '1' },
      spec: { replicas: 1 },
    };
    walk(desiredDeployment(echo).spec, DEPLOYMENT_SPEC, 'spec');
    assert.deepEqual(missing, []);
  });
});
