import {
  BIGINT_RANGE,
  type DataType,
  INT_RANGE,
  invalidArgument,
  type NumericTensorData,
  type ParameterValue,
  type Tensor,
  type Tensors,
  TYPED_ARRAY,
} from '@mlserve/core';
import { fromV2Datatype, parseShape, tensorFromBinary, tensorToBinary, V2_DATATYPE } from './codec.js';

/**
 * `@mlserve/protocol/grpc`: KServe V2's gRPC messages (`inference.GRPCInferenceService`, the .proto
 * this package ships) and their tensor contents, both ways, for the gRPC server and the gRPC
 * client: raw contents through the binary codec, typed `contents` here. No gRPC library and no
 * Buffer: it works on the plain objects @grpc/proto-loader reads and writes.
 */

/**
 * Messages as @grpc/proto-loader hands them over with {@link LOADER_OPTIONS}: snake_case fields,
 * 64-bit integers as decimal strings, bytes as Buffers, defaults filled in. Everything is typed
 * loosely on purpose: a client may send anything, so every field is checked before use.
 */

/** `InferParameter` (and `ModelRepositoryParameter`) as decoded. */
export interface ParameterMessage {
  parameter_choice?: string;
  bool_param?: boolean;
  int64_param?: string | number;
  string_param?: string;
  double_param?: number;
  uint64_param?: string | number;
  bytes_param?: Uint8Array;
}

