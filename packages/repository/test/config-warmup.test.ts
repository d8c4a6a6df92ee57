import {
  fromFunction,
  isServeError,
  type Model,
  type ModelMetadata,
  type Tensors,
  wrap,
} from '@mlserve/core';
import { afterEach, describe, expect, it } from 'vitest';
import { parseModelConfig } from '../src/config.js';
import { loadRepository, zeroInputs } from '../src/index.js';
import { runWarmup, warmupBatchSizes } from '../src/warmup.js';
import { addVersion, tempRepo, writeConfig } from './helpers.js';
import { onnxLoader } from './loader.js';

function configError(raw: unknown): string {
  try {
    parseModelConfig(raw, 'models/m/config.json');
  } catch (err) {
    if (isServeError(err) && err.code === 'INVALID_ARGUMENT') return err.message;
    throw err;
  }
  throw new Error('expected the config to be rejected');
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe('config.json validation', () => {
  it('fills defaults for an empty config', () => {
    expect(parseModelConfig({}, 'c.json')).toMatchObject({
      versionPolicy: { latest: 1 },
      labels: {},
      warmup: { enabled: true, budgetMs: 10_000 },
      labelsFile: 'labels.txt',
      validation: { enabled: true },
    });
    expect(parseModelConfig({}, 'c.json').batching).toBeUndefined();
    expect(parseModelConfig({ cache: true }, 'c.json').cache).toEqual({ max: 10_000 });
    expect(parseModelConfig({ batching: { enabled: false } }, 'c.json').batching).toBeUndefined();
    expect(parseModelConfig({ workers: 2 }, 'c.json').workers).toEqual({ threads: 2 });
    // Saying nothing leaves batching and placement to the defaults; saying false or 0 turns them off.
    expect(parseModelConfig({}, 'c.json')).toMatchObject({ batchingByDefault: true, workersByDefault: true });
    const off = parseModelConfig({ batching: false, workers: 0 }, 'c.json');
    expect(off.batchingByDefault).toBeUndefined();
    expect(off.workersByDefault).toBeUndefined();
    expect(off.batching).toBeUndefined();
    expect(off.workers).toBeUndefined();
  });

  it('names the file and the field in every message', () => {
    expect(configError([])).toBe('models/m/config.json: the config must be a JSON object');
    expect(configError({ batchng: true })).toMatch(/^models\/m\/config.json: "batchng" is not a known field/);
    expect(configError({ backend: 'torch' })).toBe(
      'models/m/config.json: "backend" must be "onnx" or "tfjs"',
    );
    expect(configError({ batching: { maxBatchSize: 0 } })).toBe(
      'models/m/config.json: "batching.maxBatchSize" must be a positive integer',
    );
    expect(configError({ batching: { preferredBatchSizes: [4, 'x'] } })).toBe(
      'models/m/config.json: "batching.preferredBatchSizes[1]" must be a positive integer',
    );
    expect(configError({ versionPolicy: { newest: 1 } })).toMatch(/"versionPolicy" must be/);
    expect(configError({ versionPolicy: { specific: ['1', '../2'] } })).toMatch(
      /"versionPolicy.specific\[1\]" must be a version number/,
    );
    expect(configError({ labels: { stable: 'latest' } })).toMatch(/"labels.stable" must be a version number/);
    expect(configError({ traffic: { '1': 100 } })).toMatch(
      /"traffic" must split between at least two versions/,
    );
    expect(configError({ traffic: { '1': -1, '2': 1 } })).toMatch(
      /"traffic.1" must be a non-negative weight/,
    );
    expect(configError({ modelFile: '../../etc/passwd' })).toMatch(/"modelFile" must be a plain file name/);
    expect(configError({ labelsFile: '/etc/passwd' })).toMatch(/"labelsFile" must be a plain file name/);
    expect(configError({ workers: { threads: 2, thread: 1 } })).toMatch(
      /"workers.thread" is not a known field/,
    );
    expect(configError({ warmup: { budget: 1 } })).toMatch(/"warmup.budget" is not a known field/);
    expect(configError({ warmup: { samples: [{ inputs: { x: { dims: [2], data: [1] } } }] } })).toMatch(
      /"warmup.samples\[0\].inputs.x.data" must be an array of 2 values/,
    );
    expect(configError({ padValues: { mask: 'zero' } })).toMatch(/"padValues.mask" must be a finite number/);
  });
});

const meta = (maxBatchSize: number, batched = true): ModelMetadata => ({
  name: 'm',
  version: '1',
  platform: 'x',
  inputs: [{ name: 'x', type: 'float32', dims: [batched ? -1 : 3, 4], batched }],
  outputs: [{ name: 'y', type: 'float32', dims: [-1], batched }],
  maxBatchSize,
  concurrency: 1,
});

describe('warmup', () => {
  it('picks 1, powers of two, preferred sizes and the maximum', () => {
    expect(warmupBatchSizes(meta(1000), {}, { maxBatchSize: 24, preferredBatchSizes: [6] })).toEqual([
      1, 2, 4, 6, 8, 16, 24,
    ]);
    expect(warmupBatchSizes(meta(1000), {})).toEqual([1, 2, 4, 8, 16, 32]);
    expect(warmupBatchSizes(meta(4), { maxBatchSize: 64 })).toEqual([1, 2, 4]);
    expect(warmupBatchSizes(meta(1000), { batchSizes: [3, 1, 3] })).toEqual([1, 3]);
    expect(warmupBatchSizes(meta(0, false), {})).toEqual([0]);
  });

  it('generates zeros of the right type and shape (dynamic non-batch dims become 1)', () => {
    const t = zeroInputs(
      {
        ...meta(8),
        inputs: [
          { name: 'ids', type: 'int64', dims: [-1, -1], batched: true },
          { name: 's', type: 'string', dims: [-1], batched: true },
        ],
      },
      4,
    );
    expect(t.ids).toEqual({ type: 'int64', dims: [4, 1], data: new BigInt64Array(4) });
    expect(t.s).toEqual({ type: 'string', dims: [4], data: ['', '', '', ''] });
  });

  it('runs each size on every worker, stops at the budget, and fails on a model that cannot run', async () => {
    const calls: number[] = [];
    const model = (fail = false, ms = 0): Model =>
      fromFunction({
        name: 'm',
        inputs: [{ name: 'x', type: 'float32', dims: [-1, 4] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1, 4] }],
        concurrency: 2,
        infer: async ({ x }) => {
          calls.push(x!.dims[0]!);
          if (ms) await new Promise((r) => setTimeout(r, ms));
          if (fail) throw new Error('kaboom');
          return { y: x! } as Tensors;
        },
      });
    const report = await runWarmup(model(), { enabled: true, budgetMs: 10_000, maxBatchSize: 8 });
    expect(calls).toEqual([1, 1, 2, 2, 4, 4, 8, 8]);
    expect(report).toMatchObject({ requests: 8, batchSizes: [1, 2, 4, 8], truncated: false });
    calls.length = 0;
    const short = await runWarmup(model(false, 30), { enabled: true, budgetMs: 10, maxBatchSize: 8 });
    expect(short.truncated).toBe(true);
    expect(short.batchSizes).toEqual([1]);
    await expect(runWarmup(model(true), { enabled: true, budgetMs: 1000 })).rejects.toMatchObject({
      message: expect.stringContaining('warmup failed at batch size 1: kaboom'),
    });
  });

  it('warms a real model before it turns ready, with config samples', async () => {
    const t = await tempRepo();
    cleanups.push(t.cleanup);
    await addVersion(t.dir, 'mlp', '1', 'mlp.onnx');
    // batching: false, so the calls seen are warmup's alone (no default row-independence check).
    await writeConfig(t.dir, 'mlp', {
      batching: false,
      warmup: { samples: [{ inputs: { features: { dims: [3, 16], fill: 0.5 } } }] },
    });
    const seen: number[][] = [];
    const onnx = onnxLoader();
    const repo = await loadRepository(t.dir, {
      loaders: {
        onnx: async (source, options) => {
          const m = await onnx(source, options);
          return wrap(m, {
            infer: (inputs, o) => {
              seen.push([...(inputs.features!.data as Float32Array).slice(0, 1), inputs.features!.dims[0]!]);
              return m.infer(inputs, o);
            },
          });
        },
      },
    });
    expect(seen[0]).toEqual([0.5, 3]);
    expect(seen.slice(1)).toEqual([1, 2, 4, 8, 16, 32].map((n) => [0, n]));
    expect(repo.registry.isReady('mlp')).toBe(true);
    await repo.close();
  });
});
