import { isServeError, type Tensor, type Tensors, tensorsEqual } from '@mlserve/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytesElementToString } from '../src/codec.js';
import {
  decodeV2Request,
  decodeV2Response,
  encodeV2Request,
  encodeV2Response,
  parseHeaderLength,
} from '../src/index.js';

/** Arbitrary tensors of every type whose values survive JSON exactly (no NaN, no infinities, int64 within 2^53). */
const tensorArb: fc.Arbitrary<Tensor> = fc
  .tuple(
    fc.constantFrom(
      'bool',
      'uint8',
      'int8',
      'uint16',
      'int16',
      'uint32',
      'int32',
      'int64',
      'uint64',
      'float16',
      'float32',
      'float64',
      'string',
    ),
    fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
  )
  .chain(([type, dims]) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const ints = (min: number, max: number) =>
      fc.array(fc.integer({ min, max }), { minLength: n, maxLength: n });
    const t = (data: Tensor['data']) => ({ type, dims, data }) as Tensor;
    switch (type) {
      case 'bool':
        return ints(0, 1).map((a) => t(Uint8Array.from(a)));
      case 'uint8':
        return ints(0, 255).map((a) => t(Uint8Array.from(a)));
      case 'int8':
        return ints(-128, 127).map((a) => t(Int8Array.from(a)));
      case 'uint16':
        return ints(0, 65535).map((a) => t(Uint16Array.from(a)));
      case 'int16':
        return ints(-32768, 32767).map((a) => t(Int16Array.from(a)));
      case 'uint32':
        return ints(0, 2 ** 32 - 1).map((a) => t(Uint32Array.from(a)));
      case 'int32':
        return ints(-(2 ** 31), 2 ** 31 - 1).map((a) => t(Int32Array.from(a)));
      case 'int64':
        return ints(-(2 ** 53) + 1, 2 ** 53 - 1).map((a) => t(BigInt64Array.from(a, BigInt)));
      case 'uint64':
        return ints(0, 2 ** 53 - 1).map((a) => t(BigUint64Array.from(a, BigInt)));
      case 'float16':
        // Finite half-precision bit patterns (exponent bits not all ones).
        return ints(0, 0xffff).map((a) =>
          t(Uint16Array.from(a, (v) => ((v & 0x7c00) === 0x7c00 ? v & 0x83ff : v))),
        );
      case 'float32':
        return fc
          .array(fc.float({ noNaN: true, noDefaultInfinity: true }), { minLength: n, maxLength: n })
          .map((a) => t(Float32Array.from(a)));
      case 'float64':
        return fc
          .array(fc.double({ noNaN: true, noDefaultInfinity: true }), { minLength: n, maxLength: n })
          .map((a) => t(Float64Array.from(a)));
      default:
        return fc.array(fc.string(), { minLength: n, maxLength: n }).map((a) => t(a));
    }
  });

/** Equal as values: BYTES compared as text (JSON carries strings, binary carries bytes). */
function same(a: Tensor, b: Tensor): boolean {
  if (a.type !== 'string') return tensorsEqual(a, b);
  const text = (t: Tensor) => ({ ...t, data: (t.data as (string | Uint8Array)[]).map(bytesElementToString) });
  return tensorsEqual(text(a), text(b));
}

const inputsArb = fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_]{0,8}$/), tensorArb, {
  minKeys: 1,
  maxKeys: 4,
});

describe('the client encoder and the server decoder agree', () => {
  it('encodeV2Request then decodeV2Request gives the same tensors, JSON or binary', () => {
    fc.assert(
      fc.property(
        inputsArb,
        fc.boolean(),
        fc.integer({ min: 0, max: 10_000_000 }),
        (inputs, binary, timeout) => {
          const enc = encodeV2Request(inputs, {
            id: 'r1',
            binary,
            timeoutUs: timeout,
            parameters: { k: 'v' },
          });
          expect(enc.headerLength !== undefined).toBe(binary && Object.values(inputs).length > 0);
          const req = decodeV2Request(enc.body, enc.headerLength);
          expect(req.id).toBe('r1');
          expect(req.timeoutUs).toBe(timeout);
          expect(req.parameters.k).toBe('v');
          expect(req.binaryDataOutput).toBe(binary);
          expect(Object.keys(req.inputs).sort()).toEqual(Object.keys(inputs).sort());
          for (const [name, t] of Object.entries(inputs)) expect(same(req.inputs[name]!, t)).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('encodeV2Response then decodeV2Response gives the same tensors, JSON or binary', () => {
    fc.assert(
      fc.property(inputsArb, fc.boolean(), (outputs, binary) => {
        const enc = encodeV2Response({ name: 'm', version: '3' }, 'id-7', outputs as Tensors, {
          outputs: undefined,
          binaryDataOutput: binary,
        });
        const res = decodeV2Response(enc.body, enc.headerLength);
        expect(res).toMatchObject({ id: 'id-7', modelName: 'm', modelVersion: '3' });
        for (const [name, t] of Object.entries(outputs)) expect(same(res.outputs[name]!, t)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('asks for outputs by name, with classification and per-output binary', () => {
    const enc = encodeV2Request(
      { x: { type: 'float32', dims: [1, 2], data: Float32Array.from([1, 2]) } },
      { outputs: ['a', { name: 'b', classification: 3, binary: false }], priority: 2 },
    );
    const req = decodeV2Request(enc.body, enc.headerLength);
    expect(req.outputs).toEqual([{ name: 'a' }, { name: 'b', classification: 3, binary: false }]);
    expect(req.priority).toBe(2);
  });

  it('reads null as NaN in float outputs (how NaN and the infinities travel in JSON)', () => {
    const values = Float32Array.from([Number.NaN, Number.POSITIVE_INFINITY, 1.5]);
    const enc = encodeV2Response(
      { name: 'm', version: '1' },
      undefined,
      { y: { type: 'float32', dims: [3], data: values } },
      {
        outputs: undefined,
        binaryDataOutput: false,
      },
    );
    expect(new TextDecoder().decode(enc.body)).toContain('[null,null,1.5]');
    const y = decodeV2Response(enc.body).outputs.y!;
    expect(Array.from(y.data as Float32Array)).toEqual([Number.NaN, Number.NaN, 1.5]);
  });

  it('refuses a response whose binary parts do not add up, with INVALID_ARGUMENT', () => {
    const enc = encodeV2Response(
      { name: 'm', version: '1' },
      undefined,
      { y: { type: 'float32', dims: [2], data: new Float32Array(2) } },
      {
        outputs: undefined,
        binaryDataOutput: true,
      },
    );
    for (const body of [enc.body.subarray(0, enc.body.byteLength - 1), new Uint8Array([...enc.body, 0])]) {
      let err: unknown;
      try {
        decodeV2Response(body, parseHeaderLength(String(enc.headerLength), body.byteLength));
      } catch (e) {
        err = e;
      }
      expect(isServeError(err) && err.code).toBe('INVALID_ARGUMENT');
    }
  });
});
