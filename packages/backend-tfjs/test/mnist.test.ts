import { pipeline, validation } from '@mlserve/core';
import { mnistHoldout } from '@mlserve/test-utils';
import { expect, test } from 'vitest';
import { loadTfjsModel } from '../src/index.js';
import { MNIST_DIR } from './helpers.js';

function argmax(row: Float32Array): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if ((row[i] as number) > (row[best] as number)) best = i;
  return best;
}

test('the committed MNIST model reaches 95% on the 200 held-out digits through loadTfjsModel', async () => {
  const holdout = mnistHoldout();
  const model = await loadTfjsModel(MNIST_DIR, { name: 'mnist', backend: 'wasm' });
  const meta = model.metadata();
  expect(meta.platform).toBe('tfjs_layers_model');
  expect(meta.backend).toBe('tfjs/wasm');
  expect(meta.inputs).toEqual([{ name: 'image', type: 'float32', dims: [-1, 1, 28, 28], batched: true }]);
  expect(meta.outputs).toEqual([{ name: 'probabilities', type: 'float32', dims: [-1, 10], batched: true }]);

  // Through core's validation, all 200 digits in one call.
  const served = pipeline(model, validation());
  const out = await served.infer({
    image: { type: 'float32', dims: [holdout.count, 1, 28, 28], data: holdout.images },
  });
  const probs = out.probabilities?.data as Float32Array;
  expect(out.probabilities?.dims).toEqual([200, 10]);
  let correct = 0;
  for (let i = 0; i < holdout.count; i++) {
    if (argmax(probs.subarray(i * 10, i * 10 + 10)) === holdout.labels[i]) correct++;
  }
  expect(correct / holdout.count).toBeGreaterThanOrEqual(0.95);

  // One digit at a time on the cpu backend gives the same answers.
  const cpu = await loadTfjsModel(MNIST_DIR, { backend: 'cpu' });
  for (let i = 0; i < 10; i++) {
    const r = await cpu.infer({ image: { type: 'float32', dims: [1, 1, 28, 28], data: holdout.image(i) } });
    expect(argmax(r.probabilities?.data as Float32Array)).toBe(argmax(probs.subarray(i * 10, i * 10 + 10)));
  }
  await Promise.all([model.dispose(), cpu.dispose()]);
});
