import { invalidArgument } from './errors.js';
import { dataMatchesType } from './tensor.js';
import type { DataType, Tensor } from './types.js';

/**
 * Narrows a tensor of an untyped model's result to one data type, so its `data` is the exact array
 * (`Float32Array` rather than a union of every array type). Throws INVALID_ARGUMENT when the tensor
 * is absent (a misspelt output name) or of another type, naming `what`.
 *
 * @example
 * ```ts
 * import { asTensorOf, tensor } from '@mlserve/core';
 *
 * const out = { logits: tensor('float32', [0.1, 0.9], [1, 2]) } as Record<string, ReturnType<typeof tensor>>;
 * const logits = asTensorOf('float32', out.logits, 'logits'); // Tensor<'float32'>
 * console.log(logits.data[1]); // 0.9 (as float32)
 * ```
 */
export function asTensorOf<T extends DataType>(type: T, t: Tensor | undefined, what = 'tensor'): Tensor<T> {
  if (t === undefined || t === null) throw invalidArgument(`${what}: no such tensor`);
  if (t.type !== type || !dataMatchesType(type, t.data)) {
    throw invalidArgument(`${what}: expected a ${type} tensor, got ${String(t.type)}`);
  }
  return t as Tensor<T>;
}

/** {@link asTensorOf} for float32: `asFloat32(out.logits).data` is a `Float32Array`. */
export const asFloat32 = (t: Tensor | undefined, what?: string): Tensor<'float32'> =>
  asTensorOf('float32', t, what);
/** {@link asTensorOf} for float64. */
export const asFloat64 = (t: Tensor | undefined, what?: string): Tensor<'float64'> =>
  asTensorOf('float64', t, what);
/** {@link asTensorOf} for int32. */
export const asInt32 = (t: Tensor | undefined, what?: string): Tensor<'int32'> =>
  asTensorOf('int32', t, what);
/** {@link asTensorOf} for int64 (`BigInt64Array` data). */
export const asInt64 = (t: Tensor | undefined, what?: string): Tensor<'int64'> =>
  asTensorOf('int64', t, what);
/** {@link asTensorOf} for uint8. */
export const asUint8 = (t: Tensor | undefined, what?: string): Tensor<'uint8'> =>
  asTensorOf('uint8', t, what);
/** {@link asTensorOf} for bool (0/1 in a `Uint8Array`). */
export const asBool = (t: Tensor | undefined, what?: string): Tensor<'bool'> => asTensorOf('bool', t, what);
/** {@link asTensorOf} for string tensors. */
export const asString = (t: Tensor | undefined, what?: string): Tensor<'string'> =>
  asTensorOf('string', t, what);
