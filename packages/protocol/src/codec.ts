import {
  BIGINT_RANGE,
  bytesPerElement,
  type DataType,
  elementCount,
  float16BitsToNumber,
  float32ToFloat16Bits,
  INT_RANGE,
  invalidArgument,
  type NumericTensorData,
  type Tensor,
  TYPED_ARRAY,
} from '@mlserve/core';

/**
 * Tensor encoding shared by every protocol and by clients: KServe V2 datatype names, JSON `data` arrays (flat or
 * nested) and the binary tensor extension's raw little-endian bytes. Everything here treats its
 * input as hostile: sizes are checked against what the client actually sent before anything is
 * allocated, so `shape: [1e9, 1e9]` with three numbers fails at once with INVALID_ARGUMENT.
 */

/** KServe V2 datatype name for each core type. */
export const V2_DATATYPE: Readonly<Record<DataType, string>> = Object.freeze({
  bool: 'BOOL',
  uint8: 'UINT8',
  uint16: 'UINT16',
  uint32: 'UINT32',
  uint64: 'UINT64',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  float16: 'FP16',
  float32: 'FP32',
  float64: 'FP64',
  string: 'BYTES',
});

const FROM_V2 = new Map<string, DataType>(Object.entries(V2_DATATYPE).map(([k, v]) => [v, k as DataType]));

/**
 * The core type of a V2 datatype name; INVALID_ARGUMENT for anything else (BF16 included).
 *
 * @example
 * ```ts
 * fromV2Datatype('FP32', 'input "x"'); // 'float32'
 * ```
 */
export function fromV2Datatype(value: unknown, what: string): DataType {
  const t = typeof value === 'string' ? FROM_V2.get(value) : undefined;
  if (!t) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 20)) : typeof value;
    throw invalidArgument(`${what}: unsupported datatype ${shown}`);
  }
  return t;
}

/** Deepest nesting of a JSON `data` array accepted (tensors of higher rank are not served). */
export const MAX_RANK = 32;

/**
 * Checks a client's shape: an array of at most {@link MAX_RANK} non-negative safe integers.
 *
 * @example
 * ```ts
 * const { dims, count } = parseShape([2, 3], 'input "x"'); // count 6, nothing allocated
 * ```
 */
export function parseShape(value: unknown, what: string): { dims: number[]; count: number } {
  if (!Array.isArray(value)) throw invalidArgument(`${what}: "shape" must be an array of integers`);
  if (value.length > MAX_RANK)
    throw invalidArgument(`${what}: rank ${value.length} is over the limit of ${MAX_RANK}`);
  const count = elementCount(value, what);
  return { dims: value as number[], count };
}

/**
 * Flattens a JSON `data` value (flat or nested arrays) into `out`, refusing to collect more than
 * `limit` elements or to nest deeper than {@link MAX_RANK}. Returns false when the limit is passed.
 */
function flattenInto(value: unknown, out: unknown[], limit: number, depth: number, what: string): boolean {
  if (!Array.isArray(value)) {
    if (out.length >= limit) return false;
    out.push(value);
    return true;
  }
  if (depth > MAX_RANK) throw invalidArgument(`${what}: "data" is nested deeper than ${MAX_RANK}`);
  for (const v of value) {
    if (Array.isArray(v)) {
      if (!flattenInto(v, out, limit, depth + 1, what)) return false;
    } else {
      if (out.length >= limit) return false;
      out.push(v);
    }
  }
  return true;
}

/**
 * Builds a tensor from V2 JSON `data`. The element count comes from the data the client sent and
 * must equal the product of the shape before the typed array is allocated. `nullAsNaN` reads
 * `null` as NaN in float tensors (how servers send NaN and the infinities; for response decoding).
 *
 * @example
 * ```ts
 * tensorFromJson('int32', [2, 2], 4, [[1, 2], [3, 4]], 'input "x"');
 * ```
 */
