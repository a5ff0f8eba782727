// Kubernetes' protobuf encoding, read only as far as a cache needs: the API server serves built-in
// types (Deployments, not custom resources) as protobuf, which client-go's informers ask for. A
// decoder driven by a table of the fields wanted skips everything else unread: managedFields,
// most of each Deployment's bytes, are never turned into objects. Why not a generated decoder
// (protobufjs, @bufbuild/protobuf): it would build every field of every message, which is the
// cost this avoids; and their int64 readers hand back objects where a number does.
//
// The watch stream: frames of a 4-byte big-endian length and a metav1.WatchEvent; each event's
// object is a runtime.Unknown behind the 4 bytes `k8s\0`, holding the object's own bytes.
//
// The bytes come from the network: every length is checked before it is trusted, and a field is
// read only with the wire type its reader expects. Anything else is a ProtobufError, which the
// informer answers by watching in JSON.
import type { WatchEvent } from '../object.ts';

/** Protobuf wire types. */
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const FIXED32 = 5;

/** The bytes in front of every object the API server encodes as protobuf. */
const MAGIC = [0x6b, 0x38, 0x73, 0x00];

/** The largest tag: field number 2^29 - 1, wire type 7. */
const MAX_TAG = 2 ** 32 - 1;

/**
 * The largest watch frame read: client-go's streaming decoder refuses an object past 16 MiB
 * (apimachinery's runtime/serializer/streaming, `maxBytes`) and ends the watch. etcd stores at
 * most 1.5 MiB a value by default, so a longer frame is a damaged length, or an object no client
 * would read.
 */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** Media types a watch asks for: protobuf where the server has it (built-in types), else JSON. */
export const PROTOBUF_WATCH_ACCEPT = 'application/vnd.kubernetes.protobuf, application/json';
export const PROTOBUF_MEDIA_TYPE = 'application/vnd.kubernetes.protobuf';

export class ProtobufError extends Error {
  override readonly name = 'ProtobufError';
}

/** Reads one message's fields in turn: `next()` moves to the next field, then one read or skip. */
export class ProtoReader {
  field = 0;
  wireType = 0;
  private readonly buf: Buffer;
  private readonly end: number;
  private pos: number;

  constructor(buf: Buffer, start = 0, end = buf.length) {
    this.buf = buf;
    this.pos = start;
    this.end = end;
  }

  next(): boolean {
    if (this.pos >= this.end) return false;
    const tag = this.varint();
    if (tag < 8 || tag > MAX_TAG) throw new ProtobufError(`invalid tag ${String(tag)}`);
    this.field = tag >>> 3;
    this.wireType = tag & 7;
    return true;
  }

  /** A varint as a number: exact up to 2^53, which covers every count and generation. */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.end) throw new ProtobufError('truncated varint');
      const byte = this.buf[this.pos++] ?? 0;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
      if (scale > 2 ** 63) throw new ProtobufError('varint too long');
    }
  }

  /** An int32 or int64 field: a negative value arrives as a ten-byte two's complement varint. */
  int(): number {
    this.expect(VARINT);
    const start = this.pos;
    const value = this.varint();
    if (value < 2 ** 63) return value;
    // Rare (no count is negative), and past a double's precision: read again exactly.
    let exact = 0n;
    for (let i = this.pos - 1; i >= start; i--)
      exact = (exact << 7n) | BigInt((this.buf[i] ?? 0) & 0x7f);
    return Number(BigInt.asIntN(64, exact));
  }

  bool(): boolean {
    this.expect(VARINT);
    return this.varint() !== 0;
  }

  string(): string {
    const [start, end] = this.span();
    return this.buf.toString('utf8', start, end);
  }

  /** A length-delimited field's bytes, not copied. */
  bytes(): Buffer {
    const [start, end] = this.span();
    return this.buf.subarray(start, end);
  }

  /** A reader of the embedded message this field holds. */
  message(): ProtoReader {
    const [start, end] = this.span();
    return new ProtoReader(this.buf, start, end);
  }

  skip(): void {
    switch (this.wireType) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        this.advance(8);
        return;
      case LENGTH_DELIMITED:
        this.span();
        return;
      case FIXED32:
        this.advance(4);
        return;
      default:
        throw new ProtobufError(`wire type ${String(this.wireType)} not supported`);
    }
  }

  private expect(wireType: number): void {
    if (this.wireType !== wireType)
      throw new ProtobufError(
        `field ${String(this.field)} has wire type ${String(this.wireType)}, not ${String(wireType)}`,
      );
  }

  private span(): [number, number] {
    this.expect(LENGTH_DELIMITED);
    const length = this.varint();
    const start = this.pos;
    this.advance(length);
    return [start, this.pos];
  }

  private advance(bytes: number): void {
    if (this.pos + bytes > this.end) throw new ProtobufError('truncated message');
    this.pos += bytes;
  }
}

