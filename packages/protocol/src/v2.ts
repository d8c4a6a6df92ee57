import {
  float16BitsToNumber,
  invalidArgument,
  type ModelMetadata,
  type ParameterValue,
  type Tensor,
  type Tensors,
} from '@mlserve/core';
import {
  concatBytes,
  decodeUtf8,
  encodeUtf8,
  fromV2Datatype,
  parseShape,
  tensorDataToJson,
  tensorFromBinary,
  tensorFromJson,
  tensorToBinary,
  V2_DATATYPE,
} from './codec.js';
import { NumberList, splitV2Json } from './numbers.js';

/** What a requested output asks for (KServe V2 `outputs[]` entry). */
export interface RequestedOutput {
  name: string;
  /** Send this output in the binary extension (`parameters.binary_data`). */
  binary?: boolean;
  /** Top-k classification instead of the raw tensor (`parameters.classification`). */
  classification?: number;
}

/** A decoded V2 inference request. */
export interface V2Request {
  id: string | undefined;
  /** Null-prototype record of decoded input tensors. */
  inputs: Tensors;
  /** The outputs asked for; undefined for all. */
  outputs: RequestedOutput[] | undefined;
  /** `binary_data_output`: every output in binary unless an output says otherwise. */
  binaryDataOutput: boolean;
  /** Request parameters other than the reserved ones below (null prototype). */
  parameters: Record<string, ParameterValue>;
  /** `timeout` parameter, microseconds (tritonclient's unit). */
  timeoutUs: number | undefined;
  /** `priority` parameter. */
  priority: number | undefined;
  /** `sequence_id` / `sequence_start` / `sequence_end` parameters. */
  sequence: { id: string | number; start?: boolean; end?: boolean } | undefined;
}

/** Parameters that steer the server rather than the model: not passed on as model parameters. */
const RESERVED = new Set([
  'timeout',
  'priority',
  'binary_data_output',
  'sequence_id',
  'sequence_start',
  'sequence_end',
]);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The reserved request parameters, checked, and the model's parameters without them. */
export interface ReservedParameters {
  /** The parameters other than the reserved ones (null prototype). */
  parameters: Record<string, ParameterValue>;
  /** `timeout`, microseconds. */
  timeoutUs: number | undefined;
  /** `priority`. */
  priority: number | undefined;
  /** `sequence_id` / `sequence_start` / `sequence_end`. */
  sequence: { id: string | number; start?: boolean; end?: boolean } | undefined;
  /** `binary_data_output`. */
  binaryDataOutput: boolean;
}

/**
 * Splits a request's parameters into the reserved ones (Triton's `timeout` in µs, `priority`,
 * `binary_data_output`, `sequence_*`), checked, and the rest, which go to the model. Shared by
 * every transport, so HTTP and gRPC accept and refuse the same values.
 *
 * @example
 * ```ts
 * const { timeoutUs, parameters } = reservedParameters({ timeout: 500000, temperature: 0.7 });
 * // timeoutUs 500000; parameters { temperature: 0.7 }
 * ```
 */
export function reservedParameters(params: Record<string, ParameterValue>): ReservedParameters {
  let timeoutUs: number | undefined;
  let priority: number | undefined;
  let sequence: ReservedParameters['sequence'];
  const binaryDataOutput = params.binary_data_output === true;
  if (params.timeout !== undefined) {
    const t = params.timeout;
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0) {
      throw invalidArgument('parameter "timeout" must be a non-negative integer (microseconds)');
    }
    timeoutUs = t;
  }
  if (params.priority !== undefined) {
    if (typeof params.priority !== 'number' || !Number.isSafeInteger(params.priority)) {
      throw invalidArgument('parameter "priority" must be an integer');
    }
    priority = params.priority;
  }
  if (params.sequence_id !== undefined) {
    const sid = params.sequence_id;
    if (typeof sid === 'boolean')
      throw invalidArgument('parameter "sequence_id" must be a string or integer');
    sequence = { id: sid };
    if (params.sequence_start !== undefined) sequence.start = params.sequence_start === true;
    if (params.sequence_end !== undefined) sequence.end = params.sequence_end === true;
  }
  const parameters = Object.create(null) as Record<string, ParameterValue>;
  for (const k in params) if (!RESERVED.has(k)) parameters[k] = params[k]!;
  return { parameters, timeoutUs, priority, sequence, binaryDataOutput };
}