export function tensorFromJson(
  type: DataType,
  dims: number[],
  count: number,
  data: unknown,
  what: string,
  nullAsNaN = false,
): Tensor {
  if (data === undefined) throw invalidArgument(`${what}: "data" is missing`);
  // The common case: a flat array of plain numbers of exactly the right length goes straight into
  // the typed array, with no intermediate copy. Anything else (nested, wrong length, a non-number
  // element, a type with range checks) takes the general path below with its exact errors.
  if ((type === 'float32' || type === 'float64') && Array.isArray(data) && data.length === count) {
    const arr = type === 'float32' ? new Float32Array(count) : new Float64Array(count);
    let i = 0;
    for (; i < count; i++) {
      const v: unknown = data[i];
      if (typeof v !== 'number') break;
      arr[i] = v;
    }
    if (i === count) return { type, dims, data: arr };
  }
  const flat: unknown[] = [];
  if (!flattenInto(Array.isArray(data) ? data : [data], flat, count, 1, what) || flat.length !== count) {
    const got = flat.length === count ? 'more' : String(flat.length);
    throw invalidArgument(`${what}: shape [${dims.join(',')}] needs ${count} elements, "data" has ${got}`);
  }
  if (type === 'string') {
    const out = new Array<string>(count);
    for (let i = 0; i < count; i++) {
      const v = flat[i];
      if (typeof v !== 'string') throw invalidArgument(`${what}: BYTES element ${i} must be a string`);
      out[i] = v;
    }
    return { type, dims, data: out };
  }
  const arr = new TYPED_ARRAY[type](count) as NumericTensorData;
  const put = arr as unknown as (number | bigint)[];
  for (let i = 0; i < count; i++) {
    const v = flat[i];
    // Servers send NaN and the infinities as null (JSON has neither): a client reads them as NaN.
    put[i] = v === null && nullAsNaN && isFloat(type) ? floatNaN(type) : jsonElement(type, v, i, what);
  }
  return { type, dims, data: arr };
}

function isFloat(type: DataType): boolean {
  return type === 'float32' || type === 'float64' || type === 'float16';
}

function floatNaN(type: DataType): number {
  return type === 'float16' ? float32ToFloat16Bits(Number.NaN) : Number.NaN;
}

function jsonElement(type: DataType, v: unknown, i: number, what: string): number | bigint {
  if (type === 'bool') {
    if (v === true || v === 1) return 1;
    if (v === false || v === 0) return 0;
    throw invalidArgument(`${what}: BOOL element ${i} must be true or false`);
  }
  if (type === 'int64' || type === 'uint64') {
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw invalidArgument(`${what}: element ${i} must be an integer`);
    }
    const b = BigInt(v);
    const [lo, hi] = BIGINT_RANGE[type];
    if (b < lo || b > hi)
      throw invalidArgument(`${what}: element ${i} is out of range for ${V2_DATATYPE[type]}`);
    return b;
  }
  if (typeof v !== 'number') throw invalidArgument(`${what}: element ${i} must be a number`);
  const range = INT_RANGE[type];
  if (range && (!Number.isInteger(v) || v < range[0] || v > range[1])) {
    throw invalidArgument(`${what}: element ${i} (${v}) is not a valid ${V2_DATATYPE[type]}`);
  }
  return type === 'float16' ? float32ToFloat16Bits(v) : v;
}

/**
 * Builds a tensor from the binary extension's raw bytes (little-endian; BYTES as 4-byte length
 * prefixes). The byte count must match the shape exactly; the data is copied into an aligned
 * array so the request body is not kept alive.
 *
 * @example
 * ```ts
 * tensorFromBinary('float32', [2], 2, bytes.subarray(0, 8), 'input "x"');
 * ```
 */
