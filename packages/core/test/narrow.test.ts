import { describe, expect, expectTypeOf, it } from 'vitest';
import { asFloat32, asInt64, asString, asTensorOf } from '../src/narrow.js';
import { tensor } from '../src/tensor.js';
import type { Tensor, Tensors } from '../src/types.js';

describe('narrowing helpers', () => {
  const out: Tensors = {
    logits: tensor('float32', [0.25, 0.75], [1, 2]),
    ids: tensor('int64', [1n, 2n], [2]),
    text: tensor('string', ['a'], [1]),
  };

  it('return the tensor typed by its data type', () => {
    const logits = asFloat32(out.logits, 'logits');
    expectTypeOf(logits).toEqualTypeOf<Tensor<'float32'>>();
    expectTypeOf(logits.data).toEqualTypeOf<Float32Array>();
    expect(logits).toBe(out.logits);
    expect(Array.from(logits.data)).toEqual([0.25, 0.75]);
    expectTypeOf(asInt64(out.ids).data).toEqualTypeOf<BigInt64Array>();
    expect(asString(out.text).data).toEqual(['a']);
    expectTypeOf(asTensorOf('uint8', tensor('uint8', [1], [1])).data).toEqualTypeOf<Uint8Array>();
  });

  it('throw INVALID_ARGUMENT naming the tensor on a type mismatch or a missing output', () => {
    expect(() => asFloat32(out.ids, 'ids')).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        message: 'ids: expected a float32 tensor, got int64',
      }),
    );
    expect(() => asFloat32(out.logitz, 'logitz')).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT', message: 'logitz: no such tensor' }),
    );
    // A tensor whose data does not match its declared type is refused too.
    const lying = { type: 'float32', dims: [1], data: new Float64Array(1) } as unknown as Tensor;
    expect(() => asFloat32(lying)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
