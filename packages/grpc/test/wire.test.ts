/**
 * Wire compatibility without our .proto: requests are encoded by hand with the field numbers of
 * the published KServe V2 / Triton protocol, sent as raw bytes, and the answers decoded by hand.
 * A wrong field number in proto/grpc_service.proto would fail here even though a client built from
 * the same (wrong) file would still agree with the server.
 */
import * as grpc from '@grpc/grpc-js';
import { fromFunction, ModelRegistry } from '@mlserve/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GrpcServing, serveGrpc } from '../src/index.js';

function varint(value: bigint | number): Buffer {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}
const tag = (field: number, wire: number) => varint((field << 3) | wire);
const bytesField = (field: number, value: Buffer | string) => {
  const b = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([tag(field, 2), varint(b.byteLength), b]);
};
const varintField = (field: number, value: bigint | number) => Buffer.concat([tag(field, 0), varint(value)]);
const packed = (field: number, values: (bigint | number)[]) =>
  bytesField(field, Buffer.concat(values.map(varint)));

/** Decodes one message level: field number -> values (varints as bigint, length-delimited as Buffer). */
function fields(buf: Buffer): Map<number, (bigint | Buffer)[]> {
  const out = new Map<number, (bigint | Buffer)[]>();
  let off = 0;
  const readVarint = () => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[off++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
    }
  };
  while (off < buf.length) {
    const key = Number(readVarint());
    const field = key >> 3;
    let value: bigint | Buffer;
    if ((key & 7) === 0) value = readVarint();
    else if ((key & 7) === 2) {
      const len = Number(readVarint());
      value = buf.subarray(off, off + len);
      off += len;
    } else throw new Error(`unexpected wire type ${key & 7}`);
    out.set(field, [...(out.get(field) ?? []), value]);
  }
  return out;
}
const one = (m: Map<number, (bigint | Buffer)[]>, f: number) => m.get(f)?.[0];
const text = (v: unknown) => (v as Buffer).toString('utf8');

function unpack(buf: Buffer): bigint[] {
  const out: bigint[] = [];
  let off = 0;
  while (off < buf.length) {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[off++]!;
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
      shift += 7n;
    }
    out.push(BigInt.asIntN(64, result));
  }
  return out;
}

const identity = (b: Buffer) => b;
const RawClient = grpc.makeGenericClientConstructor(
  {
    ModelInfer: {
      path: '/inference.GRPCInferenceService/ModelInfer',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  'RawInference',
);

let registry: ModelRegistry;
let server: GrpcServing;
let client: grpc.Client;
let seenParams: unknown;

beforeAll(async () => {
  registry = new ModelRegistry();
  registry.add(
    fromFunction({
      name: 'echo64',
      inputs: [{ name: 'x', type: 'int64', dims: [-1, 2] }],
      outputs: [{ name: 'y', type: 'int64', dims: [-1, 2] }],
      infer: ({ x }, o) => {
        seenParams = { ...o.parameters, priority: o.priority };
        return { y: x! };
      },
    }),
  );
  server = await serveGrpc({ registry });
  client = new RawClient(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
});
afterAll(async () => {
  client?.close();
  await server?.close();
  await registry?.close();
});

function send(body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    (
      client as unknown as { ModelInfer: (b: Buffer, cb: (e: Error | null, r: Buffer) => void) => void }
    ).ModelInfer(body, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

/** A map<string, InferParameter> entry: key = 1, value = 2. */
const param = (key: string, value: Buffer) =>
  bytesField(4, Buffer.concat([bytesField(1, key), bytesField(2, value)]));

describe('wire format (published field numbers)', () => {
  const input = Buffer.concat([bytesField(1, 'x'), bytesField(2, 'INT64'), packed(3, [1, 2])]);
  const values = [-(2n ** 63n), 2n ** 63n - 1n];

  it('ModelInferRequest with raw_input_contents = 7 answers raw_output_contents = 6', async () => {
    const raw = Buffer.alloc(16);
    raw.writeBigInt64LE(values[0]!, 0);
    raw.writeBigInt64LE(values[1]!, 8);
    const req = Buffer.concat([
      bytesField(1, 'echo64'), // model_name
      bytesField(3, 'wire-1'), // id
      param('mode', bytesField(3, 'fast')), // string_param = 3
      param('priority', varintField(5, 3)), // uint64_param = 5 (tritonclient's priority)
      param('temperature', Buffer.concat([tag(4, 1), Buffer.from(new Float64Array([0.5]).buffer)])), // double_param = 4
      bytesField(5, input), // inputs
      bytesField(7, raw), // raw_input_contents
    ]);
    const res = fields(await send(req));
    expect(text(one(res, 1))).toBe('echo64'); // model_name
    expect(text(one(res, 2))).toBe('1'); // model_version
    expect(text(one(res, 3))).toBe('wire-1'); // id
    const out = fields(one(res, 5) as Buffer); // outputs[0]
    expect(text(one(out, 1))).toBe('y');
    expect(text(one(out, 2))).toBe('INT64');
    expect(unpack(one(out, 3) as Buffer)).toEqual([1n, 2n]);
    const back = one(res, 6) as Buffer; // raw_output_contents[0]
    expect([back.readBigInt64LE(0), back.readBigInt64LE(8)]).toEqual(values);
    expect(seenParams).toEqual({ mode: 'fast', temperature: 0.5, priority: 3 });
  });

  it('typed contents = 5 with int64_contents = 3 (negative varints) round-trip exactly', async () => {
    const typed = Buffer.concat([input, bytesField(5, packed(3, values))]);
    const req = Buffer.concat([bytesField(1, 'echo64'), bytesField(5, typed)]);
    const res = fields(await send(req));
    const back = one(res, 6) as Buffer;
    expect([back.readBigInt64LE(0), back.readBigInt64LE(8)]).toEqual(values);
  });
});