/**
 * Copies a V2 `parameters` object into a null-prototype record, rejecting non-scalar values.
 *
 * @example
 * ```ts
 * const params = parseParameters(json.parameters, 'request'); // null prototype, scalars only
 * ```
 */
export function parseParameters(value: unknown, what: string): Record<string, ParameterValue> {
  const out = Object.create(null) as Record<string, ParameterValue>;
  if (value === undefined || value === null) return out;
  if (!isPlainObject(value)) throw invalidArgument(`${what}: "parameters" must be an object`);
  for (const [k, v] of Object.entries(value)) {
    if (typeof v !== 'string' && typeof v !== 'boolean' && !(typeof v === 'number' && Number.isFinite(v))) {
      throw invalidArgument(
        `${what}: parameter ${JSON.stringify(k.slice(0, 64))} must be a string, number or boolean`,
      );
    }
    out[k] = v;
  }
  return out;
}

/**
 * Parses JSON text, mapping syntax errors to INVALID_ARGUMENT.
 *
 * @example
 * ```ts
 * const body = parseJson(buffer); // INVALID_ARGUMENT on bad UTF-8 or JSON
 * ```
 */
export function parseJson(bytes: Uint8Array, what = 'request body'): unknown {
  const text = decodeUtf8(bytes, what);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * A V2 JSON request body: `JSON.parse`'s result, except that the flat numeric `data` arrays of
 * FP32 inputs come as {@link NumberList}s read straight from the text (see `numbers.ts`: the same
 * float32 values, without a JavaScript number per element). Any body that scanner does not take
 * whole is parsed by `JSON.parse`, errors included.
 */
function parseRequestJson(bytes: Uint8Array): unknown {
  const what = 'request body';
  const split = splitV2Json(bytes);
  if (split !== undefined) {
    // The rest is decoded as the whole body would be (the numbers taken out are ASCII), so a body
    // that is not UTF-8 fails the same way.
    const rest = decodeUtf8(split.rest, what);
    let json: unknown;
    try {
      json = JSON.parse(rest);
    } catch {
      json = undefined;
    }
    // Each list goes back where its array was (the placeholder 0 must be what JSON.parse left
    // there: anything else means the text was not what the scanner took it for).
    const inputs = isPlainObject(json) ? json.inputs : undefined;
    let ok = Array.isArray(inputs);
    if (ok) {
      for (const [index, list] of split.lists) {
        const input: unknown = (inputs as unknown[])[index];
        if (!isPlainObject(input) || input.data !== 0) {
          ok = false;
          break;
        }
        input.data = list;
      }
    }
    if (ok) return json;
  }
  return parseJson(bytes, what);
}

/**
 * Parses `Inference-Header-Content-Length`: the JSON header's byte length in a binary request.
 * Undefined when the header is absent (a JSON-only request).
 *
 * @example
 * ```ts
 * const len = parseHeaderLength(req.headers['inference-header-content-length'], body.byteLength);
 * ```
 */
export function parseHeaderLength(value: string | undefined, bodyLength: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value.trim()))
    throw invalidArgument('Inference-Header-Content-Length must be a non-negative integer');
  const n = Number(value.trim());
  if (n > bodyLength) {
    throw invalidArgument(
      `Inference-Header-Content-Length ${n} is past the end of the ${bodyLength}-byte body`,
    );
  }
  return n;
}

/**
 * Decodes a KServe V2 inference request: a JSON body, or (when `headerLength` is given) the binary
 * tensor extension: a JSON header of that many bytes followed by the inputs' raw data in order.
 *
 * @example
 * ```ts
 * const req = decodeV2Request(body, parseHeaderLength(headers['inference-header-content-length'], body.length));
 * const outputs = await model.infer(req.inputs, { outputs: req.outputs?.map((o) => o.name) });
 * ```
 */
