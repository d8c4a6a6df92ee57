import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import { loadTfjsModel } from '@mlserve/backend-tfjs';
import { type Model, type ServeError, tensorsEqual } from '@mlserve/core';
import { mnistHoldout, modelPath, rejection } from '@mlserve/test-utils';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerPool } from '../src/index.js';
import { FAULTY, info, ORT_LOADER, spin, x } from './helpers.js';

describe('workerPool with a loader module (onnxruntime-node)', () => {
  let pool: Model;
  let session: ort.InferenceSession;
  beforeAll(async () => {
    pool = await workerPool({
      backend: { module: ORT_LOADER, export: 'loadOrt' },
      source: modelPath('mnist-cnn.onnx'),
      options: { name: 'mnist' },
      threads: 2,
      intraOpThreads: 1,
    });
    session = await ort.InferenceSession.create(modelPath('mnist-cnn.onnx'), { intraOpNumThreads: 1 });
  });
  afterAll(async () => {
    await pool.dispose();
    await session.release();
  });

  it('gives the same outputs as the model on the main thread', async () => {
    const digits = mnistHoldout();
    const results = await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const inThread = await session.run({
          image: new ort.Tensor('float32', digits.image(i), [1, 1, 28, 28]),
        });
        const pooled = await pool.infer({
          image: { type: 'float32', dims: [1, 1, 28, 28], data: digits.image(i) },
        });
        return { inThread: inThread.logits!, pooled: pooled.logits! };
      }),
    );
    for (const { inThread, pooled } of results) {
      expect(
        tensorsEqual(pooled, {
          type: 'float32',
          dims: [...inThread.dims],
          data: inThread.data as Float32Array,
        }),
      ).toBe(true);
    }
  });

  it('advertises its threads as its concurrency and names the inner backend', () => {
    const meta = pool.metadata();
    expect(meta.name).toBe('mnist');
    expect(meta.concurrency).toBe(2);
    expect(meta.backend).toBe('worker-pool(onnxruntime-node/cpu)');
    expect(meta.inputs.map((i) => [i.name, i.type, i.dims])).toEqual([['image', 'float32', [-1, 1, 28, 28]]]);
  });

  it('fills the context: worker, compute time, backend', async () => {
    const context: Record<string, unknown> = {};
    await pool.infer(
      { image: { type: 'float32', dims: [1, 1, 28, 28], data: mnistHoldout().image(0) } },
      { context },
    );
    expect(typeof context.worker).toBe('number');
    expect(context.computeMs).toBeGreaterThan(0);
    expect(context.backend).toBe('worker-pool(onnxruntime-node/cpu)');
    expect(context.queueMs).toBeGreaterThanOrEqual(0);
  });
});

