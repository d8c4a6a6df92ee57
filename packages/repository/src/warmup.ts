import {
  type DataType,
  invalidArgument,
  type Model,
  type ModelMetadata,
  type Tensor,
  type Tensors,
  TYPED_ARRAY,
  toServeError,
} from '@mlserve/core';
import type { WarmupConfig, WarmupSample } from './config.js';

/** What one warmup run did. */
export interface WarmupReport {
  /** Requests run. */
  requests: number;
  /** Batch sizes warmed, in order (0 for a model without a batch dim). */
  batchSizes: number[];
  /** Milliseconds it took. */
  ms: number;
  /** True when the time budget cut it short. */
  truncated: boolean;
}

/**
 * The batch sizes to warm: 1, the batcher's preferred sizes, powers of two and the maximum, never
 * above what the model takes. `[0]` for a model without a batch dim (one request as declared).
 *
 * @example
 * ```ts
 * warmupBatchSizes(model.metadata(), {}, { maxBatchSize: 24 }); // [1, 2, 4, 8, 16, 24]
 * ```
 */
export function warmupBatchSizes(
  meta: ModelMetadata,
  warmup: Pick<WarmupConfig, 'batchSizes' | 'maxBatchSize'>,
  batching?: { maxBatchSize?: unknown; preferredBatchSizes?: unknown },
): number[] {
  const batched = meta.inputs.length > 0 && meta.inputs.every((i) => i.batched) && meta.maxBatchSize > 0;
  if (!batched) return [0];
  const modelMax = meta.maxBatchSize;
  const batcherMax = typeof batching?.maxBatchSize === 'number' ? batching.maxBatchSize : undefined;
  const max = Math.max(1, Math.min(modelMax, warmup.maxBatchSize ?? batcherMax ?? 32));
  let sizes: number[];
  if (warmup.batchSizes) sizes = [...warmup.batchSizes];
  else {
    sizes = [1, max];
    for (let p = 2; p < max; p *= 2) sizes.push(p);
    if (Array.isArray(batching?.preferredBatchSizes)) {
      for (const s of batching.preferredBatchSizes) if (typeof s === 'number') sizes.push(s);
    }
  }
  return [...new Set(sizes.filter((s) => s >= 1 && s <= modelMax))].sort((a, b) => a - b);
}

function filled(type: DataType, count: number, fill: number | bigint = 0): Tensor['data'] {
  if (type === 'string') return new Array<string>(count).fill('');
  const Ctor = TYPED_ARRAY[type];
  const data = new Ctor(count);
  if (fill !== 0) {
    const v = type === 'int64' || type === 'uint64' ? BigInt(fill) : Number(fill);
    (data as unknown as { fill(v: unknown): void }).fill(v);
  }
  return data;
}

/**
 * Zero-filled inputs for one request of `batch` rows (dynamic non-batch dims become 1).
 *
 * @example
 * ```ts
 * await model.infer(zeroInputs(model.metadata(), 4));
 * ```
 */
export function zeroInputs(meta: ModelMetadata, batch: number): Tensors {
  const out: Tensors = {};
  for (const info of meta.inputs) {
    const dims = info.dims.map((d, i) => (i === 0 && info.batched && batch > 0 ? batch : d < 0 ? 1 : d));
    const count = dims.reduce((a, b) => a * b, 1);
    out[info.name] = { type: info.type, dims, data: filled(info.type, count) } as Tensor;
  }
  return out;
}

/**
 * Tensors from a config sample, typed by the model's signature.
 *
 * @example
 * ```ts
 * const inputs = sampleInputs(meta, config.warmup.samples![0]!, 'mnist/config.json');
 * ```
 */
export function sampleInputs(meta: ModelMetadata, sample: WarmupSample, file: string): Tensors {
  const out: Tensors = {};
  for (const [name, spec] of Object.entries(sample.inputs)) {
    const info = meta.inputs.find((i) => i.name === name);
    if (!info) throw invalidArgument(`${file}: warmup sample input "${name}" is not an input of the model`);
    const count = spec.dims.reduce((a, b) => a * b, 1);
    let data: Tensor['data'];
    if (spec.data) {
      if (info.type === 'string') data = spec.data.map(String);
      else {
        const big = info.type === 'int64' || info.type === 'uint64';
        const typed = filled(info.type, count) as unknown as { [i: number]: number | bigint };
        spec.data.forEach((v, i) => {
          typed[i] = big ? BigInt(Number(v)) : Number(v);
        });
        data = typed as unknown as Tensor['data'];
      }
    } else data = filled(info.type, count, spec.fill ?? 0);
    out[name] = { type: info.type, dims: spec.dims, data } as Tensor;
  }
  return out;
}

/**
 * Runs sample requests against `model` so that the first real request does not pay for lazy
 * allocation: the config's samples first, then zeros at each of {@link warmupBatchSizes} (give
 * `batchSizes: []` to run the samples only). Each size runs
 * `metadata().concurrency` times at once (capped at 8) so every worker of a pool is warmed. Stops
 * starting new requests once `budgetMs` has passed or `signal` aborts. A failing request rejects
 * (a model that cannot run zeros at batch 1 is not ready to serve).
 *
 * @example
 * ```ts
 * const report = await runWarmup(model, { enabled: true, budgetMs: 5000, maxBatchSize: 16 });
 * console.log(`${report.requests} warmup requests in ${report.ms} ms`);
 * ```
 */
export async function runWarmup(
  model: Model,
  warmup: WarmupConfig,
  options: {
    batching?: Record<string, unknown>;
    file?: string;
    signal?: AbortSignal;
    onProgress?: (done: number, total: number, batchSize: number) => void;
  } = {},
): Promise<WarmupReport> {
  const started = performance.now();
  const meta = model.metadata();
  const report: WarmupReport = { requests: 0, batchSizes: [], ms: 0, truncated: false };
  if (!warmup.enabled) return report;
  const file = options.file ?? 'config.json';
  const plans: { batch: number; inputs: () => Tensors }[] = [
    ...(warmup.samples ?? []).map((s) => ({
      batch: sampleBatch(meta, s),
      inputs: () => sampleInputs(meta, s, file),
    })),
    ...warmupBatchSizes(meta, warmup, options.batching).map((batch) => ({
      batch,
      inputs: () => zeroInputs(meta, batch),
    })),
  ];
  const parallel = Math.max(1, Math.min(8, meta.concurrency || 1));
  for (let i = 0; i < plans.length; i++) {
    const plan = plans[i]!;
    if (options.signal?.aborted) {
      report.truncated = true;
      break;
    }
    if (i > 0 && performance.now() - started > warmup.budgetMs) {
      report.truncated = true;
      break;
    }
    options.onProgress?.(i, plans.length, plan.batch);
    try {
      await Promise.all(Array.from({ length: parallel }, () => model.infer(plan.inputs())));
    } catch (err) {
      const e = toServeError(err);
      const at = plan.batch > 0 ? ` at batch size ${plan.batch}` : '';
      throw toServeError(new Error(`warmup failed${at}: ${e.message}`, { cause: err }));
    }
    report.requests += parallel;
    report.batchSizes.push(plan.batch);
  }
  report.ms = performance.now() - started;
  return report;
}

function sampleBatch(meta: ModelMetadata, sample: WarmupSample): number {
  const first = meta.inputs[0];
  const spec = first ? sample.inputs[first.name] : undefined;
  return first?.batched && spec ? (spec.dims[0] ?? 0) : 0;
}
