// The protobuf reader on bytes built here field by field: varints, JSON's omitempty, maps, nested
// and repeated messages, the k8s envelope and watch framing, a watch served over HTTP as the API
// server frames it, and fuzzed streams (truncated, corrupted, random). That the result matches a
// real API server's JSON is test/integration/protobuf.test.ts.
//
// The fuzz tests run a fixed number of cases from a fixed seed; FUZZ_RUNS and FUZZ_SEED run more,
// or others: `FUZZ_RUNS=200000 FUZZ_SEED=7 node --test test/unit/kube/protobuf.test.ts`.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeDeployment, DEPLOYMENT_SPEC } from '../../../../src/echo/deployment-protobuf.ts';
import { desiredDeployment } from '../../../../src/echo/desired.ts';
import { KubeClient } from '../../../../src/kube/client.ts';
import type { WatchEvent } from '../../../../src/kube/object.ts';
import { ApiError, isGone } from '../../../../src/kube/errors.ts';
import {
  decodeMessage,
  decodeStatus,
  decodeWatchEvent,
  FrameSplitter,
  MAX_FRAME_BYTES,
  PROTOBUF_MEDIA_TYPE,
  ProtobufError,
  ProtoReader,
  unwrap,
  type Schema,
} from '../../../../src/kube/protobuf/protobuf.ts';
import { echo as cachedEcho } from '../../../support/echo.ts';

const fuzz = {
  numRuns: Number(process.env.FUZZ_RUNS ?? 1000),
  seed: Number(process.env.FUZZ_SEED ?? 25),
};

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
/** A metav1.WatchEvent: its type, and its object in a RawExtension, behind the envelope. */
const watchEvent = (type: string, raw: number[]): Buffer =>
  Buffer.from([...str(1, type), ...bytes(2, bytes(1, envelope(raw)))]);
/** A frame of a watch body: a 4-byte big-endian length, then the bytes. */
const frame = (event: Buffer): Buffer => {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(event.length);
  return Buffer.concat([length, event]);
};

/** The 410 the API server sends on a watch resumed from a compacted resourceVersion. */
const EXPIRED = [
  ...str(2, 'Failure'),
  ...str(3, 'too old resource version: 5 (9)'),
  ...str(4, 'Expired'),
  ...int(6, 410),
];
const EXPIRED_STATUS = {
  kind: 'Status',
  status: 'Failure',
  message: 'too old resource version: 5 (9)',
  reason: 'Expired',
  code: 410,
};

