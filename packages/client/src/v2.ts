import {
  type DataType,
  invalidArgument,
  type ParameterValue,
  ServeError,
  type Tensor,
  type Tensors,
} from '@mlserve/core';
import {
  fromV2Datatype,
  parseShape,
  tensorDataToJson,
  tensorFromBinary,
  tensorFromJson,
  tensorToBinary,
  V2_DATATYPE,
} from './codec.js';
import type { RemoteModelMetadata, ServerMetadata, TensorSpec } from './types.js';

/**
 * The client's half of KServe V2 over HTTP: requests encoded and responses decoded with the
 * project's one tensor codec (`./codec.js`). The server's half decodes what this encodes; the
 * tests hold both, and tritonclient's golden requests, to the same bytes.
 */

/** An output as the request names it. */
export interface OutputRequest {
  name: string;
  binary: boolean;
  classification?: number;
}

/** What {@link encodeInferRequest} needs beyond the inputs. */
export interface EncodeOptions {
  id?: string | undefined;
  /** Request parameters, reserved ones (`timeout`, `priority`, sequence) included. */
  parameters?: Record<string, ParameterValue> | undefined;
  /** Named outputs; undefined for all. */
  outputs?: readonly OutputRequest[] | undefined;
  /** Inputs as raw bytes after the JSON header. */
  binaryInputs: boolean;
  /** When no output is named: ask for every output in binary (`binary_data_output`). */
  binaryOutputs: boolean;
}

/** An encoded request: `headerLength` goes in `Inference-Header-Content-Length` when set. */
export interface EncodedRequest {
  body: Uint8Array;
  headerLength: number | undefined;
}

const encoder = new TextEncoder();

function parametersJson(p: Record<string, ParameterValue>): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(p)) {
    if (typeof v === 'number' && !Number.isFinite(v))
      throw invalidArgument(`parameter "${k}" must be finite`);
    parts.push(`${JSON.stringify(k)}:${JSON.stringify(v)}`);
  }
  return `{${parts.join(',')}}`;
}

