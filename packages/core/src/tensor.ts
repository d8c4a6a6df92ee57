import { invalidArgument } from './errors.js';
import type { DataType, NumericTensorData, Tensor, TensorData, TensorDataMap } from './types.js';

type TypedArrayConstructor =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | BigInt64ArrayConstructor
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor
  | Uint32ArrayConstructor
  | BigUint64ArrayConstructor;

/** The typed array class of each numeric type. */
export const TYPED_ARRAY: Readonly<Record<Exclude<DataType, 'string'>, TypedArrayConstructor>> =
  Object.freeze({
    float32: Float32Array,
    float64: Float64Array,
    float16: Uint16Array,
    int8: Int8Array,
    int16: Int16Array,
    int32: Int32Array,
    int64: BigInt64Array,
    uint8: Uint8Array,
    uint16: Uint16Array,
    uint32: Uint32Array,
    uint64: BigUint64Array,
    bool: Uint8Array,
  });

/** Every data type, in a stable order. */
export const DATA_TYPES: readonly DataType[] = Object.freeze([
  'float32',
  'float64',
  'float16',
  'int8',
  'int16',
  'int32',
  'int64',
  'uint8',
  'uint16',
  'uint32',
  'uint64',
  'bool',
  'string',
]);

/** True for a known {@link DataType} name. */
export function isDataType(value: unknown): value is DataType {
  return typeof value === 'string' && (DATA_TYPES as readonly string[]).includes(value);
}

/** Bytes per element of a numeric type (string has none: 0). */
export function bytesPerElement(type: DataType): number {
  return type === 'string' ? 0 : TYPED_ARRAY[type].BYTES_PER_ELEMENT;
}

/**
 * The number of elements dims describe. Throws INVALID_ARGUMENT for a dim that is not a
 * non-negative safe integer, or a product past `Number.MAX_SAFE_INTEGER`; never allocates.
 */
export function elementCount(dims: readonly unknown[], what = 'tensor'): number {
  let n = 1;
  for (let i = 0; i < dims.length; i++) {
    const d = dims[i];
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw invalidArgument(`${what}: dim ${i} must be a non-negative integer, got ${formatValue(d)}`);
    }
    n *= d;
    if (n > Number.MAX_SAFE_INTEGER) throw invalidArgument(`${what}: shape [${dims.join(',')}] is too large`);
  }
  return n;
}

function formatValue(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return JSON.stringify(v.length > 20 ? `${v.slice(0, 20)}...` : v);
  if (v === null) return 'null';
  return typeof v;
}

/** True when `data` is the right array for `type`. */
export function dataMatchesType(type: DataType, data: unknown): boolean {
  if (type === 'string') {
    if (!Array.isArray(data)) return false;
    if (data.length === 0) return true;
    const stringy = typeof data[0] === 'string';
    for (const el of data) {
      if (stringy ? typeof el !== 'string' : !(el instanceof Uint8Array)) return false;
    }
    return true;
  }
  const ctor = TYPED_ARRAY[type];
  if (!(data instanceof ctor)) return false;
  // Uint8Array also covers Buffer; Uint8ClampedArray is not a Uint8Array instance.
  return true;
}

/**
 * Checks that a value is a well-formed tensor: a known type, dims of non-negative safe integers,
 * data of the right array class whose length is the product of dims. Throws INVALID_ARGUMENT
 * naming `what`. Use it on anything that came from outside.
 */
export function assertTensor(value: unknown, what = 'tensor'): asserts value is Tensor {
  if (typeof value !== 'object' || value === null) throw invalidArgument(`${what}: not a tensor`);
  const t = value as { type?: unknown; dims?: unknown; data?: unknown };
  if (!isDataType(t.type)) throw invalidArgument(`${what}: unknown data type ${formatValue(t.type)}`);
  if (!Array.isArray(t.dims)) throw invalidArgument(`${what}: dims must be an array`);
  const n = elementCount(t.dims, what);
  if (!dataMatchesType(t.type, t.data)) {
    throw invalidArgument(`${what}: data is not a ${describeArray(t.type)}`);
  }
  const len = (t.data as { length: number }).length;
  if (len !== n) {
    throw invalidArgument(`${what}: shape [${t.dims.join(',')}] needs ${n} elements, data has ${len}`);
  }
}

function describeArray(type: DataType): string {
  if (type === 'string') return 'string[] or Uint8Array[]';
  return TYPED_ARRAY[type].name;
}

/** What `tensor()` accepts as data: the exact array, or plain numbers / bigints / booleans to convert. */
export type TensorInput<T extends DataType> =
  | TensorDataMap[T]
  | (T extends 'string'
      ? readonly string[]
      : T extends 'int64' | 'uint64'
        ? readonly (bigint | number)[]
        : never)
  | (T extends 'bool' ? readonly boolean[] : never)
  | (T extends 'string' | 'int64' | 'uint64' ? never : readonly number[]);

