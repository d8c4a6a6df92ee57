import type { Model, Tensors } from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { batching } from '../src/index.js';
import { loadOrt } from './ort-model.js';

/** A seeded generator, so a failure reproduces. */
function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

async function oneByOne(model: Model, requests: Tensors[]): Promise<Tensors[]> {
  const out: Tensors[] = [];
  for (const r of requests) out.push(await model.infer(r));
  return out;
}

describe('exactness on real onnxruntime', () => {
  let mlp: Model;
  let cnn: Model;
  let text: Model;
  beforeAll(async () => {
    mlp = await loadOrt(
      modelPath('mlp.onnx'),
      [{ name: 'features', type: 'float32', dims: [-1, 16] }],
      [{ name: 'scores', type: 'float32', dims: [-1, 2] }],
    );
    cnn = await loadOrt(
      modelPath('mnist-cnn.onnx'),
      [{ name: 'image', type: 'float32', dims: [-1, 1, 28, 28] }],
      [{ name: 'logits', type: 'float32', dims: [-1, 10] }],
    );
    text = await loadOrt(
      modelPath('tiny-text.onnx'),
      [
        { name: 'input_ids', type: 'int64', dims: [-1, -1], dimNames: ['batch', 'sequence'], padValue: 0n },
        {
          name: 'attention_mask',
          type: 'int64',
          dims: [-1, -1],
          dimNames: ['batch', 'sequence'],
          padValue: 0n,
        },
      ],
      [{ name: 'logits', type: 'float32', dims: [-1, 3] }],
    );
  });
  afterAll(async () => {
    await Promise.all([mlp.dispose(), cnn.dispose(), text.dispose()]);
  });

  test('mlp: 200 concurrent requests (1-3 rows each) equal one-by-one results element for element', async () => {
    const rand = rng(1);
    const requests: Tensors[] = Array.from({ length: 200 }, () => {
      const rows = 1 + Math.floor(rand() * 3);
      return {
        features: {
          type: 'float32',
          dims: [rows, 16],
          data: Float32Array.from({ length: rows * 16 }, () => rand() * 4 - 2),
        },
      };
    });
    const expected = await oneByOne(mlp, requests);
    const served = batching({ maxBatchSize: 64, maxDelayMs: 0 })({ ...mlp, dispose: async () => {} });
    const got = await Promise.all(requests.map((r) => served.infer(r)));
    const stats = served.stats!().batching as { averageBatchSize: number };
    expect(stats.averageBatchSize).toBeGreaterThan(10);
    for (let i = 0; i < requests.length; i++) {
      expect(got[i]!.scores!.dims).toEqual(expected[i]!.scores!.dims);
      expect(Array.from(got[i]!.scores!.data as Float32Array)).toEqual(
        Array.from(expected[i]!.scores!.data as Float32Array),
      );
    }
  });

  test('mnist-cnn: 64 held-out digits batched equal one-by-one results element for element', async () => {
    const digits = mnistHoldout();
    const requests: Tensors[] = Array.from({ length: 64 }, (_, i) => ({
      image: { type: 'float32', dims: [1, 1, 28, 28], data: digits.image(i) },
    }));
    const expected = await oneByOne(cnn, requests);
    const served = batching({ maxBatchSize: 32, maxDelayMs: 0 })({ ...cnn, dispose: async () => {} });
    const got = await Promise.all(requests.map((r) => served.infer(r)));
    expect((served.stats!().batching as { averageBatchSize: number }).averageBatchSize).toBeGreaterThan(4);
    let correct = 0;
    for (let i = 0; i < requests.length; i++) {
      const g = got[i]!.logits!.data as Float32Array;
      expect(Array.from(g)).toEqual(Array.from(expected[i]!.logits!.data as Float32Array));
      if (g.indexOf(Math.max(...g)) === digits.labels[i]) correct++;
    }
    expect(correct).toBeGreaterThan(55); // a real trained model, really run
  });

  test('tiny-text: variable-length requests padded into one batch are within 1e-6 of unbatched', async () => {
    const rand = rng(7);
    const requests: Tensors[] = Array.from({ length: 40 }, () => {
      const len = 3 + Math.floor(rand() * 14);
      return {
        input_ids: {
          type: 'int64',
          dims: [1, len],
          data: BigInt64Array.from({ length: len }, () => BigInt(1 + Math.floor(rand() * 900))),
        },
        attention_mask: { type: 'int64', dims: [1, len], data: new BigInt64Array(len).fill(1n) },
      };
    });
    const expected = await oneByOne(text, requests);
    let paddedBatches = 0;
    const served = batching({ maxBatchSize: 16, maxDelayMs: 0, onBatch: (e) => e.padded && paddedBatches++ })(
      {
        ...text,
        dispose: async () => {},
      },
    );
    const got = await Promise.all(requests.map((r) => served.infer(r)));
    expect(paddedBatches).toBeGreaterThan(0);
    let worst = 0;
    for (let i = 0; i < requests.length; i++) {
      const g = got[i]!.logits!.data as Float32Array;
      const e = expected[i]!.logits!.data as Float32Array;
      expect(got[i]!.logits!.dims).toEqual([1, 3]);
      for (let j = 0; j < 3; j++) worst = Math.max(worst, Math.abs(g[j]! - e[j]!));
    }
    expect(worst).toBeLessThanOrEqual(1e-6);
  });
});

