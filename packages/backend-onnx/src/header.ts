/**
 * An ONNX model's inputs and outputs read from the file's header, without onnxruntime: a small
 * reader of the protobuf fields of `ModelProto.graph` that name them (`input`, `output`, and the
 * names of `initializer`s, which are not inputs). Everything else (nodes, weights) is skipped by its
 * length without being read, so a large model costs a few small reads. External data files are
 * never opened.
 */
import { open } from 'node:fs/promises';
import { invalidArgument, isDataType, notFound, type TensorInfo } from '@mlserve/core';
import type { SessionSignature } from './metadata.js';
import { toInfo } from './metadata.js';

/** ONNX `TensorProto.DataType` to onnxruntime's type names. */
const ELEM_TYPES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
  17: 'float8e4m3fn',
  18: 'float8e4m3fnuz',
  19: 'float8e5m2',
  20: 'float8e5m2fnuz',
  21: 'uint4',
  22: 'int4',
  23: 'float4e2m1',
};

/** Bytes read from the file at a time. */
const CHUNK = 64 * 1024;

/** Reads protobuf fields from a file (or bytes) at any offset, buffering one chunk. */
class Source {
  #buf: Uint8Array = new Uint8Array(0);
  #start = 0;
  readonly size: number;
  readonly #read: ((pos: number, into: Uint8Array) => Promise<number>) | undefined;

  constructor(size: number, bytes?: Uint8Array, read?: (pos: number, into: Uint8Array) => Promise<number>) {
    this.size = size;
    if (bytes) this.#buf = bytes;
    this.#read = read;
  }

  /** At least `n` bytes from `pos` (fewer only at the end of the file). */
  async bytes(pos: number, n: number): Promise<Uint8Array> {
    const end = Math.min(pos + n, this.size);
    if (pos >= this.#start && end <= this.#start + this.#buf.length) {
      return this.#buf.subarray(pos - this.#start, end - this.#start);
    }
    const into = new Uint8Array(Math.max(end - pos, CHUNK));
    const got = await this.#read!(pos, into);
    this.#buf = into.subarray(0, got);
    this.#start = pos;
    return this.#buf.subarray(0, Math.min(end - pos, got));
  }
}

interface Field {
  num: number;
  wire: number;
  /** Varint value (wire 0). */
  value: number;
  /** Length-delimited payload: [start, end) in the source (wire 2). */
  start: number;
  end: number;
}

function corrupt(why: string): Error {
  return invalidArgument(`not an ONNX model: ${why}`);
}

/** Reads a varint at `pos`: [value (as a number, exact up to 2^53), next position]. */
async function varint(src: Source, pos: number, end: number): Promise<[number, number]> {
  const b = await src.bytes(pos, 10);
  let value = 0;
  let mul = 1;
  for (let i = 0; i < b.length && pos + i < end; i++) {
    const byte = b[i]!;
    value += (byte & 0x7f) * mul;
    mul *= 128;
    if ((byte & 0x80) === 0) return [value, pos + i + 1];
  }
  throw corrupt('a varint runs past its message');
}

/** The fields of the message in [start, end), payloads skipped (not read). */
async function* fields(src: Source, start: number, end: number): AsyncGenerator<Field> {
  let pos = start;
  while (pos < end) {
    const [tag, afterTag] = await varint(src, pos, end);
    const num = Math.floor(tag / 8);
    const wire = tag % 8;
    pos = afterTag;
    const field: Field = { num, wire, value: 0, start: pos, end: pos };
    if (wire === 0) {
      [field.value, pos] = await varint(src, pos, end);
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const [len, after] = await varint(src, pos, end);
      field.start = after;
      field.end = after + len;
      pos = field.end;
    } else throw corrupt(`wire type ${wire} of field ${num}`);
    if (pos > end || num === 0) throw corrupt('a field runs past its message');
    yield field;
  }
}

async function text(src: Source, f: Field): Promise<string> {
  return new TextDecoder().decode(await src.bytes(f.start, f.end - f.start));
}

/** `TensorProto.name` (field 8) of an initializer, skipping its data. */
async function tensorName(src: Source, f: Field): Promise<string | undefined> {
  for await (const g of fields(src, f.start, f.end)) if (g.num === 8 && g.wire === 2) return text(src, g);
  return undefined;
}

interface ValueInfo {
  name: string;
  /** A tensor's element type name, or why it is not one a Model can hold. */
  type?: string;
  problem?: string;
  shape: (number | string)[];
}

/** `ValueInfoProto`: name (1) and type (2: `TypeProto`, whose field 1 is `Tensor`). */
async function valueInfo(src: Source, f: Field): Promise<ValueInfo> {
  const out: ValueInfo = { name: '', shape: [] };
  for await (const g of fields(src, f.start, f.end)) {
    if (g.num === 1 && g.wire === 2) out.name = await text(src, g);
    else if (g.num === 2 && g.wire === 2) {
      let tensor = false;
      for await (const t of fields(src, g.start, g.end)) {
        if (t.num === 1 && t.wire === 2) {
          tensor = true;
          await tensorType(src, t, out);
        } else if ([4, 5, 8, 9].includes(t.num)) {
          out.problem = 'not a tensor (a sequence, map or optional)';
        }
      }
      if (!tensor) out.problem ??= 'not a tensor (a sequence, map or optional)';
    }
  }
  return out;
}

