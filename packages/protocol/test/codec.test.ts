import { isServeError } from '@mlserve/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { tensorDataToJson, tensorFromJson } from '../src/codec.js';

/** Builds a tensor through the general path only (nested one level: never taken by the fast path). */
function general(type: 'float32' | 'float64', data: number[]) {
  return tensorFromJson(type, [data.length], data.length, [data], 'x');
}

describe('tensorFromJson: flat float data', () => {
  it('gives the same tensor as the general path for any flat FP32/FP64 array', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('float32' as const, 'float64' as const),
        fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { maxLength: 50 }),
        (type, data) => {
          const fast = tensorFromJson(type, [data.length], data.length, data, 'x');
          const slow = general(type, data);
          expect(fast.data).toBeInstanceOf(type === 'float32' ? Float32Array : Float64Array);
          expect(Array.from(fast.data as Float32Array)).toEqual(Array.from(slow.data as Float32Array));
        },
      ),
    );
  });

  it('still rejects a non-number element with its index', () => {
    let err: unknown;
    try {
      tensorFromJson('float32', [3], 3, [1, '2', 3], 'input "x"');
    } catch (e) {
      err = e;
    }
    expect(isServeError(err)).toBe(true);
    expect((err as Error).message).toBe('input "x": element 1 must be a number');
  });

  it('still rejects null, booleans and nested arrays of the wrong size', () => {
    for (const data of [
      [1, null],
      [true, 1],
      [[1, 2], 3],
    ]) {
      expect(() => tensorFromJson('float32', [2], 2, data, 'x')).toThrow(/element|elements/);
    }
  });

  it('still checks the count against the shape', () => {
    expect(() => tensorFromJson('float32', [3], 3, [1, 2], 'x')).toThrow(/needs 3 elements, "data" has 2/);
    expect(() => tensorFromJson('float32', [1], 1, [1, 2], 'x')).toThrow(/needs 1 elements, "data" has more/);
  });
});

describe('tensorDataToJson: float data', () => {
  it('is exactly JSON.stringify of the values (NaN and Infinity as null)', () => {
    fc.assert(
      fc.property(fc.array(fc.double(), { maxLength: 40 }), (values) => {
        const d = Float64Array.from(values);
        // JSON.stringify's own text (-0 as 0, NaN and Infinity as null).
        expect(tensorDataToJson({ type: 'float64', dims: [d.length], data: d })).toBe(
          JSON.stringify(Array.from(d)),
        );
      }),
    );
  });

  it('writes float32 values as JS numbers round-trip exactly', () => {
    const d = Float32Array.from([0.1, -2.5, 3e38, 1e-45]);
    expect(tensorDataToJson({ type: 'float32', dims: [4], data: d })).toBe(`[${Array.from(d).join(',')}]`);
    expect(tensorDataToJson({ type: 'float32', dims: [0], data: new Float32Array(0) })).toBe('[]');
  });
});
