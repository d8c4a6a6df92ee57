import {
  type InferOptions,
  type ModelMetadata,
  parametersKey,
  renamedOption,
  type TensorInfo,
  type Tensors,
  TYPED_ARRAY,
} from '@mlserve/core';
import type { BatchingOptions, OutputTrim } from './options.js';

/**
 * What a batcher derives once from the model's metadata and its options: which inputs are
 * batched, which may be padded and with what, which output dims to trim, the effective limits.
 * Nothing in it changes after construction.
 */

/** An input with dynamic dims after the batch dim. */
export interface VariableInput {
  name: string;
  dims: number[];
  pad: number | bigint | undefined;
}

export interface Plan {
  readonly meta: ModelMetadata;
  /** The model cannot batch (no batched input, or `maxBatchSize` 0): requests go straight through. */
  readonly passthrough: boolean;
  readonly maxBatch: number;
  /** Batches in flight at once: the compute slots the model has. */
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  readonly rejectStatus: 429 | 503;
  /** A fixed `maxDelayMs`, or undefined for `'auto'`. */
  readonly fixedDelay: number | undefined;
  readonly maxLatency: number;
  readonly agingMs: number;
  /** Preferred batch sizes within `maxBatch`, ascending. */
  readonly preferred: readonly number[];
  readonly batchedInputs: readonly TensorInfo[];
  readonly unbatchedInputs: readonly TensorInfo[];
  readonly unbatchedInputNames: ReadonlySet<string>;
  readonly firstBatched: string;
  readonly variable: readonly VariableInput[];
  /** Padding mode with at least one variable input: the variable inputs by name. */
  readonly padded: ReadonlyMap<string, VariableInput>;
  /** Only equal shapes share a batch. */
  readonly bucket: boolean;
  /** Padded dims that share a name (`sequence` of input_ids and attention_mask): equal per request. */
  readonly ties: readonly { a: string; da: number; b: string; db: number }[];
  readonly trims: ReadonlyMap<string, readonly OutputTrim[]>;
  readonly unbatchedOutputs: ReadonlySet<string>;
  /** The typed-array constructor per declared input (Array for strings). */
  readonly ctors: readonly (abstract new (
    ...args: never[]
  ) => unknown)[];
}

/** Builds the plan; throws a TypeError when the options cannot apply to this model. */
export function makePlan(meta: ModelMetadata, options: BatchingOptions): Plan {
  const batchedInputs = meta.inputs.filter((i) => i.batched);
  const unbatchedInputs = meta.inputs.filter((i) => !i.batched);
  const maxBatch = Math.max(
    1,
    Math.min(options.maxBatchSize ?? 64, meta.maxBatchSize > 0 ? meta.maxBatchSize : 1),
  );
  const delay = options.maxDelayMs ?? 'auto';

  const variable: VariableInput[] = [];
  for (const info of batchedInputs) {
    const dims: number[] = [];
    for (let d = 1; d < info.dims.length; d++) if (info.dims[d]! < 0) dims.push(d);
    if (dims.length > 0) {
      const pad = options.padValues?.[info.name] ?? info.padValue;
      variable.push({ name: info.name, dims, pad: info.type === 'string' ? undefined : pad });
    }
  }
  const padsKnown = variable.every((v) => v.pad !== undefined);
  const mode = options.variableLength ?? (padsKnown ? 'pad' : 'bucket');
  if (mode === 'pad' && !padsKnown) {
    const missing = variable.find((v) => v.pad === undefined)!;
    throw new TypeError(
      `batching: options.variableLength 'pad' needs a pad value for input "${missing.name}" (options.padValues or the model's padValue)`,
    );
  }
  const bucket = mode === 'bucket' && variable.length > 0;
  const ties: { a: string; da: number; b: string; db: number }[] = [];
  if (!bucket) {
    const named: { input: string; dim: number; name: string }[] = [];
    for (const v of variable) {
      const info = meta.inputs.find((i) => i.name === v.name)!;
      for (const d of v.dims) {
        const name = info.dimNames?.[d];
        if (name) named.push({ input: v.name, dim: d, name });
      }
    }
    for (let i = 0; i < named.length; i++) {
      for (let k = i + 1; k < named.length; k++) {
        const x = named[i]!;
        const y = named[k]!;
        if (x.name === y.name) ties.push({ a: x.input, da: x.dim, b: y.input, db: y.dim });
      }
    }
  }
  const trims = new Map<string, readonly OutputTrim[]>();
  if (mode === 'pad' && variable.length > 0) {
    if (options.trimOutputs) {
      for (const [name, list] of Object.entries(options.trimOutputs)) trims.set(name, list);
    } else {
      for (const out of meta.outputs) {
        const list: OutputTrim[] = [];
        out.dimNames?.forEach((dimName, dim) => {
          if (dim === 0 || !dimName) return;
          for (const v of variable) {
            const info = meta.inputs.find((i) => i.name === v.name)!;
            const inputDim = v.dims.find((d) => info.dimNames?.[d] === dimName);
            if (inputDim !== undefined) {
              list.push({ dim, input: v.name, inputDim });
              return;
            }
          }
        });
        if (list.length > 0) trims.set(out.name, list);
      }
    }
  }
  const padded = new Map<string, VariableInput>();
  if (!bucket) for (const v of variable) padded.set(v.name, v);

  return {
    meta,
    passthrough: meta.maxBatchSize <= 0 || batchedInputs.length === 0,
    maxBatch,
    maxConcurrent: options.maxConcurrentBatches ?? defaultConcurrentBatches(meta),
    maxQueue: renamedOption(options, 'maxQueue', 'maxQueueSize', 'batching') ?? 4096,
    rejectStatus: options.rejectStatus ?? 429,
    fixedDelay: delay === 'auto' ? undefined : delay,
    maxLatency: options.maxLatencyMs ?? 10,
    agingMs: options.priorityAgingMs ?? 100,
    preferred: [...new Set(options.preferredBatchSizes ?? [])]
      .filter((p) => p <= maxBatch)
      .sort((a, b) => a - b),
    batchedInputs,
    unbatchedInputs,
    unbatchedInputNames: new Set(unbatchedInputs.map((i) => i.name)),
    firstBatched: batchedInputs[0]?.name ?? '',
    variable,
    padded,
    bucket,
    ties,
    trims,
    unbatchedOutputs: new Set(meta.outputs.filter((o) => !o.batched).map((o) => o.name)),
    ctors: meta.inputs.map((i) => (i.type === 'string' ? Array : TYPED_ARRAY[i.type])),
  };
}