describe('workerPool failures', () => {
  let pool: Model;
  beforeAll(async () => {
    pool = await workerPool({ backend: { module: FAULTY }, source: 'unused', threads: 2, intraOpThreads: 1 });
  });
  afterAll(() => pool.dispose());

  it('runs a request in a worker thread, with outputs moved back whole', async () => {
    const out = await pool.infer(x(1, 2, 3, 4));
    expect(Array.from(out.y!.data as Float32Array)).toEqual([2, 4, 6, 8]);
    expect(info(out).threadId).toBeGreaterThan(0);
  });

  it("warmup() runs the model's warmup once in every thread", async () => {
    await pool.warmup!();
    const contexts = [{}, {}] as Record<string, unknown>[];
    await Promise.all(contexts.map((context) => pool.infer(spin(80), { context })));
    expect(new Set(contexts.map((c) => c.worker)).size).toBe(2);
    expect(contexts.map((c) => c.warmups)).toEqual([1, 1]);
    expect(contexts.map((c) => c.seenBy)).toEqual(contexts.map((c) => c.worker));
  });

  it('copies an output that is a view into a larger buffer', async () => {
    const out = await pool.infer(x(-5, 1, 2, 3));
    const y = out.y!.data as Float32Array;
    expect(Array.from(y)).toEqual([-10, 2, 4, 6]);
    expect(y.byteLength).toBe(y.buffer.byteLength);
  });

  it('a plain error thrown by the model fails only its own request, as INTERNAL', async () => {
    const [bad, good] = await Promise.allSettled([pool.infer(x(-1)), pool.infer(x(5))]);
    expect(bad.status).toBe('rejected');
    const err = (bad as PromiseRejectedResult).reason as ServeError;
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain('failed on purpose');
    expect(good.status).toBe('fulfilled');
  });

  it("keeps a ServeError's code, status and details across the thread boundary", async () => {
    const err = await rejection(pool.infer(x(-2)));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.status).toBe(400);
    expect(err.message).toBe('bad pixel');
    expect(err.details).toEqual({ pixel: 3 });
  });

  it('rejects inputs that are not tensors with INVALID_ARGUMENT, before they reach a worker', async () => {
    expect(
      (await rejection(pool.infer({ x: { type: 'float32', dims: [1, 4], data: [1] } as never }))).code,
    ).toBe('INVALID_ARGUMENT');
    expect((await rejection(pool.infer(null as never))).code).toBe('INVALID_ARGUMENT');
    expect((await pool.infer(x(1))).y!.dims).toEqual([1, 4]);
  });

  it('an error from the worker names the output checks of the model (unknown output)', async () => {
    const err = await rejection(pool.infer(x(1), { outputs: ['nope'] }));
    expect(err.code).toBe('INVALID_ARGUMENT');
    const only = await pool.infer(x(1), { outputs: ['y'] });
    expect(Object.keys(only)).toEqual(['y']);
  });
});

describe('workerPool heap exhaustion', () => {
  it('fails the request with UNAVAILABLE, replaces the worker and goes on', async () => {
    const pool = await workerPool({
      backend: { module: FAULTY },
      source: 'unused',
      threads: 1,
      intraOpThreads: 1,
      resourceLimits: { maxOldGenerationSizeMb: 32, maxYoungGenerationSizeMb: 8 },
    });
    try {
      const before = info(await pool.infer(x(1)));
      const err = await rejection(pool.infer(x(-3)));
      expect(err.code).toBe('UNAVAILABLE');
      expect(err.message).toContain('out of memory');
      const after = info(await pool.infer(x(1)));
      expect(after.threadId).not.toBe(before.threadId);
      expect(after.calls).toBe(1);
      expect((pool.stats!().workers as { workerDeaths: number }).workerDeaths).toBe(1);
    } finally {
      await pool.dispose();
    }
  });
});

