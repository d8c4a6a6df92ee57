import { describe, expect, it } from 'vitest';
import {
  assertTensor,
  byteSize,
  cloneTensor,
  concat,
  DATA_TYPES,
  elementCount,
  float16BitsToNumber,
  float32ToFloat16Bits,
  isServeError,
  sliceRows,
  split,
  type Tensor,
  tensor,
  tensorsEqual,
} from '../src/index.js';

function expectInvalid(fn: () => unknown, message?: RegExp) {
  try {
    fn();
  } catch (err) {
    expect(isServeError(err)).toBe(true);
    expect((err as { code: string }).code).toBe('INVALID_ARGUMENT');
    expect((err as { status: number }).status).toBe(400);
    if (message) expect((err as Error).message).toMatch(message);
    return;
  }
  throw new Error('expected an INVALID_ARGUMENT ServeError');
}

describe('tensor()', () => {
  it('builds each type with the onnxruntime array class', () => {
    expect(tensor('float32', [1, 2]).data).toBeInstanceOf(Float32Array);
    expect(tensor('float64', [1, 2]).data).toBeInstanceOf(Float64Array);
    expect(tensor('float16', [1, 2]).data).toBeInstanceOf(Uint16Array);
    expect(tensor('int8', [1, -2]).data).toBeInstanceOf(Int8Array);
    expect(tensor('int16', [1, 2]).data).toBeInstanceOf(Int16Array);
    expect(tensor('int32', [1, 2]).data).toBeInstanceOf(Int32Array);
    expect(tensor('int64', [1n, 2]).data).toBeInstanceOf(BigInt64Array);
    expect(tensor('uint8', [1, 2]).data).toBeInstanceOf(Uint8Array);
    expect(tensor('uint16', [1, 2]).data).toBeInstanceOf(Uint16Array);
    expect(tensor('uint32', [1, 2]).data).toBeInstanceOf(Uint32Array);
    expect(tensor('uint64', [1n, 2]).data).toBeInstanceOf(BigUint64Array);
    expect(tensor('bool', [true, false]).data).toEqual(new Uint8Array([1, 0]));
    expect(tensor('string', ['a', 'b']).data).toEqual(['a', 'b']);
    expect(tensor('string', [new Uint8Array([1]), new Uint8Array([2, 3])]).dims).toEqual([2]);
  });

  it('uses a typed array as it is, without a copy', () => {
    const data = new Float32Array(6);
    const t = tensor('float32', data, [2, 3]);
    expect(t.data).toBe(data);
    expect(t.dims).toEqual([2, 3]);
  });

  it('rejects data whose length differs from the product of dims', () => {
    expectInvalid(() => tensor('float32', [1, 2, 3], [2, 2]), /needs 4 elements, data has 3/);
  });

  it('rejects negative, fractional, NaN and unsafe dims', () => {
    expectInvalid(() => tensor('float32', [], [-1]), /dim 0 must be a non-negative integer, got -1/);
    expectInvalid(() => tensor('float32', [1], [0.5]), /got 0.5/);
    expectInvalid(() => tensor('float32', [1], [Number.NaN]), /got NaN/);
    expectInvalid(() => tensor('float32', [1], [2 ** 60]), /non-negative integer/);
  });

  it('rejects a huge shape with tiny data without allocating', () => {
    const before = process.memoryUsage().arrayBuffers;
    expectInvalid(() => tensor('float32', [1], [1e9, 1e9]), /too large|needs/);
    expectInvalid(
      () => assertTensor({ type: 'float32', dims: [1e9, 1e9], data: new Float32Array(1) }),
      /too large/,
    );
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(1e6);
  });

  it('rejects the wrong array class and unknown types', () => {
    expectInvalid(() => tensor('float32', new Float64Array(2) as never), /Float32Array/);
    expectInvalid(
      () => assertTensor({ type: 'float32', dims: [2], data: new Float64Array(2) }),
      /not a Float32Array/,
    );
    expectInvalid(() => tensor('complex64' as never, [1] as never), /unknown data type "complex64"/);
    expectInvalid(() => tensor('int64', [1.5]), /expected an integer/);
    expectInvalid(() => tensor('int64', [2n ** 63n]), /out of range/);
    expectInvalid(() => tensor('uint8', [256]), /not a valid uint8/);
    expectInvalid(() => tensor('int8', [1.5]), /not a valid int8/);
    expectInvalid(() => tensor('bool', [2]), /expected a boolean/);
    expectInvalid(() => tensor('float32', ['1' as never]), /expected a number/);
    expectInvalid(
      () => tensor('string', ['a', new Uint8Array(1)] as never),
      /all strings or all Uint8Arrays/,
    );
  });

  it('assertTensor rejects non-objects and missing fields', () => {
    expectInvalid(() => assertTensor(null), /not a tensor/);
    expectInvalid(
      () => assertTensor({ type: 'float32', dims: 'x', data: new Float32Array(1) }),
      /dims must be an array/,
    );
    expectInvalid(() => assertTensor({ type: 'float32', dims: [1] }), /data is not/);
  });

  it('counts elements and bytes', () => {
    expect(elementCount([])).toBe(1);
    expect(elementCount([2, 0, 5])).toBe(0);
    expect(byteSize(tensor('float32', new Float32Array(6), [2, 3]))).toBe(24);
    expect(byteSize(tensor('int64', [1n, 2n]))).toBe(16);
    expect(byteSize(tensor('string', ['ab', 'é']))).toBe(4);
    expect(DATA_TYPES).toHaveLength(13);
  });

  it('converts float16 both ways', () => {
    for (const v of [0, 1, -2, 0.5, 65504, 0.000061035156, 3.140625]) {
      expect(float16BitsToNumber(float32ToFloat16Bits(v))).toBeCloseTo(v, 6);
    }
    expect(float16BitsToNumber(float32ToFloat16Bits(1e6))).toBe(Number.POSITIVE_INFINITY);
    expect(Number.isNaN(float16BitsToNumber(float32ToFloat16Bits(Number.NaN)))).toBe(true);
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
  });
});