export function decodeV2Request(body: Uint8Array, headerLength?: number): V2Request {
  const jsonBytes = headerLength === undefined ? body : body.subarray(0, headerLength);
  const binary = headerLength === undefined ? undefined : body.subarray(headerLength);
  const json =
    headerLength === undefined ? parseRequestJson(jsonBytes) : parseJson(jsonBytes, 'inference header');
  if (!isPlainObject(json)) throw invalidArgument('the request must be a JSON object');

  let id: string | undefined;
  if (json.id !== undefined) {
    if (typeof json.id !== 'string') throw invalidArgument('"id" must be a string');
    id = json.id;
  }
  const { parameters, timeoutUs, priority, sequence, binaryDataOutput } = reservedParameters(
    parseParameters(json.parameters, 'request'),
  );

  if (!Array.isArray(json.inputs)) throw invalidArgument('"inputs" must be an array');
  const inputs = Object.create(null) as Tensors;
  let offset = 0;
  const binLength = binary?.byteLength ?? 0;
  for (let i = 0; i < json.inputs.length; i++) {
    const raw: unknown = json.inputs[i];
    if (!isPlainObject(raw)) throw invalidArgument(`input ${i} must be an object`);
    const name = raw.name;
    if (typeof name !== 'string' || name.length === 0)
      throw invalidArgument(`input ${i}: "name" must be a non-empty string`);
    const what = `input "${name.slice(0, 64)}"`;
    if (Object.hasOwn(inputs, name)) throw invalidArgument(`${what} is given twice`);
    const type = fromV2Datatype(raw.datatype, what);
    const { dims, count } = parseShape(raw.shape, what);
    const ip = parseParameters(raw.parameters, what);
    let t: Tensor;
    if (ip.binary_data_size !== undefined) {
      const size = ip.binary_data_size;
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
        throw invalidArgument(`${what}: binary_data_size must be a non-negative integer`);
      }
      if (!binary)
        throw invalidArgument(`${what}: binary_data_size given without Inference-Header-Content-Length`);
      if (raw.data !== undefined) throw invalidArgument(`${what}: has both "data" and binary_data_size`);
      if (size > binLength - offset) {
        throw invalidArgument(`${what}: binary_data_size ${size} is past the end of the binary data`);
      }
      t = tensorFromBinary(type, [...dims], count, binary.subarray(offset, offset + size), what);
      offset += size;
    } else if (raw.data instanceof NumberList) {
      // Numbers taken out of the text by parseRequestJson: float32 straight into its typed array,
      // anything else through the general path with the array as JSON.parse reads it.
      t =
        type === 'float32' && raw.data.length === count
          ? { type, dims: [...dims], data: raw.data.toFloat32() }
          : tensorFromJson(type, [...dims], count, raw.data.toArray(), what);
    } else {
      t = tensorFromJson(type, [...dims], count, raw.data, what);
    }
    inputs[name] = t;
  }
  if (offset !== binLength) {
    throw invalidArgument(`${binLength - offset} bytes of binary data follow the inputs unclaimed`);
  }

  let outputs: RequestedOutput[] | undefined;
  if (json.outputs !== undefined) {
    if (!Array.isArray(json.outputs)) throw invalidArgument('"outputs" must be an array');
    outputs = [];
    const seen = new Set<string>();
    for (let i = 0; i < json.outputs.length; i++) {
      const raw: unknown = json.outputs[i];
      if (!isPlainObject(raw) || typeof raw.name !== 'string')
        throw invalidArgument(`output ${i}: "name" must be a string`);
      if (seen.has(raw.name)) throw invalidArgument(`output "${raw.name.slice(0, 64)}" is requested twice`);
      seen.add(raw.name);
      const op = parseParameters(raw.parameters, `output "${raw.name.slice(0, 64)}"`);
      const out: RequestedOutput = { name: raw.name };
      if (op.binary_data !== undefined) out.binary = op.binary_data === true;
      if (op.classification !== undefined) {
        const k = op.classification;
        if (typeof k !== 'number' || !Number.isSafeInteger(k) || k < 1) {
          throw invalidArgument(
            `output "${raw.name.slice(0, 64)}": classification must be a positive integer`,
          );
        }
        out.classification = k;
      }
      outputs.push(out);
    }
  }
  return { id, inputs, outputs, binaryDataOutput, parameters, timeoutUs, priority, sequence };
}

/** An encoded V2 message: `headerLength` is set (for `Inference-Header-Content-Length`) when binary. */
export interface EncodedMessage {
  body: Uint8Array;
  headerLength: number | undefined;
  contentType: string;
}