/** `InferTensorContents` as decoded. */
export interface ContentsMessage {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: (string | number | bigint)[];
  uint_contents?: number[];
  uint64_contents?: (string | number | bigint)[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Uint8Array[];
}

/** `ModelInferRequest.InferInputTensor` as decoded. */
export interface InputMessage {
  name?: string;
  datatype?: string;
  shape?: (string | number)[];
  parameters?: Record<string, ParameterMessage>;
  contents?: ContentsMessage | null;
}

/** `ModelInferRequest` as decoded. */
export interface InferRequestMessage {
  model_name?: string;
  model_version?: string;
  id?: string;
  parameters?: Record<string, ParameterMessage>;
  inputs?: InputMessage[];
  outputs?: { name?: string; parameters?: Record<string, ParameterMessage> }[];
  raw_input_contents?: Uint8Array[];
}

/** `ModelInferResponse.InferOutputTensor` as sent. */
export interface OutputMessage {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, ParameterMessage>;
  contents?: ContentsMessage;
}

/** `ModelInferResponse` as sent. */
export interface InferResponseMessage {
  model_name: string;
  model_version: string;
  id: string;
  outputs: OutputMessage[];
  raw_output_contents: Uint8Array[];
}

/** Which `InferTensorContents` field carries each datatype (FP16 has none: raw only). */
export const CONTENTS_FIELD: Readonly<Record<DataType, keyof ContentsMessage | undefined>> = Object.freeze({
  bool: 'bool_contents',
  int8: 'int_contents',
  int16: 'int_contents',
  int32: 'int_contents',
  int64: 'int64_contents',
  uint8: 'uint_contents',
  uint16: 'uint_contents',
  uint32: 'uint_contents',
  uint64: 'uint64_contents',
  float16: undefined,
  float32: 'fp32_contents',
  float64: 'fp64_contents',
  string: 'bytes_contents',
});

const CONTENT_FIELDS = [...new Set(Object.values(CONTENTS_FIELD).filter((f) => f !== undefined))];

function toBigInt(v: unknown, type: 'int64' | 'uint64', i: number, what: string): bigint {
  let b: bigint;
  try {
    if (typeof v === 'bigint') b = v;
    else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
    else if (typeof v === 'string' && /^-?\d{1,20}$/.test(v)) b = BigInt(v);
    else throw new Error();
  } catch {
    throw invalidArgument(`${what}: element ${i} is not an integer`);
  }
  const [lo, hi] = BIGINT_RANGE[type];
  if (b < lo || b > hi)
    throw invalidArgument(`${what}: element ${i} is out of range for ${V2_DATATYPE[type]}`);
  return b;
}

/**
 * Builds a tensor from typed `contents`. The element count the client sent must equal the
 * product of the shape before anything is allocated; integers are range-checked for their type.
 */
export function tensorFromContents(
  type: DataType,
  dims: number[],
  count: number,
  contents: ContentsMessage | null | undefined,
  what: string,
): Tensor {
  const field = CONTENTS_FIELD[type];
  if (!field) throw invalidArgument(`${what}: FP16 has no typed contents; send it in raw_input_contents`);
  const values = (contents?.[field] ?? []) as readonly unknown[];
  if (values.length !== count) {
    const other = CONTENT_FIELDS.find((f) => f !== field && (contents?.[f]?.length ?? 0) > 0);
    if (values.length === 0 && other) {
      throw invalidArgument(`${what}: ${V2_DATATYPE[type]} data belongs in contents.${field}, not ${other}`);
    }
    throw invalidArgument(
      `${what}: shape [${dims.join(',')}] needs ${count} elements, contents.${field} has ${values.length}`,
    );
  }
  if (type === 'string') {
    // Own each element: a view would keep the whole request message alive.
    return { type, dims, data: (values as Uint8Array[]).map((b) => Uint8Array.from(b)) };
  }
  const out = new TYPED_ARRAY[type](count) as NumericTensorData;
  const put = out as unknown as (number | bigint)[];
  if (type === 'int64' || type === 'uint64') {
    for (let i = 0; i < count; i++) put[i] = toBigInt(values[i], type, i, what);
  } else if (type === 'bool') {
    for (let i = 0; i < count; i++) put[i] = values[i] ? 1 : 0;
  } else {
    const range = INT_RANGE[type];
    for (let i = 0; i < count; i++) {
      const v = values[i];
      if (typeof v !== 'number') throw invalidArgument(`${what}: element ${i} is not a number`);
      if (range && (!Number.isInteger(v) || v < range[0] || v > range[1])) {
        throw invalidArgument(`${what}: element ${i} (${v}) is not a valid ${V2_DATATYPE[type]}`);
      }
      put[i] = v;
    }
  }
  return { type, dims, data: out };
}

const utf8 = new TextEncoder();

/** A tensor as typed `contents` (64-bit integers as exact decimal strings). Not for FP16. */
export function tensorToContents(t: Tensor): ContentsMessage {
  const field = CONTENTS_FIELD[t.type];
  if (!field) throw invalidArgument('FP16 has no typed contents');
  switch (t.type) {
    case 'string':
      return {
        bytes_contents: (t.data as (string | Uint8Array)[]).map((el) =>
          typeof el === 'string' ? utf8.encode(el) : el,
        ),
      };
    case 'bool':
      return { bool_contents: Array.from(t.data as Uint8Array, (v) => v !== 0) };
    case 'int64':
    case 'uint64':
      return { [field]: Array.from(t.data as BigInt64Array, String) };
    default:
      return { [field]: Array.from(t.data as Float32Array) };
  }
}

/** Parses a shape whose dims arrive as int64 decimal strings. */
export function parseShapeMessage(shape: unknown, what: string): { dims: number[]; count: number } {
  if (!Array.isArray(shape)) throw invalidArgument(`${what}: shape must be a list of integers`);
  // Strings past 2^53 become unsafe numbers, which parseShape refuses.
  return parseShape(
    shape.map((d) => (typeof d === 'string' ? Number(d) : d)),
    what,
  );
}

/** One `InferParameter` as a core parameter value (64-bit integers must fit a JS number). */
export function parameterValue(p: ParameterMessage | undefined, what: string): ParameterValue {
  switch (p?.parameter_choice) {
    case 'bool_param':
      return p.bool_param === true;
    case 'string_param':
      return p.string_param ?? '';
    case 'double_param':
      if (!Number.isFinite(p.double_param)) throw invalidArgument(`${what} must be a finite number`);
      return p.double_param as number;
    case 'int64_param':
    case 'uint64_param': {
      const raw = p.parameter_choice === 'int64_param' ? p.int64_param : p.uint64_param;
      const n = Number(raw);
      if (!Number.isSafeInteger(n))
        throw invalidArgument(`${what} ${String(raw)} does not fit a safe integer`);
      return n;
    }
    default:
      throw invalidArgument(`${what} has no value`);
  }
}

/** A parameters map as a null-prototype record. */
export function parameterRecord(
  map: Record<string, ParameterMessage> | undefined,
  what: string,
): Record<string, ParameterValue> {
  const out = Object.create(null) as Record<string, ParameterValue>;
  if (!map) return out;
  for (const [k, p] of Object.entries(map)) {
    out[k] = parameterValue(p, `${what} parameter ${JSON.stringify(k.slice(0, 64))}`);
  }
  return out;
}

/** A core parameter value as an `InferParameter`. */
export function toParameterMessage(v: ParameterValue): ParameterMessage {
  if (typeof v === 'boolean') return { bool_param: v };
  if (typeof v === 'string') return { string_param: v };
  return Number.isSafeInteger(v) ? { int64_param: String(v) } : { double_param: v };
}

/** What {@link decodeInputs} returns: the tensors and whether they came as raw contents. */
export interface DecodedInputs {
  inputs: Tensors;
  raw: boolean;
}

/**
 * Decodes a request's inputs from `raw_input_contents` (the binary layout tritonclient sends by
 * default) or from each input's typed `contents`; never both.
 *
 * @example
 * ```ts
 * const { inputs } = decodeInputs(request); // request: a ModelInferRequest from proto-loader
 * ```
 */
export function decodeInputs(req: InferRequestMessage): DecodedInputs {
  const list = req.inputs;
  if (!Array.isArray(list)) throw invalidArgument('inputs must be a list');
  const raw = req.raw_input_contents ?? [];
  const useRaw = raw.length > 0;
  if (useRaw && raw.length !== list.length) {
    throw invalidArgument(
      `raw_input_contents has ${raw.length} entries for ${list.length} inputs; give one per input`,
    );
  }
  const inputs = Object.create(null) as Tensors;
  for (let i = 0; i < list.length; i++) {
    const input = list[i]!;
    const name = input.name;
    if (typeof name !== 'string' || name.length === 0)
      throw invalidArgument(`input ${i}: name must be a non-empty string`);
    const what = `input "${name.slice(0, 64)}"`;
    if (Object.hasOwn(inputs, name)) throw invalidArgument(`${what} is given twice`);
    const type = fromV2Datatype(input.datatype, what);
    const { dims, count } = parseShapeMessage(input.shape, what);
    if (useRaw) {
      if (input.contents && CONTENT_FIELDS.some((f) => (input.contents?.[f]?.length ?? 0) > 0)) {
        throw invalidArgument(`${what}: has typed contents, but the request uses raw_input_contents`);
      }
      inputs[name] = tensorFromBinary(type, dims, count, raw[i]!, what);
    } else {
      inputs[name] = tensorFromContents(type, dims, count, input.contents, what);
    }
  }
  return { inputs, raw: useRaw };
}

/**
 * Encodes outputs: as `raw_output_contents` (what Triton always sends and tritonclient reads), or as
 * typed `contents` when `typed` is true and no output is FP16 (which has no typed field).
 */
export function encodeOutputs(
  names: readonly string[],
  outputs: Tensors,
  typed: boolean,
): Pick<InferResponseMessage, 'outputs' | 'raw_output_contents'> {
  const present = names.filter((n) => outputs[n] !== undefined);
  const asTyped = typed && present.every((n) => CONTENTS_FIELD[outputs[n]!.type] !== undefined);
  const out: OutputMessage[] = [];
  const raw: Uint8Array[] = [];
  for (const name of present) {
    const t = outputs[name]!;
    const o: OutputMessage = { name, datatype: V2_DATATYPE[t.type], shape: [...t.dims] };
    if (asTyped) o.contents = tensorToContents(t);
    else raw.push(tensorToBinary(t));
    out.push(o);
  }
  return { outputs: out, raw_output_contents: raw };
}
