import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Where {@link cpuLimit} reads the cgroup files (a test points it at a fake tree). */
export interface CpuLimitSources {
  /** `/sys/fs/cgroup` by default. */
  cgroupRoot?: string;
  /** The contents of `/proc/self/cgroup` (default: read it). */
  procSelfCgroup?: string;
  /** CPUs the scheduler lets this process run on (default `os.availableParallelism()`). */
  parallelism?: number;
}

/** What {@link cpuLimit} found, for logs and the thread budget. */
export interface CpuLimit {
  /** Whole CPUs this server may use: at least 1. */
  cpus: number;
  /** The cgroup quota in CPUs (e.g. 1.5 for `docker run --cpus 1.5`), or undefined when none is set. */
  quota?: number;
  /** CPUs the scheduler allows (affinity, `taskset`, cpuset), before the quota. */
  parallelism: number;
}

function read(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/** `max 100000` -> undefined; `150000 100000` -> 1.5. */
function parseCpuMax(text: string | undefined): number | undefined {
  if (!text) return undefined;
  const [quota, period] = text.trim().split(/\s+/);
  if (!quota || quota === 'max') return undefined;
  const q = Number(quota);
  const p = Number(period ?? 100_000);
  return q > 0 && p > 0 ? q / p : undefined;
}

/**
 * The CPUs this server may use: the scheduler's CPU set (`os.availableParallelism()`) capped by the
 * cgroup CPU quota, the one `docker run --cpus`, a Kubernetes CPU limit or systemd's `CPUQuota`
 * set. It reads cgroup v2's `cpu.max` along this process's cgroup path (the tightest ancestor wins;
 * inside a container that is `/sys/fs/cgroup/cpu.max`) and cgroup v1's `cpu.cfs_quota_us`. A
 * fractional quota rounds down (1.5 CPUs is 1 whole CPU, as Go's automaxprocs does), never below 1.
 *
 * @example
 * ```ts
 * import { cpuLimit } from '@mlserve/cli';
 * const { cpus, quota } = cpuLimit(); // in `docker run --cpus 1`: { cpus: 1, quota: 1, ... }
 * ```
 */
export function cpuLimit(sources: CpuLimitSources = {}): CpuLimit {
  const root = sources.cgroupRoot ?? '/sys/fs/cgroup';
  const parallelism = Math.max(1, sources.parallelism ?? availableParallelism());
  const quotas: number[] = [];
  const self = sources.procSelfCgroup ?? read('/proc/self/cgroup') ?? '';
  // cgroup v2: "0::/path"; walk from the process's cgroup up to the root.
  const v2 = /^0::(\/.*)$/m.exec(self)?.[1];
  const dirs = new Set<string>();
  if (v2 !== undefined) {
    const parts = v2.split('/').filter(Boolean);
    for (let i = parts.length; i >= 0; i--)
      dirs.add(`${root}/${parts.slice(0, i).join('/')}`.replace(/\/$/, ''));
  }
  dirs.add(root);
  for (const dir of dirs) {
    const q = parseCpuMax(read(`${dir}/cpu.max`));
    if (q !== undefined) quotas.push(q);
  }
  // cgroup v1.
  for (const dir of [`${root}/cpu`, `${root}/cpu,cpuacct`]) {
    const quota = Number(read(`${dir}/cpu.cfs_quota_us`)?.trim());
    const period = Number(read(`${dir}/cpu.cfs_period_us`)?.trim());
    if (quota > 0 && period > 0) quotas.push(quota / period);
  }
  const quota = quotas.length > 0 ? Math.min(...quotas) : undefined;
  const cpus = Math.max(1, Math.min(parallelism, quota === undefined ? parallelism : Math.floor(quota)));
  return { cpus, ...(quota !== undefined && { quota }), parallelism };
}
