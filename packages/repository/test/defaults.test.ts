import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import { wrap } from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { afterEach, describe, expect, it } from 'vitest';
import { cgroupCpuQuota } from '../src/defaults.js';
import {
  cpuBudget,
  defaultServing,
  loadRepository,
  type Repository,
  type RepositoryOptions,
  rowsIndependent,
} from '../src/index.js';
import { addVersion, argmax, digit, tempRepo, writeConfig } from './helpers.js';
import { onnxLoader } from './loader.js';

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
    expect(defaultServing(1)).toEqual({ cpus: 1, workers: 0, intraOpThreads: 1, inThreadIntraOpThreads: 1 });
    expect(defaultServing(2)).toEqual({ cpus: 2, workers: 0, intraOpThreads: 1, inThreadIntraOpThreads: 1 });
    expect(defaultServing(4)).toEqual({ cpus: 4, workers: 1, intraOpThreads: 3, inThreadIntraOpThreads: 3 });
    for (const cpus of [3, 4, 8, 16, 64]) {
      const d = defaultServing(cpus);
      expect(d.workers * d.intraOpThreads + 1).toBeLessThanOrEqual(cpus);
      expect(d.workers).toBeGreaterThanOrEqual(1);
      expect(d.inThreadIntraOpThreads).toBeLessThan(cpus);
    }
  });
});

describe('default batching (no config.json)', () => {
  const repos: Repository[] = [];
  afterEach(async () => {
    for (const r of repos.splice(0)) await r.close();
  });
  async function open(dir: string, loaders: RepositoryOptions['loaders'] = { onnx: onnxLoader() }) {
    const lines: string[] = [];
    const repo = await loadRepository(dir, {
      loaders,
      warmup: false,
      logger: { info: (m) => lines.push(m) },
    });
    repos.push(repo);
    return { repo, lines };
  }

  it('batches a model whose rows are independent, with answers equal to unbatched ones', async () => {
    const t = await tempRepo();
    dirs.push(t.dir);
    await addVersion(t.dir, 'mnist', '1');
    const { repo, lines } = await open(t.dir);
    const stats = repo.registry.get('mnist').stats?.() as { batching?: { delayMs: number } };
    expect(stats.batching).toBeDefined();
    expect(lines.some((l) => /mnist\/1: batched by default/.test(l))).toBe(true);
    const reference = await loadOnnxModel(modelPath('mnist-cnn.onnx'), { intraOpNumThreads: 1 });
    try {
      const outs = await Promise.all(
        Array.from({ length: 16 }, (_, i) => repo.registry.infer('mnist', undefined, digit(i))),
      );
      for (const [i, out] of outs.entries()) {
        const alone = await reference.infer(digit(i));
        const a = out.logits!.data as Float32Array;
        const b = alone.logits!.data as Float32Array;
        for (let k = 0; k < b.length; k++) expect(Math.abs(a[k]! - b[k]!)).toBeLessThanOrEqual(1e-5);
      }
    } finally {
      await reference.dispose();
    }
  });

  it('"batching": false in config.json turns the default off', async () => {
    const t = await tempRepo();
    dirs.push(t.dir);
    await addVersion(t.dir, 'mnist', '1');
    await writeConfig(t.dir, 'mnist', { batching: false });
    const { repo } = await open(t.dir);
    expect(repo.registry.get('mnist').stats?.()).not.toHaveProperty('batching');
  });

  it('never batches by default a model that mixes rows across the batch', async () => {
    const t = await tempRepo();
    dirs.push(t.dir);
    await addVersion(t.dir, 'mlp', '1', 'mlp.onnx');
    const onnx = onnxLoader();
    // The MLP, then each output row minus the batch's mean row: rows depend on their neighbours.
    const mixing = async (source: string, options: Record<string, unknown>) => {
      const m = await onnx(source, options);
      return wrap(m, {
        infer: async (inputs, o) => {
          const out = await m.infer(inputs, o);
          for (const tensor of Object.values(out)) {
            const data = tensor.data as Float32Array;
            const rows = tensor.dims[0]!;
            const per = data.length / rows;
            for (let i = 0; i < per; i++) {
              let sum = 0;
              for (let r = 0; r < rows; r++) sum += data[r * per + i]!;
              for (let r = 0; r < rows; r++) data[r * per + i]! -= sum / rows;
            }
          }
          return out;
        },
      });
    };
    const { repo, lines } = await open(t.dir, { onnx: mixing });
    expect(repo.registry.get('mlp').stats?.()).not.toHaveProperty('batching');
    expect(lines.some((l) => /mlp\/1: not batched by default: row 0 of a batch of 3 differs/.test(l))).toBe(
      true,
    );
  });

  it('rowsIndependent: true for mnist-cnn, false for a model without a dynamic batch dim', async () => {
    const model = await loadOnnxModel(modelPath('mnist-cnn.onnx'), { intraOpNumThreads: 1 });
    try {
      const check = await rowsIndependent(model);
      expect(check).toMatchObject({ independent: true });
      expect(check.maxDiff).toBeLessThanOrEqual(1e-5);
      const fixed = wrap(model, {
        metadata: () => ({ ...model.metadata(), maxBatchSize: 0 }),
      });
      expect(await rowsIndependent(fixed)).toMatchObject({ independent: false });
    } finally {
      await model.dispose();
    }
  });

  it('requests with sequence parameters are never merged, each runs alone', async () => {
    const t = await tempRepo();
    dirs.push(t.dir);
    await addVersion(t.dir, 'mnist', '1');
    const { repo } = await open(t.dir);
    const stats = () =>
      (repo.registry.get('mnist').stats!() as { batching: { requests: number; batches: number } }).batching;
    const before = stats();
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        repo.registry.infer('mnist', undefined, digit(i), { sequence: { id: i, start: true } }),
      ),
    );
    expect(stats().requests - before.requests).toBe(8);
    expect(stats().batches - before.batches).toBe(8);
  });
});