/** A Deployment being deleted, as the API server encodes it, managedFields and timestamps included. */
const DEPLOYMENT = [
  ...bytes(1, [
    ...str(1, 'web'),
    ...str(3, 'ns'),
    ...str(5, 'uid-1'),
    ...str(6, '42'),
    ...int(7, 3),
    ...bytes(8, [...int(1, 1_700_000_000)]),
    ...bytes(9, [...int(1, 1_700_000_100)]),
    ...entry(11, 'app', 'web'),
    ...entry(12, 'echo.example.com/applied', 'abc'),
    ...bytes(13, [...str(1, 'Echo'), ...str(3, 'web'), ...str(4, 'uid-0'), ...int(6, 1)]),
    ...bytes(17, [...str(1, 'echo-operator'), ...str(2, 'Apply'), ...bytes(7, str(1, '{}'))]),
  ]),
  ...bytes(2, [
    ...int(1, 2),
    ...bytes(2, entry(1, 'app', 'web')),
    ...bytes(3, [
      ...bytes(1, entry(11, 'app', 'web')),
      ...bytes(2, [...bytes(2, [...str(1, 'echo'), ...str(2, 'inanimate/echo-server')])]),
    ]),
  ]),
  ...bytes(3, [
    ...int(1, 3),
    ...int(2, 2),
    ...int(7, 1),
    ...bytes(6, [...str(1, 'Available'), ...str(2, 'True'), ...str(4, 'MinimumReplicasAvailable')]),
  ]),
];

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

  it('reads an ERROR event as the server sends it: the Status behind the envelope of its object', () => {
    assert.deepEqual(
      decodeWatchEvent(watchEvent('ERROR', EXPIRED), () => assert.fail('not an object')),
      { type: 'ERROR', object: EXPIRED_STATUS },
    );
    // An error response is the Status alone, behind the same envelope.
    assert.deepEqual(decodeStatus(unwrap(envelope(EXPIRED))), EXPIRED_STATUS);
  });

  it('gives any other object to the decoder out of its envelope, and reads bookmarks', () => {
    const object = [...str(1, 'x')];
    assert.deepEqual(
      decodeWatchEvent(watchEvent('MODIFIED', object), (raw) => raw.toString('hex')),
      { type: 'MODIFIED', object: Buffer.from(object).toString('hex') },
    );
    const bookmark = bytes(1, [...str(6, '77'), ...entry(12, 'k8s.io/initial-events-end', 'true')]);
    assert.deepEqual(
      decodeWatchEvent(watchEvent('BOOKMARK', bookmark), () => 0),
      {
        type: 'BOOKMARK',
        object: {
          metadata: { resourceVersion: '77', annotations: { 'k8s.io/initial-events-end': 'true' } },
        },
      },
    );
    assert.throws(() => decodeWatchEvent(watchEvent('RENAMED', object), () => 0), /unknown type/);
    assert.throws(() => decodeWatchEvent(Buffer.from(str(1, 'ADDED')), () => 0), ProtobufError);
  });

  it('reads an integer or a boolean only from a varint, and refuses field number 0', () => {
    // The same field as a length-delimited one: its length is no count, its bytes no fields.
    const asBytes = [...int(20, 1)];
    assert.throws(
      () => decodeMessage(new ProtoReader(Buffer.from(bytes(3, asBytes))), SCHEMA),
      /field 3 has wire type 2, not 0/,
    );
    assert.throws(
      () => decodeMessage(new ProtoReader(Buffer.from(bytes(7, asBytes))), SCHEMA),
      /field 7 has wire type 2, not 0/,
    );
    assert.throws(
      () => decodeMessage(new ProtoReader(Buffer.from([0x00, 0x01])), SCHEMA),
      /invalid tag 0/,
    );
  });

  it('cuts length-prefixed frames out of chunks of any size', () => {
    const frames = [
      Buffer.from('first'),
      Buffer.alloc(70_000, 1),
      Buffer.alloc(0),
      Buffer.from('last'),
    ];
    const stream = Buffer.concat(frames.map(frame));
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

  it('refuses a frame longer than client-go reads as soon as its length arrives', () => {
    const prefix = (length: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(length);
      return b;
    };
    // 4 GiB announced: refused before a byte of it is waited for.
    assert.throws(
      () => new FrameSplitter().push(prefix(2 ** 32 - 1)),
      /over the limit of 16777216/,
    );
    assert.throws(() => new FrameSplitter().push(prefix(MAX_FRAME_BYTES + 1)), ProtobufError);
    const splitter = new FrameSplitter();
    assert.deepEqual(splitter.push(prefix(MAX_FRAME_BYTES)), [], 'the limit itself is read');
    assert.equal(splitter.push(Buffer.alloc(MAX_FRAME_BYTES))[0]?.length, MAX_FRAME_BYTES);
  });
});

