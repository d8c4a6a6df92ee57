import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cgroupCpuQuota, cpuBudget, defaultServing } from '../src/index.js';

const dirs: string[] = [];
function cgroup(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'mlserve-cgroup-'));
  dirs.push(root);
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(join(root, file, '..'), { recursive: true });
    writeFileSync(join(root, file), text);
  }
  return root;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  delete process.env.MLSERVE_CPUS;
});

describe('the CPU budget', () => {
  it('reads a cgroup v2 quota, rounding up; "max" is no quota', () => {
    expect(cgroupCpuQuota(cgroup({ 'cpu.max': '150000 100000\n' }))).toBe(2);
    expect(cgroupCpuQuota(cgroup({ 'cpu.max': '400000 100000' }))).toBe(4);
    expect(cgroupCpuQuota(cgroup({ 'cpu.max': '50000 100000' }))).toBe(1);
    expect(cgroupCpuQuota(cgroup({ 'cpu.max': 'max 100000' }))).toBeUndefined();
  });

  it('reads a cgroup v1 quota; -1 is no quota; nothing readable is no quota', () => {
    expect(
      cgroupCpuQuota(cgroup({ 'cpu/cpu.cfs_quota_us': '300000', 'cpu/cpu.cfs_period_us': '100000' })),
    ).toBe(3);
    expect(
      cgroupCpuQuota(cgroup({ 'cpu/cpu.cfs_quota_us': '-1', 'cpu/cpu.cfs_period_us': '100000' })),
    ).toBeUndefined();
    expect(cgroupCpuQuota(cgroup({}))).toBeUndefined();
  });

  it('is at most the CPUs this process may run on, and MLSERVE_CPUS overrides it', () => {
    expect(cpuBudget()).toBeGreaterThanOrEqual(1);
    expect(cpuBudget()).toBeLessThanOrEqual(availableParallelism());
    process.env.MLSERVE_CPUS = '7';
    expect(cpuBudget()).toBe(7);
    process.env.MLSERVE_CPUS = 'lots';
    expect(cpuBudget()).toBeLessThanOrEqual(availableParallelism());
  });

  it('keeps one CPU for the event loop: workers x intra-op threads + 1 within the budget', () => {
    expect(defaultServing(1)).toEqual({ cpus: 1, workers: 0, intraOpThreads: 1 });
    expect(defaultServing(2)).toEqual({ cpus: 2, workers: 1, intraOpThreads: 1 });
    for (const cpus of [2, 3, 4, 8, 16, 64]) {
      const d = defaultServing(cpus);
      expect(d.workers * d.intraOpThreads + 1).toBeLessThanOrEqual(cpus);
      expect(d.workers).toBeGreaterThanOrEqual(1);
    }
  });
});