/**
 * How a field is decoded into the JSON form of the object: its JSON name, its type (a nested
 * schema for a message), and whether JSON leaves it out when empty. Go's protobuf encoding
 * writes every non-pointer field, empty or not, where JSON's `omitempty` drops "", 0 and false;
 * a pointer field is written only when set, and so needs no `omitEmpty`.
 */
export interface FieldSpec {
  json: string;
  type: 'string' | 'int' | 'bool' | 'map' | Schema;
  repeated?: true;
  omitEmpty?: true;
  /** For a map: the keys kept (annotations: only those the cache reads). */
  keep?: (key: string) => boolean;
}

/** A message's wanted fields by field number; any other field is skipped unread. */
export type Schema = Readonly<Record<number, FieldSpec>>;

type RecordConstructor = new () => Record<string, unknown>;

/**
 * A plain-object constructor per message type (and per map field). An object grown from `{}` has
 * room for four fields and keeps the rest in a second array, which a copy of it (the cache's trim
 * copies a status) keeps too. V8 sizes the instances of a constructor to the most fields any of
 * its first seven got (slack tracking, `Map::kSlackTrackingCounterStart`), so a message's
 * constructor makes those seven itself with every field of the message: a watch's first objects
 * may be nearly empty (a new Deployment's status has none). A copy of a decoded object is then
 * sized to its fields, as JSON.parse sizes each object, where one grown from `{}` keeps fields
 * past the fourth in a second array (docs/benchmark.md, "The memory gate").
 */
const constructors = new WeakMap<object, RecordConstructor>();
const SLACK_TRACKING_INSTANCES = 7;

function newRecord(type: Schema | FieldSpec): Record<string, unknown> {
  let construct = constructors.get(type);
  if (!construct) {
    function DecodedRecord(): void {
      // Fields are added by the decoder, one by one.
    }
    // Instances are plain objects: Object's prototype, as `{}` and JSON.parse give.
    DecodedRecord.prototype = Object.prototype;
    construct = DecodedRecord as unknown as RecordConstructor;
    // A map's keys are not known before: its first entries size it.
    if (!('json' in type)) {
      const fields = Object.values(type).map((spec) => spec.json);
      for (let i = 0; i < SLACK_TRACKING_INSTANCES; i++) {
        const sizing = new construct();
        for (const field of fields) sizing[field] = undefined;
      }
    }
    constructors.set(type, construct);
  }
  return new construct();
}

/** The message `reader` holds, as the JSON object of the fields `schema` names. */
export function decodeMessage(reader: ProtoReader, schema: Schema): Record<string, unknown> {
  const out = newRecord(schema);
  while (reader.next()) {
    const spec = schema[reader.field];
    if (!spec) {
      reader.skip();
      continue;
    }
    if (spec.type === 'map') {
      const [key, value] = mapEntry(reader.message());
      if (spec.keep && !spec.keep(key)) continue;
      const map = (out[spec.json] ??= newRecord(spec)) as Record<string, string>;
      map[key] = value;
      continue;
    }
    const value = decodeValue(reader, spec.type);
    if (spec.repeated) {
      ((out[spec.json] ??= []) as unknown[]).push(value);
    } else if (!(spec.omitEmpty && (value === '' || value === 0 || value === false))) {
      out[spec.json] = value;
    }
  }
  return out;
}

function decodeValue(reader: ProtoReader, type: FieldSpec['type']): unknown {
  switch (type) {
    case 'string':
      return reader.string();
    case 'int':
      return reader.int();
    case 'bool':
      return reader.bool();
    case 'map':
      throw new ProtobufError('a map is decoded by its entries');
    default:
      return decodeMessage(reader.message(), type);
  }
}

function mapEntry(reader: ProtoReader): [string, string] {
  let key = '';
  let value = '';
  while (reader.next()) {
    if (reader.field === 1) key = reader.string();
    else if (reader.field === 2) value = reader.string();
    else reader.skip();
  }
  return [key, value];
}