describe('workerPool loading', () => {
  it("loads the model in every thread before it resolves, and keeps a loader's error code", async () => {
    const err = await rejection(
      workerPool({ backend: { module: FAULTY }, source: 'unused', options: { failLoad: true }, threads: 2 }),
    );
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toContain('told to fail');
  });

  it.each(['thread', 'process'] as const)(
    'gives up on a %s that never finishes loading (loadTimeoutMs)',
    async (isolation) => {
      const t0 = performance.now();
      const err = await rejection(
        workerPool({
          backend: { module: FAULTY },
          source: 'unused',
          options: { hangLoad: true },
          threads: 2,
          loadTimeoutMs: 300,
          isolation,
        }),
      );
      expect(err.code).toBe('UNAVAILABLE');
      expect(err.message).toContain('within 300 ms');
      expect(performance.now() - t0).toBeLessThan(3_000);
    },
  );

  it('threads above minThreads exit after idleTimeoutMs; a new one loads the model before it serves', async () => {
    const pool = await workerPool({
      backend: { module: FAULTY },
      source: 'unused',
      threads: 2,
      minThreads: 1,
      idleTimeoutMs: 100,
    });
    try {
      const live = () => (pool.stats!().workers as { liveWorkers: number }).liveWorkers;
      expect(live()).toBe(2);
      const t0 = Date.now();
      while (live() > 1 && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 50));
      expect(live()).toBe(1);
      const runs = (await Promise.all([pool.infer(spin(150)), pool.infer(spin(150))])).map(info);
      expect(new Set(runs.map((r) => r.threadId)).size).toBe(2);
    } finally {
      await pool.dispose();
    }
  });

  it('names a loader module that does not exist', async () => {
    const err = await rejection(
      workerPool({ backend: { module: '/nonexistent/loader.mjs' }, source: 'x', threads: 1 }),
    );
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toContain('loader.mjs');
  });

  it('names a missing export', async () => {
    const err = await rejection(
      workerPool({ backend: { module: FAULTY, export: 'nope' }, source: 'x', threads: 1 }),
    );
    expect(err.message).toContain('no function export "nope"');
  });

  it('validates its options eagerly', async () => {
    await expect(workerPool({ backend: 'pytorch' as never, source: 'x' })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(workerPool({ backend: 'onnx', source: 42 as never })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(
      workerPool({ backend: { module: FAULTY }, source: 'x', options: { f: () => 1 } as never }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(workerPool({ backend: { module: FAULTY }, source: 'x', threads: 0 })).rejects.toThrow(
      'options.threads must be a positive integer',
    );
    await expect(workerPool({ backend: { module: FAULTY }, source: 'x', maxQueue: -1 })).rejects.toThrow(
      'options.maxQueue must be a non-negative integer',
    );
  });
});

describe("workerPool with backend 'onnx' (@mlserve/backend-onnx)", () => {
  it('matches loadOnnxModel on the main thread, and reports the inner backend', async () => {
    const source = modelPath('mnist-cnn.onnx');
    const [pool, local] = await Promise.all([
      workerPool({ backend: 'onnx', source, threads: 2, intraOpThreads: 1 }),
      loadOnnxModel(source, { intraOpNumThreads: 1 }),
    ]);
    try {
      const digits = mnistHoldout();
      const batch = {
        image: { type: 'float32' as const, dims: [8, 1, 28, 28], data: digits.images.slice(0, 8 * 784) },
      };
      const [a, b] = await Promise.all([local.infer(batch), pool.infer(structuredClone(batch))]);
      expect(tensorsEqual(a.logits!, b.logits!)).toBe(true);
      const meta = pool.metadata();
      expect(meta.backend).toBe(`worker-pool(${local.metadata().backend})`);
      expect(meta.platform).toBe('onnxruntime_onnx');
      expect(meta.concurrency).toBe(2);
    } finally {
      await Promise.all([pool.dispose(), local.dispose()]);
    }
  });
});

describe("workerPool with backend 'tfjs' (@mlserve/backend-tfjs)", () => {
  it('matches loadTfjsModel on the main thread', async () => {
    // A graph model without weights: y = relu(x), x float32[-1, 4].
    const dir = mkdtempSync(join(tmpdir(), 'workers-tfjs-'));
    writeFileSync(
      join(dir, 'model.json'),
      JSON.stringify({
        format: 'graph-model',
        modelTopology: {
          node: [
            {
              name: 'x',
              op: 'Placeholder',
              attr: {
                shape: { shape: { dim: [{ size: '-1' }, { size: '4' }] } },
                dtype: { type: 'DT_FLOAT' },
              },
            },
            { name: 'y', op: 'Relu', input: ['x'], attr: { T: { type: 'DT_FLOAT' } } },
          ],
          versions: { producer: 1 },
        },
        weightsManifest: [],
      }),
    );
    const source = join(dir, 'model.json');
    const [pool, local] = await Promise.all([
      workerPool({ backend: 'tfjs', source, options: { backend: 'cpu' }, threads: 1 }),
      loadTfjsModel(source, { backend: 'cpu' }),
    ]);
    try {
      const inputs = () => ({
        x: { type: 'float32' as const, dims: [2, 4], data: Float32Array.of(-1, 2, -3, 4, 5, -6, 7, -8) },
      });
      const [a, b] = await Promise.all([local.infer(inputs()), pool.infer(inputs())]);
      expect(Object.keys(b)).toEqual(Object.keys(a));
      for (const k of Object.keys(a)) expect(tensorsEqual(a[k]!, b[k]!)).toBe(true);
      expect(pool.metadata().backend).toBe(`worker-pool(${local.metadata().backend})`);
    } finally {
      await Promise.all([pool.dispose(), local.dispose()]);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
