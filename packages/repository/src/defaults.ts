import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

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
}

/**
 * The default placement of a model that nothing configures, from the thread budget `cpus`
 * (default {@link cpuBudget}): the event loop keeps one CPU for itself (HTTP parsing and
 * serialization are most of a small model's cost), the rest computes.
 *
 * - 1 CPU: in the main thread, 1 intra-op thread (a worker would only add a copy and a hop).
 * - 2 or more: one worker thread with `cpus - 1` intra-op threads (at most 8), so a batch computes
 *   while the event loop parses the next requests; `workers x intraOpThreads + 1 <= cpus`.
 *
 * Why (measured on 2 cores, see the README): in-thread onnxruntime stops the event loop for the
 * whole run, and two intra-op threads on two cores take the core the event loop needs.
 *
 * @example
 * ```ts
 * import { defaultServing } from '@mlserve/repository';
 * defaultServing(2); // { cpus: 2, workers: 1, intraOpThreads: 1 }
 * defaultServing(1); // { cpus: 1, workers: 0, intraOpThreads: 1 }
 * ```
 */
export function defaultServing(cpus: number = cpuBudget()): ServingDefaults {
  const n = Math.max(1, Math.floor(cpus));
  if (n < 2) return { cpus: n, workers: 0, intraOpThreads: 1 };
  return { cpus: n, workers: 1, intraOpThreads: Math.min(8, n - 1) };
}