/**
 * Batches in flight by default: the model's compute slots, from where it runs. A model computing
 * on the calling thread (an onnxruntime session: `concurrency` 1) gets one batch at a time, as a
 * second would only wait behind the first while blocking the event loop; a worker pool gets one per
 * thread (`concurrency` = its threads), so each thread computes one batch while the next forms on
 * the main thread.
 */
export function defaultConcurrentBatches(meta: Pick<ModelMetadata, 'concurrency'>): number {
  return Math.max(1, Math.floor(meta.concurrency) || 1);
}

/**
 * The common case of core's validateRequest without building any message: every declared input
 * present with the right type, rank, fixed dims and data length, nothing unknown. When it says
 * no, validateRequest runs and throws the exact error.
 */
export function quickValid(plan: Plan, inputs: Tensors): boolean {
  if (typeof inputs !== 'object' || inputs === null) return false;
  const specs = plan.meta.inputs;
  let rows = -1;
  for (let i = 0; i < specs.length; i++) {
    const info = specs[i]!;
    const t = inputs[info.name];
    if (typeof t !== 'object' || t === null || t.type !== info.type) return false;
    const dims = t.dims;
    if (!Array.isArray(dims) || dims.length !== info.dims.length) return false;
    let n = 1;
    for (let d = 0; d < dims.length; d++) {
      const v = dims[d];
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return false;
      const want = info.dims[d]!;
      if (want >= 0 && v !== want) return false;
      n *= v;
    }
    if (info.batched) {
      if (rows < 0) rows = dims[0]!;
      else if (rows !== dims[0]) return false;
    }
    const data = t.data as unknown as { length: number };
    if (info.type === 'string' || !(data instanceof plan.ctors[i]!) || data.length !== n) return false;
  }
  let count = 0;
  for (const k in inputs) {
    if (!Object.hasOwn(inputs, k)) return false;
    count++;
  }
  return count === specs.length;
}

/** KServe V2 / Triton request parameters that make a request part of a stateful sequence. */
const SEQUENCE_PARAMETERS = ['sequence_id', 'sequence_start', 'sequence_end'] as const;

/**
 * Whether a request belongs to a stateful sequence (`options.sequence`, or the V2 parameters
 * `sequence_id`, `sequence_start`, `sequence_end`). Such a request is never merged with another:
 * its rows carry state that other requests' rows must not share.
 */
export function isSequenceRequest(options: InferOptions | undefined): boolean {
  if (!options) return false;
  if (options.sequence !== undefined) return true;
  const p = options.parameters;
  if (!p) return false;
  for (const k of SEQUENCE_PARAMETERS) if (Object.hasOwn(p, k)) return true;
  return false;
}

/**
 * The key of the requests a request may share a batch with: equal parameters, equal values for
 * unbatched inputs, (bucketing) equal shapes. Undefined for a request that must never be merged.
 */
export function groupKey(plan: Plan, inputs: Tensors, options: InferOptions | undefined): string | undefined {
  if (options === undefined && plan.unbatchedInputs.length === 0 && !plan.bucket && plan.ties.length === 0) {
    return '';
  }
  if (isSequenceRequest(options)) return undefined;
  let key = options?.parameters ? parametersKey(options.parameters) : '';
  for (const info of plan.unbatchedInputs) {
    const t = inputs[info.name]!;
    key += `|${info.name}:${t.dims.join(',')}:${Array.prototype.join.call(t.data, ',')}`;
  }
  if (plan.bucket) {
    for (const v of plan.variable) key += `|${inputs[v.name]!.dims.join(',')}`;
  } else {
    // A request whose padded dims disagree with each other (ids of 5 tokens, a mask of 4) is not
    // padded into other requests' batch: if the model fails on it, it fails only with its like.
    for (const t of plan.ties) {
      if (inputs[t.a]!.dims[t.da] !== inputs[t.b]!.dims[t.db]) {
        for (const v of plan.variable) key += `|!${inputs[v.name]!.dims.join(',')}`;
        break;
      }
    }
  }
  return key;
}
