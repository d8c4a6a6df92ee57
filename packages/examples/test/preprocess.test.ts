import { loadOnnxModel } from '@mlserve/backend-onnx';
import type { Model } from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  argmax,
  type InkImage,
  inkBounds,
  inkFromRgba,
  SIZE,
  softmax,
  toMnist,
} from '../src/page/preprocess.js';

/** Held-out digit `i` drawn big and off-centre on a `size` x `size` canvas, as the page would read it. */
function onCanvas(i: number, { size = 300, scale = 8, left = 20, top = 90 } = {}): InkImage {
  const digit = mnistHoldout().image(i);
  const data = new Float32Array(size * size);
  for (let y = 0; y < SIZE * scale; y++) {
    for (let x = 0; x < SIZE * scale; x++) {
      data[(top + y) * size + left + x] = 255 * digit[Math.floor(y / scale) * SIZE + Math.floor(x / scale)]!;
    }
  }
  return { width: size, height: size, data };
}

function centreOfMass(pixels: Float32Array): [number, number] {
  let m = 0;
  let cx = 0;
  let cy = 0;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      const v = pixels[y * SIZE + x]!;
      m += v;
      cx += v * (x + 0.5);
      cy += v * (y + 0.5);
    }
  }
  return [cx / m, cy / m];
}

describe('toMnist (the pre-processing both paths share)', () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadOnnxModel(modelPath('mnist-cnn.onnx'), { intraOpNumThreads: 1 });
  });
  afterAll(() => model?.dispose());

  it('returns nothing for a blank drawing', () => {
    expect(toMnist({ width: 50, height: 50, data: new Float32Array(2500) })).toBeUndefined();
    expect(inkBounds({ width: 2, height: 2, data: [0, 0, 0, 0] })).toBeUndefined();
  });

  it('fits the ink into 20x20, centres it by mass and scales it to [0, 1]', () => {
    const pixels = toMnist(onCanvas(3))!;
    expect(pixels).toHaveLength(SIZE * SIZE);
    expect(Math.max(...pixels)).toBe(1);
    expect(Math.min(...pixels)).toBe(0);
    const [cx, cy] = centreOfMass(pixels);
    expect(Math.abs(cx - 14)).toBeLessThanOrEqual(0.5);
    expect(Math.abs(cy - 14)).toBeLessThanOrEqual(0.5);
    const box = inkBounds({ width: SIZE, height: SIZE, data: pixels })!;
    expect(Math.max(box.x1 - box.x0, box.y1 - box.y0)).toBe(20);
  });

  it('keeps the aspect ratio: a tall thin stroke stays thin', () => {
    const size = 200;
    const data = new Float32Array(size * size);
    for (let y = 20; y < 180; y++) for (let x = 150; x < 166; x++) data[y * size + x] = 255;
    const pixels = toMnist({ width: size, height: size, data })!;
    const box = inkBounds({ width: SIZE, height: SIZE, data: pixels })!;
    expect(box.y1 - box.y0).toBe(20);
    expect(box.x1 - box.x0).toBe(2);
    expect(box.x0 + (box.x1 - box.x0) / 2).toBe(14);
  });

  it('reads the ink from the alpha channel of canvas pixels', () => {
    const rgba = new Uint8ClampedArray([29, 35, 48, 255, 0, 0, 0, 0, 29, 35, 48, 128, 255, 255, 255, 0]);
    expect(Array.from(inkFromRgba(rgba, 2, 2).data)).toEqual([255, 0, 128, 0]);
  });

  it('gives the model what it knows: re-drawn held-out digits are still classified right', async () => {
    const { labels } = mnistHoldout();
    let right = 0;
    const n = 40;
    for (let i = 0; i < n; i++) {
      const pixels = toMnist(onCanvas(i, { left: 10 + (i % 5) * 10, top: 80 - (i % 7) * 10 }))!;
      const { logits } = await model.infer({
        image: { type: 'float32', dims: [1, 1, SIZE, SIZE], data: pixels },
      });
      if (argmax(logits!.data as Float32Array) === labels[i]) right++;
    }
    expect(right).toBeGreaterThanOrEqual(n - 2);
  });

  it('softmax and argmax', () => {
    const p = softmax([1, 3, 2]);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 10);
    expect(argmax(p)).toBe(1);
    expect(p[1]! / p[2]!).toBeCloseTo(Math.E, 10);
    expect(softmax([1000, 1000])).toEqual([0.5, 0.5]);
  });
});