/** @deprecated The same as {@link EncodedMessage} (its old name). */
export type EncodedResponse = EncodedMessage;

/** Joins a JSON header and binary tensor parts into one V2 message. */
function message(json: string, binaries: Uint8Array[]): EncodedMessage {
  const header = encodeUtf8(json);
  if (binaries.length === 0)
    return { body: header, headerLength: undefined, contentType: 'application/json' };
  return {
    body: concatBytes([header, ...binaries]),
    headerLength: header.byteLength,
    contentType: 'application/octet-stream',
  };
}

/** One tensor entry of a V2 message: JSON `data`, or `binary_data_size` and the bytes pushed to `binaries`. */
function tensorEntry(
  name: string,
  t: Tensor,
  binary: boolean,
  binaries: Uint8Array[],
  extraParameters = '',
): string {
  const head = `{"name":${JSON.stringify(name)},"datatype":"${V2_DATATYPE[t.type]}","shape":[${t.dims.join(',')}]`;
  if (binary) {
    const bytes = tensorToBinary(t);
    binaries.push(bytes);
    return `${head},"parameters":{${extraParameters}"binary_data_size":${bytes.byteLength}}}`;
  }
  return extraParameters
    ? `${head},"parameters":{${extraParameters.slice(0, -1)}},"data":${tensorDataToJson(t)}}`
    : `${head},"data":${tensorDataToJson(t)}}`;
}

/**
 * Encodes a V2 inference response. Outputs go in the order asked for (else the model's); each
 * goes as JSON `data` or, when asked (`binary_data` per output or `binary_data_output`), as raw
 * bytes after the JSON header, with `binary_data_size` in its parameters.
 *
 * @example
 * ```ts
 * const enc = encodeV2Response(model, req.id, outputs, req);
 * res.setHeader('content-type', enc.contentType);
 * if (enc.headerLength !== undefined) res.setHeader('inference-header-content-length', String(enc.headerLength));
 * res.end(enc.body);
 * ```
 */
export function encodeV2Response(
  model: { name: string; version: string },
  id: string | undefined,
  outputs: Tensors,
  request: Pick<V2Request, 'outputs' | 'binaryDataOutput'>,
): EncodedMessage {
  const asked = request.outputs;
  const names = asked ? asked.map((o) => o.name) : Object.keys(outputs);
  const parts: string[] = [];
  const binaries: Uint8Array[] = [];
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const t = outputs[name];
    if (!t) continue;
    const binary = asked?.[i]?.binary ?? request.binaryDataOutput;
    parts.push(tensorEntry(name, t, binary, binaries));
  }
  const idPart = id === undefined ? '' : `"id":${JSON.stringify(id)},`;
  return message(
    `{${idPart}"model_name":${JSON.stringify(model.name)},"model_version":${JSON.stringify(model.version)},"outputs":[${parts.join(',')}]}`,
    binaries,
  );
}

/** What {@link encodeV2Request} sends besides the inputs. */
export interface V2RequestOptions {
  /** The request id (echoed in the response). */
  id?: string;
  /** Send the inputs in the binary tensor extension (default true): smaller and faster than JSON. */
  binary?: boolean;
  /** The outputs to return (default: all), each optionally as top-k classes or in JSON. */
  outputs?: readonly (string | RequestedOutput)[];
  /** Ask for every output in binary (default: `binary`), unless an output says otherwise. */
  binaryOutputs?: boolean;
  /** Request parameters passed to the model (scalars only). */
  parameters?: Record<string, ParameterValue>;
  /** The `timeout` parameter, microseconds (0 or absent: none). */
  timeoutUs?: number;
  /** The `priority` parameter. */
  priority?: number;
}

/**
 * Encodes a V2 inference request (the client side of {@link decodeV2Request}): inputs as raw bytes
 * after a JSON header (the binary tensor extension, by default) or as JSON `data`. Send `body` with
 * `contentType`, and `Inference-Header-Content-Length: headerLength` when that is set.
 *
 * @example
 * ```ts
 * import { encodeV2Request } from '@mlserve/protocol';
 * const enc = encodeV2Request({ image: { type: 'float32', dims: [1, 1, 28, 28], data: pixels } }, { outputs: ['logits'] });
 * const headers: Record<string, string> = { 'content-type': enc.contentType };
 * if (enc.headerLength !== undefined) headers['inference-header-content-length'] = String(enc.headerLength);
 * const res = await fetch(`${url}/v2/models/mnist/infer`, { method: 'POST', headers, body: enc.body });
 * ```
 */
