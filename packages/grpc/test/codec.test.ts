import * as protoLoader from '@grpc/proto-loader';
import { isServeError, type Tensor, tensorsEqual } from '@mlserve/core';
import { tensorToBinary } from '@mlserve/protocol';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeInputs,
  encodeOutputs,
  type InferRequestMessage,
  parameterValue,
  tensorToContents,
} from '../src/codec.js';
import { LOADER_OPTIONS, PROTO_PATH } from '../src/index.js';

const defs = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS);
// A service definition carries each method's (de)serializers: put requests through the wire format.
const service = defs['inference.GRPCInferenceService'] as Record<
  string,
  { requestSerialize: (v: unknown) => Buffer; requestDeserialize: (b: Buffer) => unknown }
>;
const wire = (req: unknown) =>
  service.ModelInfer!.requestDeserialize(service.ModelInfer!.requestSerialize(req)) as InferRequestMessage;

const int64 = fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n);
const uint64 = fc.bigInt(0n, 2n ** 64n - 1n);

describe('codec over the wire', () => {
  it('round-trips any int64 and uint64 exactly through typed contents', () => {
    fc.assert(
      fc.property(fc.array(int64, { maxLength: 20 }), fc.array(uint64, { maxLength: 20 }), (a, b) => {
        const ta: Tensor = { type: 'int64', dims: [a.length], data: BigInt64Array.from(a) };
        const tb: Tensor = { type: 'uint64', dims: [b.length], data: BigUint64Array.from(b) };
        const req = wire({
          model_name: 'm',
          inputs: [
            { name: 'a', datatype: 'INT64', shape: [a.length], contents: tensorToContents(ta) },
            { name: 'b', datatype: 'UINT64', shape: [b.length], contents: tensorToContents(tb) },
          ],
        });
        const { inputs, raw } = decodeInputs(req);
        expect(raw).toBe(false);
        expect(tensorsEqual(inputs.a!, ta)).toBe(true);
        expect(tensorsEqual(inputs.b!, tb)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('round-trips any float32 bits through raw contents (NaN payloads aside)', () => {
    fc.assert(
      fc.property(fc.float32Array({ maxLength: 64 }), (data) => {
        const t: Tensor = { type: 'float32', dims: [1, data.length], data };
        const req = wire({
          model_name: 'm',
          inputs: [{ name: 'x', datatype: 'FP32', shape: t.dims }],
          raw_input_contents: [tensorToBinary(t)],
        });
        const { inputs, raw } = decodeInputs(req);
        expect(raw).toBe(true);
        expect(tensorsEqual(inputs.x!, t)).toBe(true);
        // The decoded tensor owns an aligned copy, not a view of the message.
        expect((inputs.x!.data as Float32Array).byteOffset).toBe(0);
      }),
      { numRuns: 200 },
    );
  });

  it('refuses hostile requests with INVALID_ARGUMENT, never a crash', () => {
    const datatype = fc.constantFrom('FP32', 'INT64', 'UINT8', 'BYTES', 'BOOL', 'FP16', 'BF16', '');
    const shape = fc.array(fc.oneof(fc.integer({ min: -2, max: 5 }), fc.constant(2 ** 40)), { maxLength: 4 });
    const input = fc.record({
      name: fc.constantFrom('x', 'y', ''),
      datatype,
      shape,
      contents: fc.option(
        fc.record({
          fp32_contents: fc.array(fc.float(), { maxLength: 6 }),
          int_contents: fc.array(fc.integer(), { maxLength: 6 }),
          int64_contents: fc.array(int64.map(String), { maxLength: 6 }),
          bytes_contents: fc.array(fc.uint8Array({ maxLength: 4 }), { maxLength: 6 }),
        }),
        { nil: undefined },
      ),
    });
    fc.assert(
      fc.property(
        fc.array(input, { maxLength: 3 }),
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 3 }),
        (inputs, raw) => {
          const req = wire({ model_name: 'm', inputs, raw_input_contents: raw.map((r) => Buffer.from(r)) });
          try {
            decodeInputs(req);
          } catch (err) {
            expect(isServeError(err)).toBe(true);
            expect((err as { code: string }).code).toBe('INVALID_ARGUMENT');
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('parameters and outputs', () => {
  it('reads each parameter kind, refusing 64-bit values past 2^53', () => {
    expect(parameterValue({ parameter_choice: 'bool_param', bool_param: true }, 'p')).toBe(true);
    expect(parameterValue({ parameter_choice: 'string_param', string_param: 's' }, 'p')).toBe('s');
    expect(parameterValue({ parameter_choice: 'double_param', double_param: 0.25 }, 'p')).toBe(0.25);
    expect(parameterValue({ parameter_choice: 'int64_param', int64_param: '-5' }, 'p')).toBe(-5);
    expect(parameterValue({ parameter_choice: 'uint64_param', uint64_param: '9' }, 'p')).toBe(9);
    expect(() =>
      parameterValue({ parameter_choice: 'int64_param', int64_param: '9007199254740993' }, 'p'),
    ).toThrow(/safe integer/);
    expect(() => parameterValue({}, 'p')).toThrow(/no value/);
  });

  it('encodes outputs raw in the order asked, or typed unless one is FP16', () => {
    const a: Tensor = { type: 'int32', dims: [2], data: Int32Array.from([1, -2]) };
    const h: Tensor = { type: 'float16', dims: [1], data: Uint16Array.from([0x3c00]) };
    const raw = encodeOutputs(['h', 'a', 'missing'], { a, h }, false);
    expect(raw.outputs.map((o) => o.name)).toEqual(['h', 'a']);
    expect(raw.raw_output_contents.map((b) => [...b])).toEqual([
      [0x00, 0x3c],
      [1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff],
    ]);
    const typed = encodeOutputs(['a'], { a, h }, true);
    expect(typed.raw_output_contents).toEqual([]);
    expect(typed.outputs[0]!.contents).toEqual({ int_contents: [1, -2] });
    expect(encodeOutputs(['a', 'h'], { a, h }, true).raw_output_contents).toHaveLength(2);
  });
});