describe('over @mlserve/backend-onnx', () => {
  test('tiny-text with pad values from the backend: padded batches within 1e-6, mnist exact', async () => {
    const { loadOnnxModel } = await import('@mlserve/backend-onnx');
    const text = await loadOnnxModel(modelPath('tiny-text.onnx'), {
      intraOpNumThreads: 1,
      padValues: { input_ids: 0n, attention_mask: 0n },
    });
    const rand = rng(11);
    const requests: Tensors[] = Array.from({ length: 24 }, () => {
      const len = 2 + Math.floor(rand() * 10);
      return {
        input_ids: {
          type: 'int64',
          dims: [1, len],
          data: BigInt64Array.from({ length: len }, () => BigInt(1 + Math.floor(rand() * 900))),
        },
        attention_mask: { type: 'int64', dims: [1, len], data: new BigInt64Array(len).fill(1n) },
      };
    });
    const expected = await oneByOne(text, requests);
    let padded = 0;
    const served = batching({ maxDelayMs: 0, onBatch: (e) => e.padded && padded++ })(text);
    const got = await Promise.all(requests.map((r) => served.infer(r)));
    expect(padded).toBeGreaterThan(0);
    for (let i = 0; i < requests.length; i++) {
      const g = got[i]!.logits!.data as Float32Array;
      const e = expected[i]!.logits!.data as Float32Array;
      for (let j = 0; j < 3; j++) expect(Math.abs(g[j]! - e[j]!)).toBeLessThanOrEqual(1e-6);
    }
    await served.dispose();

    const cnn = await loadOnnxModel(modelPath('mnist-cnn.onnx'), { intraOpNumThreads: 1 });
    const digits = mnistHoldout();
    const images: Tensors[] = Array.from({ length: 32 }, (_, i) => ({
      image: { type: 'float32', dims: [1, 1, 28, 28], data: digits.image(100 + i) },
    }));
    const one = await oneByOne(cnn, images);
    const batched = batching({ maxBatchSize: 16, maxDelayMs: 0 })(cnn);
    const many = await Promise.all(images.map((r) => batched.infer(r)));
    for (let i = 0; i < images.length; i++) {
      expect(Array.from(many[i]!.logits!.data as Float32Array)).toEqual(
        Array.from(one[i]!.logits!.data as Float32Array),
      );
    }
    expect((batched.stats!().batching as { averageBatchSize: number }).averageBatchSize).toBeGreaterThan(4);
    await batched.dispose();
  });
});