export function encodeV2Request(inputs: Tensors, options: V2RequestOptions = {}): EncodedMessage {
  const binary = options.binary ?? true;
  const binaries: Uint8Array[] = [];
  const parts: string[] = [];
  for (const name of Object.keys(inputs)) parts.push(tensorEntry(name, inputs[name]!, binary, binaries));
  const params: Record<string, ParameterValue> = { ...options.parameters };
  if (options.timeoutUs !== undefined) params.timeout = options.timeoutUs;
  if (options.priority !== undefined) params.priority = options.priority;
  const binaryOutputs = options.binaryOutputs ?? binary;
  if (binaryOutputs) params.binary_data_output = true;
  let json = '{';
  if (options.id !== undefined) json += `"id":${JSON.stringify(options.id)},`;
  if (Object.keys(params).length > 0) json += `"parameters":${JSON.stringify(params)},`;
  json += `"inputs":[${parts.join(',')}]`;
  if (options.outputs) {
    const outs = options.outputs.map((o) => {
      const spec = typeof o === 'string' ? { name: o } : o;
      const p: Record<string, ParameterValue> = {};
      if (spec.binary !== undefined) p.binary_data = spec.binary;
      if (spec.classification !== undefined) p.classification = spec.classification;
      return Object.keys(p).length > 0 ? { name: spec.name, parameters: p } : { name: spec.name };
    });
    json += `,"outputs":${JSON.stringify(outs)}`;
  }
  return message(`${json}}`, binaries);
}

/** A decoded V2 inference response. */
export interface V2Response {
  id: string | undefined;
  modelName: string;
  modelVersion: string;
  /** Null-prototype record of the output tensors (BYTES as `Uint8Array`s when binary, strings when JSON). */
  outputs: Tensors;
  /** Response parameters (null prototype). */
  parameters: Record<string, ParameterValue>;
}

/**
 * Decodes a V2 inference response (the client side of {@link encodeV2Response}): a JSON body, or,
 * with `headerLength` (from `Inference-Header-Content-Length`), a JSON header followed by the
 * outputs' raw bytes. Sizes are checked as strictly as the server checks requests; `null` in a
 * float output is NaN (servers send NaN and the infinities so).
 *
 * @example
 * ```ts
 * import { decodeV2Response, parseHeaderLength } from '@mlserve/protocol';
 * const body = new Uint8Array(await res.arrayBuffer());
 * const { outputs } = decodeV2Response(body, parseHeaderLength(res.headers.get('inference-header-content-length') ?? undefined, body.byteLength));
 * ```
 */
export function decodeV2Response(body: Uint8Array, headerLength?: number): V2Response {
  const jsonBytes = headerLength === undefined ? body : body.subarray(0, headerLength);
  const binary = headerLength === undefined ? undefined : body.subarray(headerLength);
  const json = parseJson(jsonBytes, headerLength === undefined ? 'response body' : 'inference header');
  if (!isPlainObject(json)) throw invalidArgument('the response must be a JSON object');
  if (json.id !== undefined && typeof json.id !== 'string') throw invalidArgument('"id" must be a string');
  const modelName = typeof json.model_name === 'string' ? json.model_name : '';
  const modelVersion = typeof json.model_version === 'string' ? json.model_version : '';
  const parameters = parseParameters(json.parameters, 'response');
  const list = json.outputs ?? [];
  if (!Array.isArray(list)) throw invalidArgument('"outputs" must be an array');
  const outputs = Object.create(null) as Tensors;
  let offset = 0;
  const binLength = binary?.byteLength ?? 0;
  for (let i = 0; i < list.length; i++) {
    const raw: unknown = list[i];
    if (!isPlainObject(raw) || typeof raw.name !== 'string')
      throw invalidArgument(`output ${i}: "name" must be a string`);
    const what = `output "${raw.name.slice(0, 64)}"`;
    const type = fromV2Datatype(raw.datatype, what);
    const { dims, count } = parseShape(raw.shape, what);
    const op = parseParameters(raw.parameters, what);
    const size = op.binary_data_size;
    if (size !== undefined) {
      if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0)
        throw invalidArgument(`${what}: binary_data_size must be a non-negative integer`);
      if (!binary || size > binLength - offset)
        throw invalidArgument(`${what}: binary_data_size ${size} is past the end of the binary data`);
      outputs[raw.name] = tensorFromBinary(
        type,
        [...dims],
        count,
        binary.subarray(offset, offset + size),
        what,
      );
      offset += size;
    } else {
      outputs[raw.name] = tensorFromJson(type, [...dims], count, raw.data, what, true);
    }
  }
  if (offset !== binLength)
    throw invalidArgument(`${binLength - offset} bytes of binary data follow the outputs unclaimed`);
  const res: V2Response = { id: json.id as string | undefined, modelName, modelVersion, outputs, parameters };
  return res;
}

