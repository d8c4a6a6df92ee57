import {
  type DataType,
  float16BitsToNumber,
  formatSignature,
  internal,
  invalidArgument,
  type Tensor,
  type TensorInfo,
} from '@mlserve/core';
import type * as tf from '@tensorflow/tfjs';

/** The element types tfjs has that map onto core types. */
export type TfDtype = 'float32' | 'int32' | 'bool' | 'string';

const TF_TYPES: ReadonlySet<string> = new Set(['float32', 'int32', 'bool', 'string']);

/**
 * The core type for a tfjs dtype (`complex64` has none: INTERNAL).
 *
 * @example
 * ```ts
 * coreType('int32'); // 'int32'
 * ```
 */
export function coreType(dtype: string | undefined): DataType {
  if (dtype === undefined) return 'float32';
  if (TF_TYPES.has(dtype)) return dtype as DataType;
  throw internal(`tfjs dtype "${dtype}" has no mlserve equivalent`);
}

const FLOAT32_MAX = 3.4028234663852886e38;
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

/** The values of a numeric core tensor as plain numbers (bigints range-checked to be exact). */
function numbersOf(name: string, t: Tensor): ArrayLike<number> {
  switch (t.type) {
    case 'float16': {
      const bits = t.data as Uint16Array;
      const out = new Float32Array(bits.length);
      for (let i = 0; i < bits.length; i++) out[i] = float16BitsToNumber(bits[i] as number);
      return out;
    }
    case 'int64':
    case 'uint64': {
      const big = t.data as BigInt64Array | BigUint64Array;
      const out = new Float64Array(big.length);
      for (let i = 0; i < big.length; i++) {
        const v = big[i] as bigint;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
          throw invalidArgument(`input "${name}": ${t.type} value ${v} at index ${i} is out of range`);
        }
        out[i] = Number(v);
      }
      return out;
    }
    default:
      return t.data as ArrayLike<number>;
  }
}

/**
 * Converts a core tensor's data to what tfjs takes for `target`: same-type data is passed as is
 * (tfjs copies it into the backend); other numeric types are converted only where no value changes
 * meaning: integers must fit int32, floats must fit float32's range, bools must be 0 or 1.
 * Anything else is INVALID_ARGUMENT, never a silent wrap.
 *
 * @example
 * ```ts
 * toTfData('ids', { type: 'int64', dims: [2], data: new BigInt64Array([1n, 2n]) }, 'int32'); // Int32Array [1, 2]
 * toTfData('ids', { type: 'int64', dims: [1], data: new BigInt64Array([2n ** 40n]) }, 'int32'); // throws INVALID_ARGUMENT
 * ```
 */
export function toTfData(
  name: string,
  t: Tensor,
  target: TfDtype,
): Float32Array | Int32Array | Uint8Array | string[] | Uint8Array[] {
  if (target === 'string') {
    if (t.type !== 'string') throw invalidArgument(`input "${name}": expected string, got ${t.type}`);
    return t.data as string[] | Uint8Array[];
  }
  if (t.type === 'string') throw invalidArgument(`input "${name}": expected ${target}, got string`);
  if (t.type === target) return t.data as Float32Array | Int32Array | Uint8Array;
  const values = numbersOf(name, t);
  const n = values.length;
  if (target === 'float32') {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const v = values[i] as number;
      if (Number.isFinite(v) && Math.abs(v) > FLOAT32_MAX) {
        throw invalidArgument(`input "${name}": ${t.type} value ${v} at index ${i} does not fit float32`);
      }
      out[i] = v;
    }
    return out;
  }
  if (target === 'int32') {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const v = values[i] as number;
      if (!Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
        throw invalidArgument(`input "${name}": ${t.type} value ${v} at index ${i} does not fit int32`);
      }
      out[i] = v;
    }
    return out;
  }
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const v = values[i] as number;
    if (v !== 0 && v !== 1)
      throw invalidArgument(`input "${name}": ${t.type} value ${v} at index ${i} is not a bool`);
    out[i] = v;
  }
  return out;
}

/** Checks rank and fixed dims against the declared signature (where the model declares one). */
export function checkDims(info: TensorInfo, t: Tensor, known: boolean): void {
  if (!known) return;
  const bad = () =>
    invalidArgument(
      `input "${info.name}": expected ${formatSignature(info.type, info.dims)}, got ${formatSignature(t.type, t.dims)}`,
    );
  if (t.dims.length !== info.dims.length) throw bad();
  for (let d = 0; d < info.dims.length; d++) {
    const want = info.dims[d] as number;
    if (want >= 0 && t.dims[d] !== want) throw bad();
  }
}

/** Copies a tf.Tensor out into a core Tensor that owns its data (the tf.Tensor is not disposed here). */
export async function fromTf(t: tf.Tensor): Promise<Tensor> {
  const dims = [...t.shape];
  switch (t.dtype) {
    case 'float32': {
      const data = (await t.data()) as Float32Array;
      return { type: 'float32', dims, data: data.slice() };
    }
    case 'int32': {
      const data = (await t.data()) as Int32Array;
      return { type: 'int32', dims, data: data.slice() };
    }
    case 'bool': {
      const data = (await t.data()) as Uint8Array;
      return { type: 'bool', dims, data: Uint8Array.from(data) };
    }
    case 'string': {
      const data = (await t.data()) as unknown as string[];
      return { type: 'string', dims, data: [...data] };
    }
    default:
      throw internal(`output dtype "${t.dtype}" has no mlserve equivalent`);
  }
}
