import { endianness } from 'node:os';
import {
  bytesPerElement,
  DATA_TYPES,
  type DataType,
  elementCount,
  type NumericTensorData,
  ServeError,
  type Tensor,
  type Tensors,
  TYPED_ARRAY,
} from '@mlserve/core';

/**
 * The binary layout tensors take in a shared store (Redis). All integers little-endian:
 *
 * ```
 * "MLC" u8 version(=1)  u32 tensorCount
 * per tensor:
 *   u16 nameBytes  name (UTF-8)  u8 typeCode  u8 rank  rank x f64 dims
 *   numeric: f64 byteLength, then the raw little-endian element bytes
 *   string:  per element: u8 kind (0 text, 1 bytes)  u32 byteLength  bytes
 * ```
 */
export const CODEC_VERSION = 1;

const MAGIC = [0x4d, 0x4c, 0x43] as const;
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

function typeCode(type: DataType): number {
  return DATA_TYPES.indexOf(type);
}

function corrupt(why: string): ServeError {
  return new ServeError('INTERNAL', `cache entry is corrupt: ${why}`);
}

/**
 * Encodes named tensors into one Buffer (a copy: the result shares no memory with the tensors).
 *
 * @example
 * ```ts
 * const bytes = encodeTensors({ logits });
 * const back = decodeTensors(bytes); // equal type, dims and elements
 * ```
 */
export function encodeTensors(tensors: Tensors): Buffer {
  const names = Object.keys(tensors);
  const nameBytes = names.map((n) => Buffer.from(n, 'utf8'));
  const strings: (Buffer[] | undefined)[] = [];
  let size = 8;
  for (let i = 0; i < names.length; i++) {
    const t = tensors[names[i]!]!;
    if (nameBytes[i]!.byteLength > 0xffff) throw corrupt('output name longer than 65535 bytes');
    if (t.dims.length > 255) throw corrupt('rank above 255');
    size += 2 + nameBytes[i]!.byteLength + 2 + 8 * t.dims.length;
    if (t.type === 'string') {
      const els = (t.data as (string | Uint8Array)[]).map((el) =>
        typeof el === 'string'
          ? Buffer.from(el, 'utf8')
          : Buffer.from(el.buffer, el.byteOffset, el.byteLength),
      );
      strings.push(els);
      for (const el of els) size += 5 + el.byteLength;
    } else {
      strings.push(undefined);
      size += 8 + (t.data as NumericTensorData).byteLength;
    }
  }
  const out = Buffer.allocUnsafe(size);
  out[0] = MAGIC[0];
  out[1] = MAGIC[1];
  out[2] = MAGIC[2];
  out[3] = CODEC_VERSION;
  out.writeUInt32LE(names.length, 4);
  let off = 8;
  for (let i = 0; i < names.length; i++) {
    const t = tensors[names[i]!]!;
    const nb = nameBytes[i]!;
    out.writeUInt16LE(nb.byteLength, off);
    off += 2;
    off += nb.copy(out, off);
    out[off++] = typeCode(t.type);
    out[off++] = t.dims.length;
    for (const d of t.dims) {
      out.writeDoubleLE(d, off);
      off += 8;
    }
    const els = strings[i];
    if (els) {
      const data = t.data as (string | Uint8Array)[];
      for (let e = 0; e < els.length; e++) {
        out[off++] = typeof data[e] === 'string' ? 0 : 1;
        out.writeUInt32LE(els[e]!.byteLength, off);
        off += 4;
        off += els[e]!.copy(out, off);
      }
    } else {
      const arr = t.data as NumericTensorData;
      out.writeDoubleLE(arr.byteLength, off);
      off += 8;
      const bytes = Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength);
      bytes.copy(out, off);
      if (!LITTLE_ENDIAN_HOST) swapInPlace(out.subarray(off, off + arr.byteLength), bytesPerElement(t.type));
      off += arr.byteLength;
    }
  }
  return out;
}

/**
 * Decodes what {@link encodeTensors} wrote. Every tensor gets fresh arrays of its own. Throws an
 * INTERNAL ServeError for anything malformed (wrong magic or version, truncation, bad sizes).
 *
 * @example
 * ```ts
 * const raw = await client.getBuffer(key);
 * const outputs = raw ? decodeTensors(raw) : undefined;
 * ```
 */
export function decodeTensors(buf: Uint8Array): Tensors {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const need = (off: number, n: number) => {
    if (off + n > b.byteLength) throw corrupt('truncated');
  };
  need(0, 8);
  if (b[0] !== MAGIC[0] || b[1] !== MAGIC[1] || b[2] !== MAGIC[2]) throw corrupt('bad magic');
  if (b[3] !== CODEC_VERSION) throw corrupt(`unknown version ${b[3]}`);
  const count = b.readUInt32LE(4);
  let off = 8;
  const out: Tensors = {};
  for (let i = 0; i < count; i++) {
    need(off, 2);
    const nameLen = b.readUInt16LE(off);
    off += 2;
    need(off, nameLen + 2);
    const name = b.toString('utf8', off, off + nameLen);
    off += nameLen;
    const type = DATA_TYPES[b[off++]!];
    if (!type) throw corrupt('unknown type code');
    const rank = b[off++]!;
    need(off, rank * 8);
    const dims: number[] = [];
    for (let d = 0; d < rank; d++) {
      dims.push(b.readDoubleLE(off));
      off += 8;
    }
    let n: number;
    try {
      n = elementCount(dims);
    } catch {
      throw corrupt('bad dims');
    }
    if (type === 'string') {
      const data: (string | Uint8Array)[] = [];
      for (let e = 0; e < n; e++) {
        need(off, 5);
        const kind = b[off]!;
        const len = b.readUInt32LE(off + 1);
        off += 5;
        need(off, len);
        data.push(
          kind === 0 ? b.toString('utf8', off, off + len) : new Uint8Array(b.subarray(off, off + len)),
        );
        off += len;
      }
      out[name] = { type, dims, data: data as string[] | Uint8Array[] };
    } else {
      need(off, 8);
      const byteLength = b.readDoubleLE(off);
      off += 8;
      const width = bytesPerElement(type);
      if (byteLength !== n * width) throw corrupt(`"${name}" holds ${byteLength} bytes for ${n} elements`);
      need(off, byteLength);
      const arr = new TYPED_ARRAY[type](n) as NumericTensorData;
      const view = new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
      view.set(b.subarray(off, off + byteLength));
      if (!LITTLE_ENDIAN_HOST) swapInPlace(Buffer.from(arr.buffer), width);
      off += byteLength;
      out[name] = { type, dims, data: arr } as Tensor;
    }
  }
  if (off !== b.byteLength) throw corrupt('trailing bytes');
  return out;
}

function swapInPlace(bytes: Buffer, width: number): void {
  if (width === 2) bytes.swap16();
  else if (width === 4) bytes.swap32();
  else if (width === 8) bytes.swap64();
}
