import { type DataType, invalidArgument, ServeError, type Tensor } from '@mlserve/core';
import { decodeV2Response, fromV2Datatype, parseHeaderLength, type V2Response } from './codec.js';
import type { RemoteModelMetadata, ServerMetadata, TensorSpec } from './types.js';

/**
 * What the client adds to `@mlserve/protocol`'s codec: the request options it derives from a call,
 * the response read as the client's (a server that breaks the protocol is INTERNAL, not the
 * caller's INVALID_ARGUMENT), and the metadata and classification readers.
 */

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

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes an inference answer with the protocol's `decodeV2Response`, `headerLength` being the raw
 * `Inference-Header-Content-Length` header (null when absent).
 *
 * @example
 * ```ts
 * const outputs = readInferResponse(body, res.headers.get('inference-header-content-length'));
 * ```
 */
export function readInferResponse(body: Uint8Array, headerLength: string | null): V2Response {
  try {
    return decodeV2Response(body, parseHeaderLength(headerLength ?? undefined, body.byteLength));
  } catch (err) {
    if (err instanceof ServeError && err.code === 'INVALID_ARGUMENT') throw malformed(err.message, err);
    throw err;
  }
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

/**
 * Reads `GET /v2/models/{name}` (and gRPC's ModelMetadataResponse, whose fields are the same).
 *
 * @example
 * ```ts
 * parseModelMetadata({ name: 'mnist', versions: ['1'], platform: 'onnxruntime_onnx', inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 28, 28] }] });
 * ```
 */
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

/**
 * Reads `GET /v2` (ServerMetadata).
 *
 * @example
 * ```ts
 * parseServerMetadata({ name: 'triton', version: '2.50.0', extensions: ['binary_tensor_data'] });
 * ```
 */
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