function bytesOf(t: Tensor): Uint8Array {
  const b = tensorToBinary(t);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Encodes a V2 inference request: JSON `data` arrays, or the binary tensor extension (a JSON header,
 * then each input's raw little-endian bytes in order; BYTES as 4-byte length prefixes), exactly as
 * tritonclient lays it out.
 *
 * @example
 * ```ts
 * const { body, headerLength } = encodeInferRequest(
 *   { image: tensor('float32', new Float32Array(784), [1, 1, 28, 28]) },
 *   { binaryInputs: true, binaryOutputs: true },
 * );
 * // POST body; header Inference-Header-Content-Length: headerLength
 * ```
 */
export function encodeInferRequest(inputs: Tensors, o: EncodeOptions): EncodedRequest {
  const params: Record<string, ParameterValue> = { ...(o.parameters ?? {}) };
  if (!o.outputs && o.binaryOutputs) params.binary_data_output = true;
  const parts: string[] = [];
  const binaries: Uint8Array[] = [];
  for (const [name, t] of Object.entries(inputs)) {
    const head = `{"name":${JSON.stringify(name)},"shape":[${t.dims.join(',')}],"datatype":"${V2_DATATYPE[t.type]}"`;
    if (o.binaryInputs) {
      const bytes = bytesOf(t);
      binaries.push(bytes);
      parts.push(`${head},"parameters":{"binary_data_size":${bytes.byteLength}}}`);
    } else {
      parts.push(`${head},"data":${tensorDataToJson(t)}}`);
    }
  }
  let json = '{';
  if (o.id !== undefined) json += `"id":${JSON.stringify(o.id)},`;
  json += `"inputs":[${parts.join(',')}]`;
  if (o.outputs) {
    const outs = o.outputs.map((out) => {
      const p: Record<string, ParameterValue> = { binary_data: out.binary };
      if (out.classification !== undefined) p.classification = out.classification;
      return `{"name":${JSON.stringify(out.name)},"parameters":${parametersJson(p)}}`;
    });
    json += `,"outputs":[${outs.join(',')}]`;
  }
  if (Object.keys(params).length > 0) json += `,"parameters":${parametersJson(params)}`;
  json += '}';
  const header = encoder.encode(json);
  if (binaries.length === 0) return { body: header, headerLength: undefined };
  let total = header.byteLength;
  for (const b of binaries) total += b.byteLength;
  const body = new Uint8Array(total);
  body.set(header, 0);
  let off = header.byteLength;
  for (const b of binaries) {
    body.set(b, off);
    off += b.byteLength;
  }
  return { body, headerLength: header.byteLength };
}

/** A decoded V2 inference response. */
export interface DecodedResponse {
  id: string | undefined;
  modelName: string;
  modelVersion: string;
  outputs: Tensors;
  parameters: Record<string, unknown>;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A response the client cannot read: INTERNAL (the server broke the protocol), not the caller's fault. */
function malformed(message: string, cause?: unknown): ServeError {
  return new ServeError(
    'INTERNAL',
    `malformed V2 response: ${message}`,
    cause === undefined ? {} : { cause },
  );
}

function parseJsonBytes(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(bytes));
  } catch (err) {
    throw malformed('the body is not JSON', err);
  }
}

/** JSON has no NaN or Infinity: servers send null (mlserve) for them. */
function nullsToNaN(type: DataType, data: unknown): unknown {
  if ((type !== 'float32' && type !== 'float64' && type !== 'float16') || !Array.isArray(data)) return data;
  const fix = (v: unknown): unknown => (v === null ? Number.NaN : Array.isArray(v) ? v.map(fix) : v);
  return data.includes(null) || data.some(Array.isArray) ? data.map(fix) : data;
}

/**
 * Decodes a V2 inference response (JSON, or the binary extension when `headerLength` is given).
 * Every size is checked against the bytes received before anything is allocated.
 *
 * @example
 * ```ts
 * const res = decodeInferResponse(body, Number(headers['inference-header-content-length']));
 * res.outputs.logits; // Tensor
 * ```
 */
export function decodeInferResponse(body: Uint8Array, headerLength: number | undefined): DecodedResponse {
  if (
    headerLength !== undefined &&
    !(Number.isSafeInteger(headerLength) && headerLength >= 0 && headerLength <= body.byteLength)
  )
    throw malformed(
      `Inference-Header-Content-Length ${headerLength} does not fit the ${body.byteLength}-byte body`,
    );
  const json = parseJsonBytes(headerLength === undefined ? body : body.subarray(0, headerLength));
  const binary = headerLength === undefined ? new Uint8Array(0) : body.subarray(headerLength);
  if (!isObject(json) || !Array.isArray(json.outputs)) throw malformed('no "outputs" array');
  const outputs = Object.create(null) as Tensors;
  let offset = 0;
  try {
    for (const raw of json.outputs as unknown[]) {
      if (!isObject(raw) || typeof raw.name !== 'string') throw malformed('an output has no name');
      const what = `output "${raw.name.slice(0, 64)}"`;
      const type = fromV2Datatype(raw.datatype, what);
      const { dims, count } = parseShape(raw.shape, what);
      const size = isObject(raw.parameters) ? raw.parameters.binary_data_size : undefined;
      if (size !== undefined) {
        if (
          typeof size !== 'number' ||
          !Number.isSafeInteger(size) ||
          size < 0 ||
          size > binary.byteLength - offset
        )
          throw malformed(`${what}: binary_data_size ${String(size)} is past the end of the binary data`);
        outputs[raw.name] = tensorFromBinary(
          type,
          [...dims],
          count,
          binary.subarray(offset, offset + size),
          what,
        );
        offset += size;
      } else {
        outputs[raw.name] = tensorFromJson(type, [...dims], count, nullsToNaN(type, raw.data), what);
      }
    }
  } catch (err) {
    if (err instanceof ServeError && err.code === 'INVALID_ARGUMENT') throw malformed(err.message, err);
    throw err;
  }
  return {
    id: typeof json.id === 'string' ? json.id : undefined,
    modelName: typeof json.model_name === 'string' ? json.model_name : '',
    modelVersion: typeof json.model_version === 'string' ? json.model_version : '',
    outputs,
    parameters: isObject(json.parameters) ? json.parameters : {},
  };
}

function specs(list: unknown, what: string): TensorSpec[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw malformed(`${what} is not a list`);
  return list.map((raw) => {
    if (!isObject(raw) || typeof raw.name !== 'string') throw malformed(`${what}: an entry has no name`);
    const datatype = typeof raw.datatype === 'string' ? raw.datatype : '';
    let type: DataType | undefined;
    try {
      type = fromV2Datatype(datatype, what);
    } catch {
      type = undefined;
    }
    const shape = Array.isArray(raw.shape) ? raw.shape.map(Number) : [];
    return { name: raw.name, datatype, type, shape };
  });
}

/** Reads `GET /v2/models/{name}` (and gRPC's ModelMetadataResponse, whose fields are the same). */
export function parseModelMetadata(json: unknown): RemoteModelMetadata {
  if (!isObject(json) || typeof json.name !== 'string') throw malformed('model metadata has no name');
  return {
    name: json.name,
    versions: Array.isArray(json.versions) ? json.versions.map(String) : [],
    platform: typeof json.platform === 'string' ? json.platform : '',
    inputs: specs(json.inputs, 'inputs'),
    outputs: specs(json.outputs, 'outputs'),
  };
}

/** Reads `GET /v2` (ServerMetadata). */
export function parseServerMetadata(json: unknown): ServerMetadata {
  if (!isObject(json)) throw malformed('server metadata is not an object');
  return {
    name: typeof json.name === 'string' ? json.name : '',
    version: typeof json.version === 'string' ? json.version : '',
    extensions: Array.isArray(json.extensions) ? json.extensions.map(String) : [],
  };
}

/** One class of a classification result. */
export interface ClassScore {
  score: number;
  index: number;
  label?: string;
}

/**
 * Reads a classification output (the BYTES `score:index[:label]` strings of V2's classification
 * extension) into one list of classes per row, best first.
 *
 * @example
 * ```ts
 * const out = await client.infer('mnist', { image }, { outputs: ['logits'], classification: 3 });
 * const [top] = parseClassification(out.logits!); // [{ score: 9.1, index: 7 }, ...]
 * ```
 */
export function parseClassification(t: Tensor): ClassScore[][] {
  if (t.type !== 'string') throw invalidArgument(`a classification output is BYTES, not ${t.type}`);
  const per = t.dims.length >= 2 ? t.dims[t.dims.length - 1]! : t.data.length;
  const rows: ClassScore[][] = [];
  const text = (el: string | Uint8Array) => (typeof el === 'string' ? el : decoder.decode(el));
  const data = t.data as (string | Uint8Array)[];
  for (let r = 0; r * per < data.length || (r === 0 && per === 0); r++) {
    const row: ClassScore[] = [];
    for (let i = r * per; i < Math.min(data.length, (r + 1) * per); i++) {
      const s = text(data[i]!);
      const first = s.indexOf(':');
      const second = s.indexOf(':', first + 1);
      const score = Number(s.slice(0, first));
      const index = Number(second < 0 ? s.slice(first + 1) : s.slice(first + 1, second));
      if (first < 0 || !Number.isFinite(score) || !Number.isSafeInteger(index))
        throw invalidArgument(`"${s.slice(0, 40)}" is not a score:index[:label] class`);
      row.push(second < 0 ? { score, index } : { score, index, label: s.slice(second + 1) });
    }
    rows.push(row);
    if (per === 0) break;
  }
  return rows;
}
