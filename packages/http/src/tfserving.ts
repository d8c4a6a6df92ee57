import {
  type DataType,
  elementCount,
  float16BitsToNumber,
  invalidArgument,
  type ModelMetadata,
  type Tensor,
  type Tensors,
  tensor,
  type VersionStatus,
} from '@mlserve/core';
import { MAX_RANK, tensorToNested } from '@mlserve/protocol';

/**
 * TensorFlow Serving's REST API (`/v1/models/...`): the row (`instances`) and columnar (`inputs`)
 * predict formats, version status and signature metadata. Types come from the model's metadata,
 * since TF Serving JSON carries none; binary strings travel as `{"b64": "..."}`.
 */

/** A decoded predict request. */
export interface PredictRequest {
  inputs: Tensors;
  /** `instances` (row) or `inputs` (columnar): the response uses the same format. */
  format: 'row' | 'columnar';
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isB64(v: unknown): v is { b64: string } {
  return isPlainObject(v) && typeof v.b64 === 'string' && Object.keys(v).length === 1;
}

/** Shape of a nested array, read along its first elements; bounded by {@link MAX_RANK}. */
function inferDims(value: unknown, what: string): number[] {
  const dims: number[] = [];
  let v = value;
  while (Array.isArray(v)) {
    if (dims.length >= MAX_RANK) throw invalidArgument(`${what}: nested deeper than ${MAX_RANK}`);
    dims.push(v.length);
    v = v[0];
  }
  return dims;
}

/** Flattens a nested array that must have exactly `dims` (no ragged rows). */
function flattenStrict(
  value: unknown,
  dims: readonly number[],
  depth: number,
  out: unknown[],
  what: string,
): void {
  if (depth === dims.length) {
    if (Array.isArray(value))
      throw invalidArgument(`${what}: ragged nesting (expected a value at depth ${depth})`);
    out.push(value);
    return;
  }
  if (!Array.isArray(value) || value.length !== dims[depth]) {
    throw invalidArgument(`${what}: ragged nesting (expected ${dims[depth]} elements at depth ${depth})`);
  }
  for (const v of value) flattenStrict(v, dims, depth + 1, out, what);
}

/**
 * Builds a typed tensor from a nested JSON value (strict shape), for the model's declared type.
 *
 * @example
 * ```ts
 * nestedToTensor('float32', [[1, 2], [3, 4]], 'input "x"'); // float32[2,2]
 * ```
 */
export function nestedToTensor(type: DataType, value: unknown, what: string, leading?: number): Tensor {
  let dims: number[];
  let flat: unknown[];
  if (leading !== undefined) {
    // A list of rows (instances): each row's shape must be the same.
    const rows = value as unknown[];
    const rowDims = inferDims(rows[0], what);
    dims = [leading, ...rowDims];
    elementCount(dims, what);
    flat = [];
    for (const row of rows) flattenStrict(row, rowDims, 0, flat, what);
  } else {
    dims = inferDims(value, what);
    elementCount(dims, what);
    flat = [];
    flattenStrict(value, dims, 0, flat, what);
  }
  if (type === 'string') {
    const anyB64 = flat.some(isB64);
    const data = flat.map((v, i) => {
      if (isB64(v)) return Buffer.from(v.b64, 'base64');
      if (typeof v !== 'string')
        throw invalidArgument(`${what}: element ${i} must be a string or {"b64": ...}`);
      return anyB64 ? Buffer.from(v, 'utf8') : v;
    });
    return { type, dims, data: data as string[] | Uint8Array[] };
  }
  try {
    return tensor(type, flat as number[], dims);
  } catch (err) {
    throw invalidArgument(`${what}: ${(err as Error).message}`);
  }
}

/**
 * Decodes a TF Serving predict body against the model's inputs.
 *
 * @example
 * ```ts
 * const { inputs, format } = decodePredict(JSON.parse(text), model.metadata());
 * ```
 */
export function decodePredict(body: unknown, meta: ModelMetadata): PredictRequest {
  if (!isPlainObject(body)) throw invalidArgument('the request must be a JSON object');
  const hasRows = body.instances !== undefined;
  const hasCols = body.inputs !== undefined;
  if (hasRows === hasCols) throw invalidArgument('the request needs exactly one of "instances" or "inputs"');
  const typeOf = (name: string): DataType => {
    const info = meta.inputs.find((i) => i.name === name);
    if (!info) {
      throw invalidArgument(
        `unknown input "${name.slice(0, 64)}" (inputs: ${meta.inputs.map((i) => `"${i.name}"`).join(', ')})`,
      );
    }
    return info.type;
  };
  const inputs = Object.create(null) as Tensors;
  const single = meta.inputs.length === 1 ? meta.inputs[0]! : undefined;
  if (hasRows) {
    const rows = body.instances;
    if (!Array.isArray(rows) || rows.length === 0)
      throw invalidArgument('"instances" must be a non-empty array');
    const named = isPlainObject(rows[0]) && !isB64(rows[0]);
    if (!named) {
      if (!single)
        throw invalidArgument(
          'the model has several inputs: each instance must be an object of named inputs',
        );
      inputs[single.name] = nestedToTensor(single.type, rows, `input "${single.name}"`, rows.length);
      return { inputs, format: 'row' };
    }
    const names = Object.keys(rows[0] as object);
    for (const name of names) {
      const column = rows.map((r, i) => {
        if (!isPlainObject(r) || !Object.hasOwn(r, name))
          throw invalidArgument(`instance ${i} lacks input "${name.slice(0, 64)}"`);
        return r[name];
      });
      inputs[name] = nestedToTensor(typeOf(name), column, `input "${name.slice(0, 64)}"`, rows.length);
    }
    return { inputs, format: 'row' };
  }
  const cols = body.inputs;
  if (isPlainObject(cols) && !isB64(cols)) {
    for (const [name, value] of Object.entries(cols)) {
      inputs[name] = nestedToTensor(typeOf(name), value, `input "${name.slice(0, 64)}"`);
    }
  } else {
    if (!single)
      throw invalidArgument('the model has several inputs: "inputs" must be an object of named inputs');
    inputs[single.name] = nestedToTensor(single.type, cols, `input "${single.name}"`);
  }
  return { inputs, format: 'columnar' };
}

/**
 * Encodes outputs as TF Serving does: `{"predictions": [...]}` (row) or `{"outputs": ...}` (columnar).
 *
 * @example
 * ```ts
 * encodePredict({ scores: tensor('float32', [0.1, 0.9], [1, 2]) }, 'row'); // { predictions: [[0.1, 0.9]] }
 * ```
 */
export function encodePredict(outputs: Tensors, format: 'row' | 'columnar'): Record<string, unknown> {
  const names = Object.keys(outputs);
  if (format === 'columnar') {
    if (names.length === 1) return { outputs: tensorToNested(outputs[names[0]!]!) };
    const out: Record<string, unknown> = {};
    for (const n of names) out[n] = tensorToNested(outputs[n]!);
    return { outputs: out };
  }
  if (names.length === 1) {
    const t = outputs[names[0]!]!;
    return { predictions: t.dims.length === 0 ? [tensorToNested(t)] : tensorToNested(t) };
  }
  const rows = outputs[names[0]!]!.dims[0] ?? 1;
  const perOutput = names.map((n) => {
    const t = outputs[n]!;
    if ((t.dims[0] ?? 1) !== rows) {
      throw invalidArgument(`outputs have different batch sizes; use the columnar ("inputs") format`);
    }
    return tensorToNested(t) as unknown[];
  });
  const predictions: Record<string, unknown>[] = [];
  for (let r = 0; r < rows; r++) {
    const row: Record<string, unknown> = {};
    names.forEach((n, j) => {
      row[n] = perOutput[j]![r];
    });
    predictions.push(row);
  }
  return { predictions };
}

const TF_STATE: Record<VersionStatus['state'], string> = {
  loading: 'LOADING',
  ready: 'AVAILABLE',
  unloading: 'UNLOADING',
  unavailable: 'END',
  failed: 'END',
};

/**
 * `GET /v1/models/{name}[/versions/{v}]`: TF Serving's model status.
 *
 * @example
 * ```ts
 * reply.send(tfStatus(registry.list().filter((s) => s.name === 'mnist')));
 * ```
 */
export function tfStatus(statuses: readonly VersionStatus[]): Record<string, unknown> {
  return {
    model_version_status: statuses.map((s) => ({
      version: s.version,
      state: TF_STATE[s.state],
      status: { error_code: s.state === 'failed' ? 'UNKNOWN' : 'OK', error_message: s.error ?? '' },
    })),
  };
}

const TF_DTYPE: Record<DataType, string> = {
  float32: 'DT_FLOAT',
  float64: 'DT_DOUBLE',
  float16: 'DT_HALF',
  int8: 'DT_INT8',
  int16: 'DT_INT16',
  int32: 'DT_INT32',
  int64: 'DT_INT64',
  uint8: 'DT_UINT8',
  uint16: 'DT_UINT16',
  uint32: 'DT_UINT32',
  uint64: 'DT_UINT64',
  bool: 'DT_BOOL',
  string: 'DT_STRING',
};

/**
 * `GET /v1/models/{name}/metadata`: the model as one `serving_default` signature.
 *
 * @example
 * ```ts
 * reply.send(tfMetadata(registry.get('mnist').metadata()));
 * ```
 */
export function tfMetadata(meta: ModelMetadata): Record<string, unknown> {
  const io = (list: ModelMetadata['inputs']) => {
    const out: Record<string, unknown> = {};
    for (const i of list) {
      out[i.name] = {
        dtype: TF_DTYPE[i.type],
        tensor_shape: {
          dim: i.dims.map((d, j) => ({ size: String(d), name: i.dimNames?.[j] ?? '' })),
          unknown_rank: false,
        },
        name: i.name,
      };
    }
    return out;
  };
  return {
    model_spec: { name: meta.name, signature_name: '', version: meta.version },
    metadata: {
      signature_def: {
        signature_def: {
          serving_default: {
            inputs: io(meta.inputs),
            outputs: io(meta.outputs),
            method_name: 'tensorflow/serving/predict',
          },
        },
      },
    },
  };
}

const FLOAT_TYPES = new Set<DataType>(['float32', 'float64', 'float16']);

/**
 * The output `:classify` reads: the model's only output, or else the first one named `scores`,
 * `probabilities` or `logits`; it must be a float tensor of dims `[batch, classes]`. INVALID_ARGUMENT
 * (use `:predict`) when none fits.
 *
 * @example
 * ```ts
 * classifyOutput(model.metadata()); // 'logits' for mnist-cnn.onnx
 * ```
 */
export function classifyOutput(meta: ModelMetadata): string {
  const fits = (o: ModelMetadata['outputs'][number]) =>
    FLOAT_TYPES.has(o.type) && o.dims.length === 2 && o.batched && meta.maxBatchSize > 0;
  const named = ['scores', 'probabilities', 'logits'];
  const pick = meta.outputs.length === 1 ? meta.outputs[0] : meta.outputs.find((o) => named.includes(o.name));
  if (!pick || !fits(pick)) {
    throw invalidArgument(
      `model "${meta.name}" does not fit :classify (it needs one float output of dims [batch, classes], or one ` +
        'named scores, probabilities or logits); use :predict',
    );
  }
  return pick.name;
}

/**
 * The output `:regress` reads: the model's only output, or else the first one named `outputs`,
 * `value` or `prediction`; it must be a float tensor of dims `[batch]` or `[batch, 1]`.
 * INVALID_ARGUMENT (use `:predict`) when none fits.
 *
 * @example
 * ```ts
 * regressOutput(model.metadata()); // 'value'
 * ```
 */
export function regressOutput(meta: ModelMetadata): string {
  const fits = (o: ModelMetadata['outputs'][number]) =>
    FLOAT_TYPES.has(o.type) &&
    o.batched &&
    meta.maxBatchSize > 0 &&
    (o.dims.length === 1 || (o.dims.length === 2 && o.dims[1] === 1));
  const named = ['outputs', 'value', 'prediction'];
  const pick = meta.outputs.length === 1 ? meta.outputs[0] : meta.outputs.find((o) => named.includes(o.name));
  if (!pick || !fits(pick)) {
    throw invalidArgument(
      `model "${meta.name}" does not fit :regress (it needs one float output of dims [batch] or [batch, 1], or ` +
        'one named outputs, value or prediction); use :predict',
    );
  }
  return pick.name;
}

/**
 * Decodes a TF Serving `:classify` / `:regress` body (`{ "examples": [{feature: value}], "context":
 * {feature: value} }`) into the model's inputs: each example is one row, `context` features are
 * shared by every example, features are named as the model's inputs. A scalar feature fills an
 * input of dims `[batch, 1]`.
 *
 * @example
 * ```ts
 * const inputs = decodeExamples({ examples: [{ features: [...16 floats] }] }, model.metadata());
 * ```
 */
export function decodeExamples(body: unknown, meta: ModelMetadata): Tensors {
  if (!isPlainObject(body)) throw invalidArgument('the request must be a JSON object');
  const { examples, context } = body;
  if (!Array.isArray(examples) || examples.length === 0)
    throw invalidArgument('"examples" must be a non-empty array of objects');
  if (context !== undefined && !isPlainObject(context)) throw invalidArgument('"context" must be an object');
  const rows = examples.map((e, i) => {
    if (!isPlainObject(e) || isB64(e)) throw invalidArgument(`example ${i} must be an object of features`);
    return context ? { ...context, ...e } : e;
  });
  const { inputs } = decodePredict({ instances: rows }, meta);
  for (const name of Object.keys(inputs)) {
    const t = inputs[name]!;
    const info = meta.inputs.find((i) => i.name === name);
    if (info && info.dims.length === 2 && info.dims[1] === 1 && t.dims.length === 1) {
      inputs[name] = { type: t.type, dims: [t.dims[0]!, 1], data: t.data } as Tensor;
    }
  }
  return inputs;
}

/**
 * `:classify`'s answer: for each example, `[label, score]` for every class in the model's order.
 * Labels come from the server's labels for the model (or `metadata().extra.labels`), else the class
 * index as a string. Scores are the output's values as the model computes them.
 *
 * @example
 * ```ts
 * encodeClassify(tensor('float32', [0.2, 0.8], [1, 2]), ['cat', 'dog']); // { result: [[['cat', 0.2], ['dog', 0.8]]] }
 * ```
 */
export function encodeClassify(scores: Tensor, labels: readonly string[] | undefined): { result: unknown[] } {
  const [rows = 0, classes = 0] = scores.dims;
  const data = scores.data as ArrayLike<number>;
  const half = scores.type === 'float16';
  const result: [string, number][][] = [];
  for (let r = 0; r < rows; r++) {
    const row: [string, number][] = [];
    for (let c = 0; c < classes; c++) {
      const raw = data[r * classes + c]!;
      row.push([labels?.[c] ?? String(c), half ? float16BitsToNumber(raw) : raw]);
    }
    result.push(row);
  }
  return { result };
}

/**
 * `:regress`'s answer: one value per example.
 *
 * @example
 * ```ts
 * encodeRegress(tensor('float32', [1.5, 2.5], [2, 1])); // { result: [1.5, 2.5] }
 * ```
 */
export function encodeRegress(values: Tensor): { result: number[] } {
  const data = values.data as ArrayLike<number>;
  const half = values.type === 'float16';
  return { result: Array.from(data, (v) => (half ? float16BitsToNumber(v) : v)) };
}