describe('default placement', () => {
  it('"workers": 0 in config.json keeps the model in the main thread', async () => {
    const t = await tempRepo();
    dirs.push(t.dir);
    await addVersion(t.dir, 'mnist', '1');
    await writeConfig(t.dir, 'mnist', { workers: 0, batching: false });
    const repo = await loadRepository(t.dir, { warmup: false });
    try {
      expect(repo.versions()[0]!.backend).toBe('onnxruntime-node/cpu');
    } finally {
      await repo.close();
    }
  });

  it('with no config, an ONNX model runs where defaultServing() says, and answers right', async () => {
    const t = await tempRepo();
    dirs.push(t.dir);
    await addVersion(t.dir, 'mnist', '1');
    const repo = await loadRepository(t.dir, { warmup: false });
    try {
      const d = defaultServing();
      expect(repo.versions()[0]!.backend).toBe(
        d.workers > 0 ? 'worker-pool(onnxruntime-node/cpu)' : 'onnxruntime-node/cpu',
      );
      const stats = repo.registry.get('mnist').stats!() as {
        workers?: { threads: number; intraOpThreads: number };
      };
      if (d.workers > 0)
        expect(stats.workers).toMatchObject({ threads: d.workers, intraOpThreads: d.intraOpThreads });
      const out = await repo.registry.infer('mnist', undefined, digit(0));
      expect(argmax(out.logits!.data as Float32Array)).toBe(mnistHoldout().labels[0]);
    } finally {
      await repo.close();
    }
  });
});

describe('one validation per request', () => {
  it('a batched model is validated by the batcher alone: a bad request is INVALID_ARGUMENT, counted there', async () => {
    const t = await tempRepo();
    dirs.push(t.dir);
    await addVersion(t.dir, 'mnist', '1');
    const repo = await loadRepository(t.dir, { loaders: { onnx: onnxLoader() }, warmup: false });
    try {
      const invalid = () =>
        (repo.registry.get('mnist').stats!() as { batching: { rejected: { invalid: number } } }).batching
          .rejected.invalid;
      const bad = { image: { type: 'float32', dims: [1, 28, 28], data: new Float32Array(784) } } as const;
      const err = await repo.registry.infer('mnist', undefined, bad).then(
        () => undefined,
        (e: unknown) => e as { code?: string; message?: string },
      );
      expect(err?.code).toBe('INVALID_ARGUMENT');
      expect(err?.message).toMatch(/input "image"/);
      // Had validation() run first, the batcher would never have seen the request.
      expect(invalid()).toBe(1);
    } finally {
      await repo.close();
    }
  });
});

describe('a process given its share of the CPUs', () => {
  it('the cpus option decides the placement: 2 CPUs in the main thread, 4 in a worker thread', async () => {
    const t = await tempRepo();
    dirs.push(t.dir);
    await addVersion(t.dir, 'mnist', '1');
    const two = await loadRepository(t.dir, { warmup: false, cpus: 2 });
    try {
      expect(two.versions()[0]!.backend).toBe('onnxruntime-node/cpu');
    } finally {
      await two.close();
    }
    const four = await loadRepository(t.dir, { warmup: false, cpus: 4 });
    try {
      expect(four.versions()[0]!.backend).toBe('worker-pool(onnxruntime-node/cpu)');
      const stats = four.registry.get('mnist').stats!() as {
        workers: { threads: number; intraOpThreads: number };
      };
      expect(stats.workers).toMatchObject({ threads: 1, intraOpThreads: 3 });
      const out = await four.registry.infer('mnist', undefined, digit(1));
      expect(argmax(out.logits!.data as Float32Array)).toBe(mnistHoldout().labels[1]);
    } finally {
      await four.close();
    }
  });
});
