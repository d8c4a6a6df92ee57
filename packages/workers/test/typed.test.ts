import { batching } from '@mlserve/batching';
import { responseCache } from '@mlserve/cache';
import { type Model, pipeline, type Tensor, type Tensors, tensor, timeout, validation } from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { workerPool } from '../src/index.js';

const image = (i: number) => tensor('float32', mnistHoldout().image(i), [1, 1, 28, 28]);

describe('workerPool with a declared signature', () => {
  it('is typed, and stays typed through batching, the cache and core layers (real onnxruntime in workers)', async () => {
    const pool = await workerPool({
      backend: 'onnx',
      source: modelPath('mnist-cnn.onnx'),
      threads: 1,
      intraOpThreads: 1,
      signature: { inputs: { image: 'float32' }, outputs: { logits: 'float32' } },
    });
    expectTypeOf(pool).toEqualTypeOf<Model<{ image: 'float32' }, { logits: 'float32' }>>();
    const served = pipeline(
      pool,
      timeout({ defaultMs: 10_000 }),
      validation(),
      responseCache({ max: 100 }),
      batching({ maxBatchSize: 8 }),
    );
    expectTypeOf(served).toEqualTypeOf<Model<{ image: 'float32' }, { logits: 'float32' }>>();
    try {
      const out = await served.infer({ image: image(1) });
      expectTypeOf(out).toEqualTypeOf<{ logits: Tensor<'float32'> }>();
      expectTypeOf(out.logits.data).toEqualTypeOf<Float32Array>();
      expect(out.logits.data.indexOf(Math.max(...out.logits.data))).toBe(mnistHoldout().labels[1]);
      // @ts-expect-error a misspelt output fails to compile
      expect(out.logitz).toBeUndefined();
    } finally {
      await served.dispose();
    }
  });

  it('refuses a signature the model does not have (and disposes the pool it started)', async () => {
    await expect(
      workerPool({
        backend: 'onnx',
        source: modelPath('mnist-cnn.onnx'),
        threads: 1,
        intraOpThreads: 1,
        signature: { inputs: { image: 'float64' }, outputs: {} },
      }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'model "mnist-cnn" input "image" is float32, the signature says float64',
    });
  });

  it('without a signature the pool is the untyped Model, as before', async () => {
    const pool = await workerPool({
      backend: 'onnx',
      source: modelPath('mnist-cnn.onnx'),
      threads: 1,
      intraOpThreads: 1,
    });
    try {
      expectTypeOf(pool).toEqualTypeOf<Model>();
      const inputs: Tensors = { image: image(0) };
      expect((await pool.infer(inputs)).logits?.dims).toEqual([1, 10]);
    } finally {
      await pool.dispose();
    }
  });
});