/**
 * Builds a validated tensor. Plain arrays are converted to the type's typed array (with range
 * checks for 64-bit integers); typed arrays are used as they are, without a copy.
 *
 * @example
 * ```ts
 * const x = tensor('float32', [1, 2, 3, 4], [2, 2]);
 * const ids = tensor('int64', [101n, 2023n], [1, 2]);
 * ```
 */
export function tensor<T extends DataType>(
  type: T,
  data: TensorInput<T>,
  dims?: readonly number[],
): Tensor<T> {
  if (!isDataType(type)) throw invalidArgument(`unknown data type ${formatValue(type)}`);
  const converted = toTensorData(type, data as unknown);
  const shape = dims ? [...dims] : [converted.length];
  const t = { type, dims: shape, data: converted as TensorDataMap[T] };
  assertTensor(t);
  return t;
}

function toTensorData(type: DataType, data: unknown): TensorData {
  if (dataMatchesType(type, data)) return data as TensorData;
  if (!Array.isArray(data)) {
    if (type !== 'string' && ArrayBuffer.isView(data)) {
      throw invalidArgument(
        `data for ${type} must be a ${describeArray(type)}, got ${data.constructor.name}`,
      );
    }
    throw invalidArgument(`data for ${type} must be an array`);
  }
  if (type === 'string') throw invalidArgument('string data must be all strings or all Uint8Arrays');
  const ctor = TYPED_ARRAY[type];
  const out = new ctor(data.length);
  for (let i = 0; i < data.length; i++) {
    (out as unknown as unknown[])[i] = convertElement(type, data[i], i);
  }
  return out as NumericTensorData;
}

/** The inclusive range of each integer type that fits a JS number exactly. */
export const INT_RANGE: Readonly<Partial<Record<DataType, readonly [number, number]>>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
};

/** The inclusive range of each 64-bit integer type, as bigints. */
export const BIGINT_RANGE: Readonly<Record<'int64' | 'uint64', readonly [bigint, bigint]>> = Object.freeze({
  int64: [-(2n ** 63n), 2n ** 63n - 1n],
  uint64: [0n, 2n ** 64n - 1n],
});

function convertElement(type: DataType, v: unknown, i: number): number | bigint {
  if (type === 'bool') {
    if (v === true || v === 1) return 1;
    if (v === false || v === 0) return 0;
    throw invalidArgument(`element ${i}: expected a boolean, got ${formatValue(v)}`);
  }
  if (type === 'int64' || type === 'uint64') {
    let b: bigint;
    if (typeof v === 'bigint') b = v;
    else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
    else throw invalidArgument(`element ${i}: expected an integer, got ${formatValue(v)}`);
    const [lo, hi] = BIGINT_RANGE[type];
    if (b < lo || b > hi) throw invalidArgument(`element ${i}: ${b} is out of range for ${type}`);
    return b;
  }
  if (typeof v !== 'number') throw invalidArgument(`element ${i}: expected a number, got ${formatValue(v)}`);
  const range = INT_RANGE[type];
  if (range) {
    if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
      throw invalidArgument(`element ${i}: ${v} is not a valid ${type}`);
    }
  }
  if (type === 'float16') return float32ToFloat16Bits(v);
  return v;
}

/** IEEE 754 half-float bits for a number (round to nearest even). */
export function float32ToFloat16Bits(value: number): number {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  let exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  exp = exp - 127 + 15;
  if (exp >= 0x1f) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - exp;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = sign | (exp << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return half;
}

/** The number a half-float's bits stand for. */
export function float16BitsToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (mant / 1024);
  if (exp === 0x1f) return mant ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exp - 15) * (1 + mant / 1024);
}

/** UTF-8 length of a string without encoding it (no Buffer: core also runs in browsers). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Bytes a tensor's data occupies (strings: their UTF-8 / raw byte lengths). */
export function byteSize(t: Tensor): number {
  if (t.type === 'string') {
    let n = 0;
    for (const el of t.data as (string | Uint8Array)[]) {
      n += typeof el === 'string' ? utf8Length(el) : el.byteLength;
    }
    return n;
  }
  return (t.data as NumericTensorData).byteLength;
}

/** Elements in one row along dim 0 (the product of the other dims). */
export function rowSize(t: Tensor): number {
  let n = 1;
  for (let i = 1; i < t.dims.length; i++) n *= t.dims[i]!;
  return n;
}

/**
 * Joins tensors along dim 0. All must share type, rank and the dims after the first.
 * One tensor is returned as it is (no copy).
 *
 * @example
 * ```ts
 * const both = concat([tensor('float32', [1, 2], [1, 2]), tensor('float32', [3, 4], [1, 2])]); // dims [2, 2]
 * ```
 */
