import type { Tensor, Tensors } from '@mlserve/core';
import * as tf from '@tensorflow/tfjs';
import { expect, test } from 'vitest';
import { loadTfjsModel } from '../src/index.js';
import { artifactsOf, matmulArtifacts, WHERE_GRAPH, writeModelDir } from './helpers.js';

const f32 = (dims: number[], values: number[]): Tensor => ({
  type: 'float32',
  dims,
  data: new Float32Array(values),
});

test('1,000 inferences, a third of them failing, leave tf.memory().numTensors where it started', async () => {
  await tf.setBackend('wasm').catch(() => tf.setBackend('cpu'));
  const before = tf.memory().numTensors;

  const d = tf.sequential({ layers: [tf.layers.dense({ inputShape: [3], units: 2, name: 'y' })] });
  const layers = await loadTfjsModel(await artifactsOf(d, tf), { backend: 'wasm' });
  d.dispose();
  const graph = await loadTfjsModel(matmulArtifacts(), { backend: 'wasm' });
  const dynamic = await loadTfjsModel(writeModelDir(WHERE_GRAPH), { backend: 'cpu' });
  const layersIn = layers.metadata().inputs[0]?.name as string;

  const cases: [string, () => Promise<Tensors>][] = [
    ['ok', () => layers.infer({ [layersIn]: f32([2, 3], [1, 2, 3, 4, 5, 6]) })],
    ['ok', () => graph.infer({ x: f32([1, 3], [1, 1, 1]) })],
    ['ok', () => dynamic.infer({ x: f32([3], [1, 0, 2]) })],
    ['ok', () => dynamic.infer({ x: f32([3], [1, 0, 2]) }, { outputs: ['nonzero'] })],
    // Fails inside tfjs after the input tensors exist (MatMul shape mismatch).
    ['INVALID_ARGUMENT', () => graph.infer({ x: f32([1, 2], [1, 1]) })],
    // Fails converting the second input value (after the first inputs may have been created).
    [
      'INVALID_ARGUMENT',
      () =>
        layers.infer({
          [layersIn]: { type: 'float64', dims: [1, 3], data: new Float64Array([1, 2, 1e300]) },
        }),
    ],
    ['INVALID_ARGUMENT', () => layers.infer({ [layersIn]: f32([1, 3], [1, 2, 3]) }, { outputs: ['nope'] })],
    ['INVALID_ARGUMENT', () => dynamic.infer({ x: f32([2, 2], [1, 2, 3, 4]) })],
    [
      'CANCELLED',
      () => layers.infer({ [layersIn]: f32([1, 3], [1, 2, 3]) }, { signal: AbortSignal.abort() }),
    ],
  ];
  const seen: Record<string, number> = {};
  const afterLoad = tf.memory().numTensors;
  for (let i = 0; i < 1000; i++) {
    const [expected, run] = cases[i % cases.length] as [string, () => Promise<Tensors>];
    const code = await run().then(
      () => 'ok',
      (err: { code?: string }) => err.code ?? 'no code',
    );
    expect(code).toBe(expected);
    seen[code] = (seen[code] ?? 0) + 1;
  }
  expect(seen.ok).toBeGreaterThan(400);
  expect((seen.INVALID_ARGUMENT ?? 0) + (seen.CANCELLED ?? 0)).toBeGreaterThan(400);
  // Only the models' weights are alive between calls...
  expect(tf.memory().numTensors).toBe(afterLoad);
  await Promise.all([layers.dispose(), graph.dispose(), dynamic.dispose()]);
  // ...and disposing the models frees those too, on every backend they touched.
  expect(tf.memory().numTensors).toBe(before);
  await tf.setBackend('cpu');
  expect(tf.memory().numTensors).toBe(before);
});
