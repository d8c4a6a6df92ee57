import { isServeError } from '@mlserve/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeV2Request, encodeV2Response, parseHeaderLength } from '../src/v2.js';

/** Decoding must either succeed or throw a ServeError INVALID_ARGUMENT: never anything else. */
function decodeOrInvalid(run: () => unknown): void {
  try {
    run();
  } catch (err) {
    expect(isServeError(err)).toBe(true);
    expect((err as { code: string }).code).toBe('INVALID_ARGUMENT');
  }
}

const datatype = fc.constantFrom(
  'BOOL',
  'UINT8',
  'INT8',
  'INT32',
  'INT64',
  'UINT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
  'BF16',
  'X',
);
const dims = fc.array(fc.oneof(fc.integer({ min: -2, max: 5 }), fc.constant(1e9), fc.double()), {
  maxLength: 5,
});

describe('decodeV2Request under arbitrary input', () => {
  it('arbitrary bytes, with and without a binary header length', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.option(fc.nat(400)), (bytes, len) => {
        decodeOrInvalid(() =>
          decodeV2Request(bytes, len === null ? undefined : parseHeaderLength(String(len), bytes.byteLength)),
        );
      }),
      { numRuns: 500 },
    );
  });

  it('structurally plausible requests with hostile shapes, types and data', () => {
    const input = fc.record({
      name: fc.oneof(fc.constantFrom('x', '__proto__', 'constructor', ''), fc.string()),
      datatype,
      shape: dims,
      data: fc.option(fc.jsonValue(), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(input, { maxLength: 3 }), fc.jsonValue(), (inputs, params) => {
        const body = Buffer.from(JSON.stringify({ inputs, parameters: params }));
        decodeOrInvalid(() => {
          const req = decodeV2Request(body);
          // What decodes is consistent: every tensor's data fits its shape.
          for (const t of Object.values(req.inputs)) {
            expect(t.data.length).toBe(t.dims.reduce((a, b) => a * b, 1));
          }
        });
      }),
      { numRuns: 500 },
    );
  });

  it('binary sections that claim more or less than is there', () => {
    fc.assert(
      fc.property(
        datatype,
        dims,
        fc.integer({ min: -5, max: 100 }),
        fc.uint8Array({ maxLength: 64 }),
        (dt, shape, size, data) => {
          const head = Buffer.from(
            JSON.stringify({
              inputs: [{ name: 'x', datatype: dt, shape, parameters: { binary_data_size: size } }],
            }),
          );
          decodeOrInvalid(() => decodeV2Request(Buffer.concat([head, data]), head.byteLength));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('binary round trip: what encodeV2Response writes, decodeV2Request reads back', () => {
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: true }), { minLength: 1, maxLength: 32 }), (values) => {
        const data = Float32Array.from(values);
        const enc = encodeV2Response(
          { name: 'm', version: '1' },
          'id',
          { y: { type: 'float32', dims: [data.length], data } },
          { outputs: undefined, binaryDataOutput: true },
        );
        // A response header has the same layout as a request's: re-read it as one.
        const header = JSON.parse(Buffer.from(enc.body.subarray(0, enc.headerLength)).toString());
        const asRequest = Buffer.from(
          JSON.stringify({ inputs: header.outputs.map((o: Record<string, unknown>) => ({ ...o })) }),
        );
        const req = decodeV2Request(
          Buffer.concat([asRequest, enc.body.subarray(enc.headerLength)]),
          asRequest.byteLength,
        );
        expect(Array.from(req.inputs.y!.data as Float32Array)).toEqual(Array.from(data));
      }),
      { numRuns: 200 },
    );
  });
});