export function tensorFromBinary(
  type: DataType,
  dims: number[],
  count: number,
  bytes: Uint8Array,
  what: string,
): Tensor {
  if (type === 'string') return { type, dims, data: splitLengthPrefixed(bytes, count, what) };
  const need = count * bytesPerElement(type);
  if (bytes.byteLength !== need) {
    throw invalidArgument(
      `${what}: shape [${dims.join(',')}] of ${V2_DATATYPE[type]} needs ${need} bytes, binary_data_size is ${bytes.byteLength}`,
    );
  }
  const arr = new TYPED_ARRAY[type](count) as NumericTensorData;
  new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength).set(bytes);
  if (type === 'bool') {
    for (let i = 0; i < count; i++)
      if ((arr as Uint8Array)[i]! > 1) throw invalidArgument(`${what}: BOOL byte ${i} is not 0 or 1`);
  }
  return { type, dims, data: arr };
}

/**
 * Splits BYTES elements: each is a 4-byte little-endian length, then that many bytes.
 *
 * @example
 * ```ts
 * splitLengthPrefixed(new Uint8Array([1, 0, 0, 0, 0x61]), 1, 'input "s"'); // [Uint8Array [0x61]]
 * ```
 */
export function splitLengthPrefixed(bytes: Uint8Array, count: number, what: string): Uint8Array[] {
  // Every element costs at least its 4-byte prefix: check before allocating the array.
  if (count * 4 > bytes.byteLength) {
    throw invalidArgument(`${what}: ${count} BYTES elements cannot fit in ${bytes.byteLength} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Array<Uint8Array>(count);
  let off = 0;
  for (let i = 0; i < count; i++) {
    if (off + 4 > bytes.byteLength)
      throw invalidArgument(`${what}: BYTES element ${i} length prefix is past the end`);
    const len = view.getUint32(off, true);
    off += 4;
    if (len > bytes.byteLength - off)
      throw invalidArgument(`${what}: BYTES element ${i} (${len} bytes) runs past the end`);
    out[i] = bytes.slice(off, off + len);
    off += len;
  }
  if (off !== bytes.byteLength)
    throw invalidArgument(`${what}: ${bytes.byteLength - off} bytes left after ${count} BYTES elements`);
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes UTF-8, failing with INVALID_ARGUMENT on invalid bytes.
 *
 * @example
 * ```ts
 * decodeUtf8(new Uint8Array([0x68, 0x69]), 'body'); // 'hi'
 * ```
 */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalidArgument(`${what}: invalid UTF-8`);
  }
}

const utf8Encoder = new TextEncoder();
const utf8Lenient = new TextDecoder('utf-8');

/**
 * UTF-8 bytes of a string (TextEncoder: no Buffer, so this also runs in browsers).
 *
 * @example
 * ```ts
 * encodeUtf8('hi'); // Uint8Array [0x68, 0x69]
 * ```
 */
export function encodeUtf8(text: string): Uint8Array {
  return utf8Encoder.encode(text);
}

/** A BYTES element as text: strings as they are, bytes decoded as UTF-8 (invalid sequences as U+FFFD). */
export function bytesElementToString(el: string | Uint8Array): string {
  return typeof el === 'string' ? el : utf8Lenient.decode(el);
}

/**
 * Joins byte arrays into one (the browser-safe `Buffer.concat`); one part is returned as it is.
 *
 * @example
 * ```ts
 * concatBytes([new Uint8Array([1]), new Uint8Array([2, 3])]); // Uint8Array [1, 2, 3]
 * ```
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let total = 0;
  for (const p of parts) total += p.byteLength;
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

/**
 * The raw bytes of a tensor as the binary extension sends them: little-endian element bytes (a
 * view on the tensor's own memory, not a copy), BYTES as 4-byte length prefixes and contents.
 *
 * @example
 * ```ts
 * const bytes = tensorToBinary(tensor('float32', [1, 2])); // 8 bytes, little-endian
 * ```
 */
export function tensorToBinary(t: Tensor): Uint8Array {
  if (t.type === 'string') {
    const els = t.data as (string | Uint8Array)[];
    const bodies = new Array<Uint8Array>(els.length);
    let total = 0;
    for (let i = 0; i < els.length; i++) {
      const el = els[i]!;
      const body = typeof el === 'string' ? utf8Encoder.encode(el) : el;
      bodies[i] = body;
      total += 4 + body.byteLength;
    }
    const out = new Uint8Array(total);
    const view = new DataView(out.buffer);
    let off = 0;
    for (const body of bodies) {
      view.setUint32(off, body.byteLength, true);
      out.set(body, off + 4);
      off += 4 + body.byteLength;
    }
    return out;
  }
  const d = t.data as NumericTensorData;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/**
 * A tensor's data as JSON text (int64 exact, FP16 as numbers, BYTES as strings).
 *
 * @example
 * ```ts
 * tensorDataToJson(tensor('int64', [2n ** 60n], [1])); // '[1152921504606846976]'
 * ```
 */
export function tensorDataToJson(t: Tensor): string {
  switch (t.type) {
    case 'string': {
      const els = (t.data as (string | Uint8Array)[]).map((el) => JSON.stringify(bytesElementToString(el)));
      return `[${els.join(',')}]`;
    }
    case 'bool':
      return `[${Array.from(t.data as Uint8Array, (v) => (v ? 'true' : 'false')).join(',')}]`;
    case 'float16':
      return `[${Array.from(t.data as Uint16Array, (v) => jsonNumber(float16BitsToNumber(v))).join(',')}]`;
    case 'int64':
    case 'uint64':
      return `[${Array.from(t.data as BigInt64Array, String).join(',')}]`;
    case 'float32':
    case 'float64': {
      // One string built in place: no array of per-element strings to allocate and join.
      const d = t.data as Float32Array | Float64Array;
      if (d.length === 0) return '[]';
      let s = `[${jsonNumber(d[0]!)}`;
      for (let i = 1; i < d.length; i++) s += `,${jsonNumber(d[i]!)}`;
      return `${s}]`;
    }
    default:
      return `[${(t.data as Int32Array).join(',')}]`;
  }
}

/** JSON has no NaN or Infinity: they are sent as null, as Python's json does not (it breaks the spec). */
function jsonNumber(v: number): string {
  return Number.isFinite(v) ? String(v) : 'null';
}

/**
 * A tensor's elements as plain JS values, nested by its dims (for TF Serving responses).
 *
 * @example
 * ```ts
 * tensorToNested(tensor('float32', [1, 2, 3, 4], [2, 2])); // [[1, 2], [3, 4]]
 * ```
 */
export function tensorToNested(t: Tensor, skipLeading = 0): unknown {
  const flat = plainElements(t);
  const dims = t.dims.slice(skipLeading);
  if (dims.length === 0) return flat[0];
  let level: unknown[] = flat;
  for (let d = dims.length - 1; d >= 1; d--) {
    const size = dims[d]!;
    const next: unknown[] = [];
    for (let i = 0; i < level.length; i += size) next.push(level.slice(i, i + size));
    level = next;
  }
  return level;
}

/**
 * A tensor's elements as plain JS values (int64 as numbers, BYTES as strings).
 *
 * @example
 * ```ts
 * plainElements(tensor('bool', [true, false])); // [true, false]
 * ```
 */
export function plainElements(t: Tensor): unknown[] {
  switch (t.type) {
    case 'string':
      return (t.data as (string | Uint8Array)[]).map(bytesElementToString);
    case 'bool':
      return Array.from(t.data as Uint8Array, (v) => v === 1);
    case 'float16':
      return Array.from(t.data as Uint16Array, float16BitsToNumber);
    case 'int64':
    case 'uint64':
      return Array.from(t.data as BigInt64Array, Number);
    default:
      return Array.from(t.data as Float32Array);
  }
}