/**
 * The classification extension: replaces a score tensor with its top-k classes as BYTES
 * `score:index[:label]`, per batch row when the model is batched (shape `[batch, k]`), else over
 * the whole tensor (shape `[k]`).
 *
 * @example
 * ```ts
 * const top3 = classify(outputs.logits!, 3, true, ['cat', 'dog', 'bird', 'fish'], 'logits');
 * // top3.data: ['4.2:1:dog', '1.3:0:cat', '0.2:3:fish'], dims [1, 3]
 * ```
 */
export function classify(
  t: Tensor,
  k: number,
  batched: boolean,
  labels: readonly string[] | undefined,
  name: string,
): Tensor {
  if (t.type === 'string')
    throw invalidArgument(`output "${name}": classification needs a numeric output, it is BYTES`);
  const rows = batched && t.dims.length >= 2 ? t.dims[0]! : 1;
  const per = rows === 0 ? 0 : t.data.length / rows;
  const top = Math.min(k, per);
  const out: string[] = [];
  const values = t.data as ArrayLike<number | bigint>;
  const score = (i: number) => {
    const v = values[i]!;
    return t.type === 'float16' ? float16BitsToNumber(v as number) : Number(v);
  };
  for (let r = 0; r < rows; r++) {
    const idx = Array.from({ length: per }, (_, i) => i);
    idx.sort((a, b) => score(r * per + b) - score(r * per + a) || a - b);
    for (let j = 0; j < top; j++) {
      const i = idx[j]!;
      const label = labels?.[i];
      out.push(label === undefined ? `${score(r * per + i)}:${i}` : `${score(r * per + i)}:${i}:${label}`);
    }
  }
  return { type: 'string', dims: batched && t.dims.length >= 2 ? [rows, top] : [top], data: out };
}

/**
 * V2 model metadata (`GET /v2/models/{name}[/versions/{v}]`).
 *
 * @example
 * ```ts
 * reply.send(v2ModelMetadata(model.metadata(), registry.versions(model.name)));
 * ```
 */
export function v2ModelMetadata(meta: ModelMetadata, versions: readonly string[]): Record<string, unknown> {
  const io = (list: ModelMetadata['inputs']) =>
    list.map((i) => ({ name: i.name, datatype: V2_DATATYPE[i.type], shape: i.dims }));
  return {
    name: meta.name,
    versions,
    platform: meta.platform,
    inputs: io(meta.inputs),
    outputs: io(meta.outputs),
  };
}

/**
 * The class labels for an output's classification: `labels[model]` (one list, or one per output)
 * if the server was given them, else the model's `metadata().extra.labels`.
 *
 * @example
 * ```ts
 * const names = classificationLabels({ mnist: ['zero', 'one'] }, model.metadata(), 'logits');
 * ```
 */
export function classificationLabels(
  labels: Record<string, unknown>,
  meta: ModelMetadata,
  output: string,
): readonly string[] | undefined {
  const src: unknown = labels[meta.name] ?? meta.extra?.labels;
  if (Array.isArray(src)) return src as string[];
  if (src && typeof src === 'object') {
    const byOutput = (src as Record<string, unknown>)[output];
    if (Array.isArray(byOutput)) return byOutput as string[];
  }
  return undefined;
}