describe('a protobuf watch over HTTP', () => {
  /** A server answering every request with `status` and `body`, in protobuf. */
  async function serving(status: number, body: Buffer): Promise<KubeClient> {
    const server = createServer((_req, res) => {
      res.writeHead(status, { 'content-type': `${PROTOBUF_MEDIA_TYPE};stream=watch` });
      res.end(body);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    after(() => server.close());
    const { port } = server.address() as AddressInfo;
    const client = new KubeClient({
      server: new URL(`http://127.0.0.1:${String(port)}`),
      tls: { rejectUnauthorized: true },
      credentials: () => Promise.resolve({ headers: {}, expiresAt: Infinity }),
      source: 'test',
    });
    after(() => client.close());
    return client;
  }

  it('ends with the Status of a 410 as a watch resumed from a compacted revision gets it', async () => {
    const client = await serving(
      200,
      Buffer.concat([frame(watchEvent('ADDED', DEPLOYMENT)), frame(watchEvent('ERROR', EXPIRED))]),
    );
    const events: WatchEvent<unknown>[] = [];
    for await (const event of client.watch({
      path: '/apis/apps/v1/deployments',
      protobuf: (raw) => decodeDeployment(raw, () => undefined).metadata.resourceVersion,
    }))
      events.push(event);
    assert.deepEqual(events, [
      { type: 'ADDED', object: '42' },
      { type: 'ERROR', object: EXPIRED_STATUS },
    ]);
  });

  it('reads a refusal answered in protobuf as the API error it is', async () => {
    const client = await serving(410, envelope(EXPIRED));
    const watch = client.watch({ path: '/apis/apps/v1/deployments', protobuf: () => 0 });
    await assert.rejects(watch.next(), (err) => err instanceof ApiError && isGone(err));
  });
});

describe('the protobuf watch decoder, fuzzed', () => {
  /** Frames and chunks as the client reads them: every event decoded, Deployments as the cache does. */
  function readStream(chunks: Buffer[], maxFrameBytes?: number): number {
    const splitter = new FrameSplitter(maxFrameBytes);
    let events = 0;
    for (const chunk of chunks) {
      for (const f of splitter.push(chunk)) {
        decodeWatchEvent(f, (raw) => decodeDeployment(raw, () => undefined));
        events++;
      }
    }
    return events;
  }

  /** `stream` cut at the given points, in order. */
  const cut = (stream: Buffer, points: number[]): Buffer[] => {
    const sorted = [...new Set(points.map((p) => p % (stream.length + 1)))].sort((a, b) => a - b);
    return [...sorted, stream.length].map((end, i) => stream.subarray(sorted[i - 1] ?? 0, end));
  };

  const served = [
    watchEvent('ADDED', DEPLOYMENT),
    watchEvent('MODIFIED', DEPLOYMENT),
    watchEvent('BOOKMARK', bytes(1, [...str(6, '50'), ...entry(12, 'k', 'v')])),
    watchEvent('ERROR', EXPIRED),
  ];
  const events = fc.array(fc.constantFrom(...served), { minLength: 1, maxLength: 6 });
  const stream = events.map((e) => Buffer.concat(e.map(frame)));
  const cuts = fc.array(fc.nat(), { maxLength: 20 });

  /** Either decodes or refuses with a ProtobufError: never another error, never a hang. */
  const decodesOrRefuses = (chunks: Buffer[], maxFrameBytes?: number): boolean => {
    try {
      readStream(chunks, maxFrameBytes);
    } catch (err) {
      if (!(err instanceof ProtobufError)) throw err;
    }
    return true;
  };

  it('reads every event of a served stream however it is chunked', () => {
    fc.assert(
      fc.property(events, cuts, (e, points) => {
        assert.equal(readStream(cut(Buffer.concat(e.map(frame)), points)), e.length);
      }),
      fuzz,
    );
  });

  /** Any value a varint holds: int64 and uint64 alike. */
  const anyVarint = fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n });
  /** Fields of every wire type that no decoder asks for. */
  const unknownField = fc.oneof(
    fc
      .tuple(fc.integer({ min: 100, max: 120 }), anyVarint)
      .map(([n, v]) => [...varint(BigInt(n * 8)), ...varint(v)]),
    fc
      .tuple(fc.integer({ min: 100, max: 120 }), fc.uint8Array({ maxLength: 16 }))
      .map(([n, b]) => bytes(n, Buffer.from(b))),
    fc
      .tuple(fc.integer({ min: 100, max: 120 }), fc.constantFrom(1, 5))
      .map(([n, wire]) => [
        ...varint(BigInt(n * 8 + wire)),
        ...Array<number>(wire === 1 ? 8 : 4).fill(7),
      ]),
  );
  /** A well-formed message of `schema`'s fields in any order, with any values, among unknown ones. */
  const messageOf = (schema: Schema): fc.Arbitrary<number[]> =>
    fc
      .array(
        fc.oneof(
          ...Object.entries(schema).map(([n, spec]) => fieldOf(Number(n), spec)),
          unknownField,
        ),
        { maxLength: 10 },
      )
      .map((fields) => fields.flat());
  const fieldOf = (n: number, spec: Schema[number]): fc.Arbitrary<number[]> => {
    switch (spec.type) {
      case 'string':
        return fc.string().map((v) => str(n, v));
      case 'int':
      case 'bool':
        return anyVarint.map((v) => [...varint(BigInt(n * 8)), ...varint(v)]);
      case 'map':
        return fc.tuple(fc.string(), fc.string()).map(([k, v]) => entry(n, k, v));
      default:
        return messageOf(spec.type).map((m) => bytes(n, m));
    }
  };
  // The wire format of ObjectMeta, DeploymentStatus (k8s.io generated.proto), not the decoder's tables.
  const time: Schema = { 1: { json: 'seconds', type: 'int' }, 2: { json: 'nanos', type: 'int' } };
  const objectMeta: Schema = {
    1: { json: 'name', type: 'string' },
    3: { json: 'namespace', type: 'string' },
    5: { json: 'uid', type: 'string' },
    6: { json: 'resourceVersion', type: 'string' },
    7: { json: 'generation', type: 'int' },
    8: { json: 'creationTimestamp', type: time },
    9: { json: 'deletionTimestamp', type: time },
    11: { json: 'labels', type: 'map' },
    12: { json: 'annotations', type: 'map' },
    13: {
      json: 'ownerReferences',
      type: {
        1: { json: 'kind', type: 'string' },
        3: { json: 'name', type: 'string' },
        4: { json: 'uid', type: 'string' },
        5: { json: 'apiVersion', type: 'string' },
        6: { json: 'controller', type: 'bool' },
        7: { json: 'blockOwnerDeletion', type: 'bool' },
      },
    },
  };
  const deploymentStatus: Schema = {
    ...Object.fromEntries(
      [1, 2, 3, 4, 5, 7, 8, 9].map((n) => [n, { json: String(n), type: 'int' as const }]),
    ),
    6: {
      json: 'conditions',
      type: {
        1: { json: 'type', type: 'string' },
        2: { json: 'status', type: 'string' },
        4: { json: 'reason', type: 'string' },
        5: { json: 'message', type: 'string' },
        6: { json: 'lastUpdateTime', type: time },
        7: { json: 'lastTransitionTime', type: time },
      },
    },
  };
  const anyDeployment = messageOf({
    1: { json: 'metadata', type: objectMeta },
    2: { json: 'spec', type: DEPLOYMENT_SPEC },
    3: { json: 'status', type: deploymentStatus },
  });

  it('decodes or refuses a well-formed Deployment of any values', () => {
    fc.assert(
      fc.property(anyDeployment, (deployment) =>
        decodesOrRefuses([frame(watchEvent('MODIFIED', deployment))]),
      ),
      fuzz,
    );
  });

  it('decodes or refuses a truncated stream', () => {
    fc.assert(
      fc.property(stream, fc.nat(), cuts, (s, end, points) =>
        decodesOrRefuses(cut(s.subarray(0, end % s.length), points)),
      ),
      fuzz,
    );
  });

  it('decodes or refuses a corrupted stream', () => {
    const corruption = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), {
      minLength: 1,
      maxLength: 8,
    });
    fc.assert(
      fc.property(stream, corruption, cuts, (s, writes, points) => {
        const corrupted = Buffer.from(s);
        for (const [at, byte] of writes) corrupted[at % corrupted.length] = byte;
        return decodesOrRefuses(cut(corrupted, points));
      }),
      fuzz,
    );
  });

  it('decodes or refuses random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), cuts, (bytes, points) =>
        decodesOrRefuses(cut(Buffer.from(bytes), points)),
      ),
      fuzz,
    );
  });

  it('cuts the frames of any bytes, and refuses a length past its limit once it has arrived', () => {
    const limit = 64;
    /** The frames read one after the other, and where a length past the limit ends, if one does. */
    const reference = (b: Buffer): { frames: string[]; refusedAt?: number } => {
      const frames: string[] = [];
      for (let pos = 0; pos + 4 <= b.length;) {
        const length = b.readUInt32BE(pos);
        if (length > limit) return { frames, refusedAt: pos + 4 };
        if (pos + 4 + length > b.length) break;
        frames.push(b.toString('hex', pos + 4, pos + 4 + length));
        pos += 4 + length;
      }
      return { frames };
    };
    // Small lengths mostly, so that frames complete; any byte may make a length huge.
    const bytes = fc
      .uint8Array({ maxLength: 512 })
      .map((b) => Buffer.from(b.map((x, i) => (i % 7 === 0 ? x : x & 0x1f))));
    fc.assert(
      fc.property(bytes, cuts, (b, points) => {
        const expected = reference(b);
        const splitter = new FrameSplitter(limit);
        const frames: string[] = [];
        let delivered = 0;
        for (const chunk of cut(b, points)) {
          delivered += chunk.length;
          try {
            frames.push(...splitter.push(chunk).map((f) => f.toString('hex')));
          } catch (err) {
            assert.ok(err instanceof ProtobufError);
            assert.ok(expected.refusedAt !== undefined, 'refused only a length past the limit');
            assert.ok(delivered >= expected.refusedAt, 'refused once the length is in');
            assert.ok(delivered - chunk.length < expected.refusedAt, 'refused at once');
            assert.deepEqual(frames, expected.frames.slice(0, frames.length));
            return;
          }
        }
        assert.equal(expected.refusedAt, undefined, 'a length past the limit is refused');
        assert.deepEqual(frames, expected.frames);
      }),
      fuzz,
    );
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
    const echo = cachedEcho({
      name: 'a',
      namespace: 'b',
      uid: 'c',
      resourceVersion: '1',
      generation: undefined,
    });
    walk(desiredDeployment(echo).spec, DEPLOYMENT_SPEC, 'spec');
    assert.deepEqual(missing, []);
  });
});