export function concat(tensors: readonly Tensor[]): Tensor {
  const first = tensors[0];
  if (!first) throw invalidArgument('concat needs at least one tensor');
  if (tensors.length === 1) return first;
  if (first.dims.length === 0) throw invalidArgument('concat: scalars have no batch dim');
  let rows = 0;
  for (const t of tensors) {
    if (t.type !== first.type) throw invalidArgument(`concat: type ${t.type} differs from ${first.type}`);
    if (t.dims.length !== first.dims.length) throw invalidArgument('concat: ranks differ');
    for (let d = 1; d < t.dims.length; d++) {
      if (t.dims[d] !== first.dims[d]) {
        throw invalidArgument(
          `concat: dims [${t.dims.join(',')}] and [${first.dims.join(',')}] differ after dim 0`,
        );
      }
    }
    rows += t.dims[0]!;
  }
  const dims = [rows, ...first.dims.slice(1)];
  if (first.type === 'string') {
    const out: (string | Uint8Array)[] = [];
    for (const t of tensors) for (const el of t.data as (string | Uint8Array)[]) out.push(el);
    return { type: 'string', dims, data: out as string[] | Uint8Array[] };
  }
  let total = 0;
  for (const t of tensors) total += t.data.length;
  const ctor = TYPED_ARRAY[first.type];
  const out = new ctor(total) as NumericTensorData;
  let offset = 0;
  for (const t of tensors) {
    (out as Float32Array).set(t.data as Float32Array, offset);
    offset += t.data.length;
  }
  return { type: first.type, dims, data: out };
}

/**
 * Rows `start` (inclusive) to `end` (exclusive) along dim 0, as a copy: the result never keeps the
 * source's buffer alive.
 */
export function sliceRows(t: Tensor, start: number, end: number): Tensor {
  if (t.dims.length === 0) throw invalidArgument('sliceRows: scalars have no batch dim');
  const rows = t.dims[0]!;
  if (
    !(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && end >= start && end <= rows)
  ) {
    throw invalidArgument(`sliceRows: rows ${start}..${end} are outside 0..${rows}`);
  }
  const per = rowSize(t);
  const dims = [end - start, ...t.dims.slice(1)];
  if (t.type === 'string') {
    return { type: 'string', dims, data: (t.data as string[]).slice(start * per, end * per) };
  }
  return { type: t.type, dims, data: (t.data as Float32Array).slice(start * per, end * per) };
}

/**
 * Splits a tensor along dim 0 into parts of the given row counts (which must add up to dim 0).
 * Each part is a copy.
 *
 * @example
 * ```ts
 * const [a, b] = split(batchOutput, [1, 3]);
 * ```
 */
export function split(t: Tensor, sizes: readonly number[]): Tensor[] {
  let total = 0;
  for (const s of sizes) {
    if (!Number.isSafeInteger(s) || s < 0) throw invalidArgument(`split: bad size ${s}`);
    total += s;
  }
  if (t.dims.length === 0 || total !== t.dims[0]) {
    throw invalidArgument(`split: sizes add up to ${total}, but dim 0 is ${t.dims[0] ?? 'missing'}`);
  }
  const out: Tensor[] = [];
  let start = 0;
  for (const s of sizes) {
    out.push(sliceRows(t, start, start + s));
    start += s;
  }
  return out;
}

/** A deep copy of a tensor whose data owns exactly its bytes. */
export function cloneTensor<T extends DataType>(t: Tensor<T>): Tensor<T> {
  if (t.type === 'string') {
    const data = (t.data as (string | Uint8Array)[]).map((el) => (typeof el === 'string' ? el : el.slice()));
    return { type: t.type, dims: [...t.dims], data: data as TensorDataMap[T] };
  }
  return {
    type: t.type,
    dims: [...t.dims],
    data: (t.data as Float32Array).slice() as unknown as TensorDataMap[T],
  };
}

/** `float32[-1,1,28,28]`: how messages print a type and shape. */
export function formatSignature(type: string, dims: readonly number[]): string {
  return `${type}[${dims.join(',')}]`;
}

/** Whether two tensors have equal type, dims and elements. */
export function tensorsEqual(a: Tensor, b: Tensor): boolean {
  if (a.type !== b.type || a.dims.length !== b.dims.length) return false;
  for (let i = 0; i < a.dims.length; i++) if (a.dims[i] !== b.dims[i]) return false;
  if (a.data.length !== b.data.length) return false;
  if (a.type === 'string') {
    const x = a.data as (string | Uint8Array)[];
    const y = b.data as (string | Uint8Array)[];
    for (let i = 0; i < x.length; i++) {
      const p = x[i]!;
      const q = y[i]!;
      if (typeof p === 'string' || typeof q === 'string') {
        if (p !== q) return false;
      } else if (!bytesEqual(p, q)) return false;
    }
    return true;
  }
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  for (let i = 0; i < x.length; i++) {
    if (x[i] !== y[i] && !(Number.isNaN(x[i]) && Number.isNaN(y[i]))) return false;
  }
  return true;
}