/** An object's own bytes, out of the `k8s\0` + runtime.Unknown envelope (its type is not read). */
export function unwrap(raw: Buffer): Buffer {
  if (raw.length < MAGIC.length || MAGIC.some((b, i) => raw[i] !== b))
    throw new ProtobufError('not a Kubernetes protobuf object (no k8s\\0 prefix)');
  const reader = new ProtoReader(raw, MAGIC.length);
  while (reader.next()) {
    if (reader.field === 2) return reader.bytes();
    reader.skip();
  }
  return Buffer.alloc(0);
}

/** The fields of metav1.Status a failed watch or request carries. */
const STATUS: Schema = {
  2: { json: 'status', type: 'string', omitEmpty: true },
  3: { json: 'message', type: 'string', omitEmpty: true },
  4: { json: 'reason', type: 'string', omitEmpty: true },
  6: { json: 'code', type: 'int', omitEmpty: true },
};

/**
 * A metav1.Status from its own bytes, out of the envelope: a watch's ERROR event as
 * `decodeWatchEvent` opened it, or an error response through `unwrap`.
 */
export function decodeStatus(object: Buffer): Record<string, unknown> {
  return { kind: 'Status', ...decodeMessage(new ProtoReader(object), STATUS) };
}

/** What a bookmark carries: its resourceVersion, and the annotation ending a WatchList's start. */
const BOOKMARK: Schema = {
  1: {
    json: 'metadata',
    type: {
      6: { json: 'resourceVersion', type: 'string', omitEmpty: true },
      12: { json: 'annotations', type: 'map' },
    },
  },
};

/**
 * A watch frame (a metav1.WatchEvent) as the event a caller reads, each object out of its
 * envelope: an ERROR's metav1.Status and a BOOKMARK's metadata decoded here, any other object by
 * `decode`. An unknown type is refused, as client-go refuses it.
 */
export function decodeWatchEvent<T>(frame: Buffer, decode: (object: Buffer) => T): WatchEvent<T> {
  const reader = new ProtoReader(frame);
  let type = '';
  let object: Buffer | undefined;
  while (reader.next()) {
    if (reader.field === 1) type = reader.string();
    else if (reader.field === 2) {
      const extension = reader.message();
      while (extension.next()) {
        if (extension.field === 1) object = unwrap(extension.bytes());
        else extension.skip();
      }
    } else reader.skip();
  }
  if (!object) throw new ProtobufError('watch event without an object');
  // The Status and the bookmark are typed as the caller's objects, as WatchEvent documents.
  if (type === 'ERROR') return { type, object: decodeStatus(object) as T };
  if (type === 'BOOKMARK') return { type, object: decodeBookmark(object) as T };
  if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED')
    return { type, object: decode(object) };
  throw new ProtobufError(`watch event of unknown type "${type}"`);
}

/** A bookmark's object as JSON would give it: only metadata.resourceVersion and annotations. */
function decodeBookmark(object: Buffer): Record<string, unknown> {
  return decodeMessage(new ProtoReader(object), BOOKMARK);
}

/**
 * Splits a watch body into frames: each a 4-byte big-endian length and that many bytes. Chunks are
 * joined only once the frame they end is complete, so a large object costs one copy, not one per
 * chunk. A length past `maxFrameBytes` is refused as soon as it is read, before its bytes are
 * waited for: a damaged prefix would otherwise hold up to 4 GiB.
 */
export class FrameSplitter {
  private readonly maxFrameBytes: number;
  private chunks: Buffer[] = [];
  private size = 0;
  /** Bytes needed before the next frame can be cut: its length prefix, then the whole frame. */
  private wanted = 4;

  constructor(maxFrameBytes = MAX_FRAME_BYTES) {
    this.maxFrameBytes = maxFrameBytes;
  }

  /** The frames that `chunk` completes. */
  push(chunk: Buffer): Buffer[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size < this.wanted) return [];
    const buf = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.size);
    const frames: Buffer[] = [];
    let pos = 0;
    this.wanted = 4;
    while (buf.length - pos >= 4) {
      const length = buf.readUInt32BE(pos);
      if (length > this.maxFrameBytes)
        throw new ProtobufError(
          `watch frame of ${String(length)} bytes, over the limit of ${String(this.maxFrameBytes)}`,
        );
      if (buf.length - pos - 4 < length) {
        this.wanted = 4 + length;
        break;
      }
      frames.push(buf.subarray(pos + 4, pos + 4 + length));
      pos += 4 + length;
    }
    const rest = buf.subarray(pos);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.size = rest.length;
    return frames;
  }
}