describe('concat and split along the batch axis', () => {
  const a = tensor('float32', [1, 2, 3, 4], [2, 2]);
  const b = tensor('float32', [5, 6], [1, 2]);

  it('concatenates rows and splits them back exactly', () => {
    const ab = concat([a, b]);
    expect(ab.dims).toEqual([3, 2]);
    expect([...(ab.data as Float32Array)]).toEqual([1, 2, 3, 4, 5, 6]);
    const [a2, b2] = split(ab, [2, 1]);
    expect(tensorsEqual(a2!, a)).toBe(true);
    expect(tensorsEqual(b2!, b)).toBe(true);
  });

  it('works for int64 and string tensors', () => {
    const x = concat([tensor('int64', [1n], [1, 1]), tensor('int64', [2n, 3n], [2, 1])]);
    expect([...(x.data as BigInt64Array)]).toEqual([1n, 2n, 3n]);
    const s = concat([tensor('string', ['a'], [1]), tensor('string', ['b', 'c'], [2])]);
    expect(s.data).toEqual(['a', 'b', 'c']);
    expect(split(s, [2, 1]).map((t) => t.data)).toEqual([['a', 'b'], ['c']]);
  });

  it('returns a single tensor as it is', () => {
    expect(concat([a])).toBe(a);
  });

  it('refuses mismatched types, ranks and inner dims', () => {
    expectInvalid(() => concat([]), /at least one/);
    expectInvalid(() => concat([a, tensor('float64', [1, 2], [1, 2])]), /type float64 differs/);
    expectInvalid(() => concat([a, tensor('float32', [1, 2, 3], [1, 3])]), /differ after dim 0/);
    expectInvalid(() => concat([a, tensor('float32', [1, 2], [2])]), /ranks differ/);
    expectInvalid(() => split(a, [1, 2]), /add up to 3, but dim 0 is 2/);
    expectInvalid(() => sliceRows(a, 1, 5), /outside/);
  });

  it('sliceRows refuses fractional and NaN bounds instead of returning a malformed tensor', () => {
    // Found by the reliability suite's fuzzing: sliceRows(t, 0, 5e-324) returned dims [5e-324].
    expectInvalid(() => sliceRows(a, 0, 5e-324), /outside/);
    expectInvalid(() => sliceRows(a, 0.5, 1.5), /outside/);
    expectInvalid(() => sliceRows(a, 0, Number.NaN), /outside/);
  });

  it('split parts own their bytes: they do not keep the batch buffer alive', () => {
    const big = tensor('float32', new Float32Array(1000), [100, 10]);
    const [first] = split(big, [1, 99]);
    const data = first!.data as Float32Array;
    expect(data.buffer).not.toBe((big.data as Float32Array).buffer);
    expect(data.buffer.byteLength).toBe(40);
  });

  it('cloneTensor copies data and dims deeply', () => {
    const bytes = tensor('string', [new Uint8Array([1, 2])]);
    const c = cloneTensor(bytes);
    (c.data as Uint8Array[])[0]![0] = 9;
    expect((bytes.data as Uint8Array[])[0]![0]).toBe(1);
    const f = cloneTensor(a);
    (f.data as Float32Array)[0] = 42;
    expect((a.data as Float32Array)[0]).toBe(1);
  });

  it('tensorsEqual compares type, dims and elements', () => {
    expect(tensorsEqual(a, tensor('float32', [1, 2, 3, 4], [2, 2]))).toBe(true);
    expect(tensorsEqual(a, tensor('float32', [1, 2, 3, 4], [4, 1]))).toBe(false);
    expect(tensorsEqual(a, tensor('float32', [1, 2, 3, 5], [2, 2]))).toBe(false);
    const t: Tensor = tensor('float32', [Number.NaN]);
    expect(tensorsEqual(t, tensor('float32', [Number.NaN]))).toBe(true);
  });
});

describe('browser safety', () => {
  it('counts UTF-8 bytes like Buffer does, surrogate pairs included', () => {
    for (const s of ['', 'abc', 'é', '€', '😀', 'a😀b', '\ud800']) {
      expect(byteSize(tensor('string', [s]))).toBe(Buffer.byteLength(s));
    }
  });
});
