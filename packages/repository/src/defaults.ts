import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import {
  type DataType,
  type Model,
  type ModelMetadata,
  type Tensor,
  type Tensors,
  TYPED_ARRAY,
  toServeError,
} from '@mlserve/core';

/**
 * The CPU quota of this process's cgroup, in CPUs (`quota / period` from cgroup v2's `cpu.max`, or
 * v1's `cpu.cfs_quota_us` / `cpu.cfs_period_us`), rounded up; undefined when there is none or it
 * cannot be read. `root` is for tests (default `/sys/fs/cgroup`).
 *
 * @example
 * ```ts
 * import { cgroupCpuQuota } from '@mlserve/repository';
 * console.log(cgroupCpuQuota() ?? 'no CPU quota');
 * ```
 */
export function cgroupCpuQuota(root = '/sys/fs/cgroup'): number | undefined {
  const read = (file: string) => {
    try {
      return readFileSync(`${root}/${file}`, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  let quota: number | undefined;
  let period: number | undefined;
  const v2 = read('cpu.max');
  if (v2 !== undefined) {
    const [q, p] = v2.split(/\s+/);
    if (q !== 'max') {
      quota = Number(q);
      period = Number(p ?? 100_000);
    }
  } else {
    const q = read('cpu/cpu.cfs_quota_us') ?? read('cpu,cpuacct/cpu.cfs_quota_us');
    const p = read('cpu/cpu.cfs_period_us') ?? read('cpu,cpuacct/cpu.cfs_period_us');
    if (q !== undefined && Number(q) > 0) {
      quota = Number(q);
      period = Number(p ?? 100_000);
    }
  }
  if (quota === undefined || period === undefined || !(quota > 0) || !(period > 0)) return undefined;
  return Math.max(1, Math.ceil(quota / period));
}

/**
 * The CPUs this process may use: `os.availableParallelism()` (the CPUs its affinity mask allows),
 * lowered to the cgroup CPU quota where a container sets one (a 2-CPU limit on a 64-core host is 2).
 * The one thread budget every default is cut from: worker threads x intra-op threads, plus the
 * event loop's own core, stay within it. `MLSERVE_CPUS` overrides it (a positive integer).
 *
 * @example
 * ```ts
 * import { cpuBudget } from '@mlserve/repository';
 * const processes = Math.max(1, Math.floor(cpuBudget() / 2)); // e.g. how many server processes fit
 * ```
 */
export function cpuBudget(): number {
  const forced = Number(process.env.MLSERVE_CPUS);
  if (Number.isSafeInteger(forced) && forced >= 1) return forced;
  const cpus = availableParallelism();
  const quota = cgroupCpuQuota();
  return Math.max(1, quota === undefined ? cpus : Math.min(cpus, quota));
}

/** Where and how a model runs when neither its config.json nor a flag says: see {@link defaultServing}. */
export interface ServingDefaults {
  /** The CPUs the budget was cut from ({@link cpuBudget}). */
  cpus: number;
  /** Worker threads per model (0: in the main thread). */
  workers: number;
  /** onnxruntime intra-op threads per session (each worker's, or the in-thread session's). */
  intraOpThreads: number;
  /**
   * Intra-op threads of a session that runs in the main thread anyway (`--workers 0`, a custom
   * loader): `cpus - 1` (at most 4, at least 1), so its spinning threads never take the event
   * loop's core.
   */
  inThreadIntraOpThreads: number;
}

/**
 * The default placement of a model that nothing configures, from the thread budget `cpus`
 * (default {@link cpuBudget}): the event loop keeps one CPU for itself (HTTP parsing and
 * serialization are most of a small model's cost), the rest computes.
 *
 * - 1 or 2 CPUs: in the main thread with `cpus - 1` intra-op threads (1): measured fastest on 2
 *   cores, where a worker's dispatch cost the event loop about what the compute itself did.
 * - 3 or more: one worker thread with `cpus - 1` intra-op threads (at most 8), so a batch computes
 *   on the spare cores while the event loop parses the next requests (not measured here: the
 *   benchmark machine has 2 cores). Always `workers x intraOpThreads + 1 <= cpus` (for cpus >= 2).
 *
 * @example
 * ```ts
 * import { defaultServing } from '@mlserve/repository';
 * defaultServing(2); // { cpus: 2, workers: 0, intraOpThreads: 1, inThreadIntraOpThreads: 1 }
 * defaultServing(8); // { cpus: 8, workers: 1, intraOpThreads: 7, inThreadIntraOpThreads: 4 }
 * ```
 */
export function defaultServing(cpus: number = cpuBudget()): ServingDefaults {
  const n = Math.max(1, Math.floor(cpus));
  const inThreadIntraOpThreads = Math.max(1, Math.min(4, n - 1));
  if (n < 3) return { cpus: n, workers: 0, intraOpThreads: inThreadIntraOpThreads, inThreadIntraOpThreads };
  return { cpus: n, workers: 1, intraOpThreads: Math.min(8, n - 1), inThreadIntraOpThreads };
}

/** What {@link rowsIndependent} found. */
export interface RowCheck {
  /** True when every row of a batch came out as that row run alone (within the tolerance). */
  independent: boolean;
  /** Why not, when not. */
  why?: string;
  /** The largest difference seen, relative above 1 (|a - b| / max(1, |b|)). */
  maxDiff: number;
}

/** A distinct, deterministic value for element `i` of row `r`. */
function rowValue(type: DataType, i: number, r: number): number | bigint | boolean {
  if (type === 'bool') return (i + r) % 2 === 0;
  if (type.startsWith('float')) return Math.sin(i * 12.9898 + (r + 1) * 78.233) * 0.5;
  const v = 1 + ((i + r) % 2);
  return type === 'int64' || type === 'uint64' ? BigInt(v) : v;
}

function rowInputs(meta: ModelMetadata, rows: number, offset: number): Tensors {
  const out: Tensors = {};
  for (const info of meta.inputs) {
    const dims = info.dims.map((d, i) => (i === 0 ? rows : d < 0 ? 1 : d));
    const per = dims.slice(1).reduce((a, b) => a * b, 1);
    const data = new TYPED_ARRAY[info.type as Exclude<DataType, 'string'>](rows * per) as unknown as {
      [i: number]: number | bigint | boolean;
    };
    for (let r = 0; r < rows; r++) {
      for (let i = 0; i < per; i++) {
        const v = rowValue(info.type, i, r + offset);
        data[r * per + i] = info.type === 'bool' ? (v ? 1 : 0) : v;
      }
    }
    out[info.name] = { type: info.type, dims, data } as unknown as Tensor;
  }
  return out;
}

/**
 * Whether `model` treats the rows of a batch independently: `rows` distinct rows run as one batch
 * must give, row for row, what each row gives alone (within `tolerance`, relative above 1). A
 * model whose batch dim is not dynamic, with string inputs, that fails a batch, or whose outputs
 * mix rows (batch normalization in training mode, attention across the batch, a sum over dim 0)
 * is not. The repository batches a model by default only when this holds.
 *
 * @example
 * ```ts
 * import { loadOnnxModel } from '@mlserve/backend-onnx';
 * import { rowsIndependent } from '@mlserve/repository';
 * const model = await loadOnnxModel('packages/test-utils/models/mnist-cnn.onnx');
 * console.log((await rowsIndependent(model)).independent); // true
 * await model.dispose();
 * ```
 */
export async function rowsIndependent(model: Model, rows = 3, tolerance = 1e-5): Promise<RowCheck> {
  const meta = model.metadata();
  const no = (why: string, maxDiff = Number.NaN): RowCheck => ({ independent: false, why, maxDiff });
  if (!(meta.maxBatchSize > 1) || meta.inputs.length === 0 || !meta.inputs.every((i) => i.batched)) {
    return no('its inputs have no dynamic batch dim');
  }
  if (meta.inputs.some((i) => i.type === 'string')) return no('it takes strings');
  const n = Math.max(2, Math.min(rows, meta.maxBatchSize));
  let worst = 0;
  try {
    const batch = await model.infer(rowInputs(meta, n, 0));
    for (let r = 0; r < n; r++) {
      const alone = await model.infer(rowInputs(meta, 1, r));
      for (const [name, single] of Object.entries(alone)) {
        const merged = batch[name];
        if (!merged || merged.dims[0] !== n || single.dims[0] !== 1) {
          return no(`output "${name}" does not follow the batch dim`);
        }
        const per = single.data.length;
        if (merged.data.length !== n * per) return no(`output "${name}" does not follow the batch dim`);
        for (let i = 0; i < per; i++) {
          const a = Number(merged.data[r * per + i]);
          const b = Number(single.data[i]);
          if (Object.is(a, b)) continue;
          const d = Math.abs(a - b) / Math.max(1, Math.abs(b));
          if (!(d <= tolerance)) {
            return no(
              `row ${r} of a batch of ${n} differs from that row alone by ${d.toExponential(2)} (over ${tolerance})`,
              Number.isNaN(d) ? Number.POSITIVE_INFINITY : d,
            );
          }
          worst = Math.max(worst, d);
        }
      }
    }
  } catch (err) {
    return no(`a batch of ${n} failed: ${toServeError(err).message}`);
  }
  return { independent: true, maxDiff: worst };
}
