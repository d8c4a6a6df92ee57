import type { InferContext, ModelMetadata } from '@mlserve/core';
import { V2_DATATYPE } from './codec.js';

/** A Triton duration statistic: how many and how long in total (nanoseconds). */
export interface Stat {
  count: number;
  ns: number;
}

export interface ModelStats {
  name: string;
  version: string;
  last_inference: number;
  inference_count: number;
  execution_count: number;
  inference_stats: Record<
    | 'success'
    | 'fail'
    | 'queue'
    | 'compute_input'
    | 'compute_infer'
    | 'compute_output'
    | 'cache_hit'
    | 'cache_miss',
    Stat
  >;
  batch_stats: BatchStat[];
}

/** Triton's per-batch-size statistic: executions of `batch_size` rows and their time. */
export interface BatchStat {
  batch_size: number;
  compute_input: Stat;
  compute_infer: Stat;
  compute_output: Stat;
}

/**
 * Executions by batch size, as a batching layer counts them (`stats().batching.batchSizes` of
 * @mlserve/batching): how many calls of `size` rows ran, and their compute time in total, ms.
 */
export type BatchSizeCounts = readonly { size: number; count: number; computeMs: number }[];

/** Where {@link ServerStats.get} reads a model version's executions when a layer counts them. */
export type BatchSizeSource = (name: string, version: string) => BatchSizeCounts | undefined;

/** The executed batch sizes a model's layers report (`stats().batching.batchSizes`), if any. */
export function batchSizesOf(stats: Record<string, unknown> | undefined): BatchSizeCounts | undefined {
  const b = stats?.batching as { batchSizes?: unknown } | undefined;
  return Array.isArray(b?.batchSizes) ? (b.batchSizes as BatchSizeCounts) : undefined;
}

const stat = (): Stat => ({ count: 0, ns: 0 });

function batchStat(size: number, count: number, ns: number): BatchStat {
  return {
    batch_size: size,
    compute_input: { count, ns: 0 },
    compute_infer: { count, ns },
    compute_output: { count, ns: 0 },
  };
}

/**
 * Per-model counters of the requests this server handled, in the shape of Triton's statistics
 * extension (`GET /v2/models[/{name}[/versions/{v}]]/stats`), which perf_analyzer reads.
 *
 * @example
 * ```ts
 * const stats = new ServerStats();
 * stats.record('mnist', '1', true, 3.2, 1, { computeMs: 2.5, batchSize: 4 });
 * stats.get('mnist'); // { model_stats: [{ name: 'mnist', inference_count: 1, ... }] }
 * ```
 */
export class ServerStats {
  readonly #models = new Map<string, ModelStats>();
  /** Executions seen from here (each request one call of its rows), for models no layer counts. */
  readonly #sizes = new Map<ModelStats, Map<number, Stat>>();

  #entry(name: string, version: string): ModelStats {
    const key = `${name}\u0000${version}`;
    let e = this.#models.get(key);
    if (!e) {
      e = {
        name,
        version,
        last_inference: 0,
        inference_count: 0,
        execution_count: 0,
        inference_stats: {
          success: stat(),
          fail: stat(),
          queue: stat(),
          compute_input: stat(),
          compute_infer: stat(),
          compute_output: stat(),
          cache_hit: stat(),
          cache_miss: stat(),
        },
        batch_stats: [],
      };
      this.#models.set(key, e);
    }
    return e;
  }

  /** Records one finished request. */
  record(
    name: string,
    version: string,
    ok: boolean,
    durationMs: number,
    rows: number,
    ctx: InferContext,
  ): void {
    const e = this.#entry(name, version);
    const ns = Math.round(durationMs * 1e6);
    e.last_inference = Date.now();
    const s = e.inference_stats;
    if (!ok) {
      s.fail.count++;
      s.fail.ns += ns;
      return;
    }
    s.success.count++;
    s.success.ns += ns;
    e.inference_count += rows;
    if (ctx.cacheHit === true) {
      s.cache_hit.count++;
      s.cache_hit.ns += ns;
      return;
    }
    if (ctx.cacheHit === false) s.cache_miss.count++;
    if (ctx.batchSize === undefined) {
      // No batching layer: the request ran as one call of its own rows.
      let sizes = this.#sizes.get(e);
      if (sizes === undefined) {
        sizes = new Map();
        this.#sizes.set(e, sizes);
      }
      let b = sizes.get(rows);
      if (b === undefined) {
        b = stat();
        sizes.set(rows, b);
      }
      b.count++;
      b.ns += Math.round((typeof ctx.computeMs === 'number' ? ctx.computeMs : durationMs) * 1e6);
    }
    const batch = typeof ctx.batchSize === 'number' && ctx.batchSize > 0 ? ctx.batchSize : rows;
    e.execution_count += batch > 0 ? Math.min(1, rows / batch) : 1;
    if (typeof ctx.queueMs === 'number') {
      s.queue.count++;
      s.queue.ns += Math.round(ctx.queueMs * 1e6);
    }
    if (typeof ctx.computeMs === 'number') {
      s.compute_infer.count++;
      s.compute_infer.ns += Math.round(ctx.computeMs * 1e6);
    }
  }

  /**
   * The statistics response for every model, one model, or one version. `batch_stats` come from
   * `source` where it knows the model version (a batching layer counts each merged call once),
   * else from the requests seen here.
   */
  get(name?: string, version?: string, source?: BatchSizeSource): { model_stats: ModelStats[] } {
    const out: ModelStats[] = [];
    for (const e of this.#models.values()) {
      if (name !== undefined && e.name !== name) continue;
      if (version !== undefined && e.version !== version) continue;
      let batchStats: BatchStat[];
      let executions = Math.round(e.execution_count);
      const counted = source?.(e.name, e.version);
      if (counted !== undefined && counted.length > 0) {
        batchStats = counted.map((b) => batchStat(b.size, b.count, Math.round(b.computeMs * 1e6)));
        executions = counted.reduce((n, b) => n + b.count, 0);
      } else {
        batchStats = [...(this.#sizes.get(e) ?? [])]
          .sort((a, b) => a[0] - b[0])
          .map(([size, s]) => batchStat(size, s.count, s.ns));
      }
      out.push({
        ...e,
        inference_stats: structuredClone(e.inference_stats),
        execution_count: executions,
        batch_stats: batchStats,
      });
    }
    return { model_stats: out };
  }
}

/**
 * Triton's model configuration (`GET /v2/models/{name}/config`), derived from the metadata.
 *
 * @example
 * ```ts
 * reply.send(tritonConfig(registry.get('mnist').metadata())); // { max_batch_size, input: [{ dims: [1, 28, 28] }] }
 * ```
 */
export function tritonConfig(meta: ModelMetadata): Record<string, unknown> {
  const batched = meta.maxBatchSize > 0;
  const io = (list: ModelMetadata['inputs']) =>
    list.map((t) => ({
      name: t.name,
      data_type: `TYPE_${V2_DATATYPE[t.type] === 'BYTES' ? 'STRING' : V2_DATATYPE[t.type]}`,
      format: 'FORMAT_NONE',
      // With batching, Triton's dims leave out the batch dim.
      dims: batched && t.batched ? t.dims.slice(1) : t.dims,
    }));
  return {
    name: meta.name,
    platform: meta.platform,
    backend: meta.backend ?? '',
    max_batch_size: batched ? Math.min(meta.maxBatchSize, 2 ** 31 - 1) : 0,
    input: io(meta.inputs),
    output: io(meta.outputs),
    version_policy: { latest: { num_versions: 1 } },
  };
}