/** `TypeProto.Tensor`: elem_type (1), shape (2: `TensorShapeProto` of `dim`s (1)). */
async function tensorType(src: Source, f: Field, out: ValueInfo): Promise<void> {
  for await (const g of fields(src, f.start, f.end)) {
    if (g.num === 1 && g.wire === 0) {
      const name = ELEM_TYPES[g.value] ?? `element type ${g.value}`;
      out.type = name;
      if (!isDataType(name)) out.problem = `a ${name} tensor`;
    } else if (g.num === 2 && g.wire === 2) {
      for await (const d of fields(src, g.start, g.end)) {
        if (d.num !== 1 || d.wire !== 2) continue;
        // Dimension: dim_value (1) or dim_param (2); neither is an unnamed dynamic dim.
        let dim: number | string = '';
        for await (const v of fields(src, d.start, d.end)) {
          if (v.num === 1 && v.wire === 0) dim = v.value;
          else if (v.num === 2 && v.wire === 2) dim = await text(src, v);
        }
        out.shape.push(dim);
      }
    }
  }
}

/**
 * The inputs and outputs of an ONNX model, read from its file without onnxruntime (and without
 * reading its weights): the same {@link TensorInfo}s a session's metadata gives (`loadOnnxModel`'s
 * `metadata().inputs` / `outputs`): graph inputs that are initializers left out, symbolic dims as
 * -1 with their names in `dimNames`, `batched` where dim 0 is dynamic. Outputs a Model cannot hold
 * (sequences, maps, other element types) are listed in `skippedOutputs`; an input of that kind is
 * UNIMPLEMENTED at load, so it is returned in `unsupportedInputs` here. NOT_FOUND when the file
 * does not exist, INVALID_ARGUMENT when it is not an ONNX model.
 *
 * @example
 * ```ts
 * import { readOnnxSignature } from '@mlserve/backend-onnx';
 * import { modelPath } from '@mlserve/test-utils';
 *
 * const { inputs, outputs } = await readOnnxSignature(modelPath('mnist-cnn.onnx'));
 * inputs[0]; // { name: 'image', type: 'float32', dims: [-1, 1, 28, 28], dimNames: ['batch', null, null, null], batched: true }
 * outputs[0]?.name; // 'logits'
 * ```
 */
export async function readOnnxSignature(
  source: string | Uint8Array,
): Promise<SessionSignature & { unsupportedInputs: { name: string; reason: string }[] }> {
  if (typeof source !== 'string') return readFrom(new Source(source.length, source));
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(source, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(`no model file at ${source}`);
    throw err;
  }
  try {
    const { size } = await handle.stat();
    return await readFrom(
      new Source(size, undefined, async (pos, into) => {
        const { bytesRead } = await handle.read(into, 0, into.length, pos);
        return bytesRead;
      }),
    );
  } finally {
    await handle.close();
  }
}

async function readFrom(
  src: Source,
): Promise<SessionSignature & { unsupportedInputs: { name: string; reason: string }[] }> {
  let graph: Field | undefined;
  for await (const f of fields(src, 0, src.size)) if (f.num === 7 && f.wire === 2) graph = f;
  if (!graph) throw corrupt('no graph');
  const initializers = new Set<string>();
  const inputs: ValueInfo[] = [];
  const outputs: ValueInfo[] = [];
  for await (const f of fields(src, graph.start, graph.end)) {
    if (f.wire !== 2) continue;
    if (f.num === 5) {
      const name = await tensorName(src, f);
      if (name !== undefined) initializers.add(name);
    } else if (f.num === 15) {
      // SparseTensorProto: its values (1) carry the name.
      for await (const g of fields(src, f.start, f.end)) {
        if (g.num === 1 && g.wire === 2) {
          const name = await tensorName(src, g);
          if (name !== undefined) initializers.add(name);
        }
      }
    } else if (f.num === 11) inputs.push(await valueInfo(src, f));
    else if (f.num === 12) outputs.push(await valueInfo(src, f));
  }
  const out = {
    inputs: [] as TensorInfo[],
    outputs: [] as TensorInfo[],
    skippedOutputs: [] as { name: string; reason: string }[],
    unsupportedInputs: [] as { name: string; reason: string }[],
  };
  for (const v of inputs) {
    if (initializers.has(v.name)) continue;
    if (v.problem) out.unsupportedInputs.push({ name: v.name, reason: v.problem });
    else out.inputs.push(toInfo({ name: v.name, isTensor: true, type: v.type!, shape: v.shape }));
  }
  for (const v of outputs) {
    if (v.problem) out.skippedOutputs.push({ name: v.name, reason: v.problem });
    else out.outputs.push(toInfo({ name: v.name, isTensor: true, type: v.type!, shape: v.shape }));
  }
  return out;
}
