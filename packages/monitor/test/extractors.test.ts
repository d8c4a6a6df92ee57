import { describe, expect, it } from 'vitest';
import { columns, imageStats, predictedClass, topScore } from '../src/extractors.js';

describe('extractors', () => {
  it('summarises grey images: mean, std, bright share and where the ink is', () => {
    // 1 image 4x4: a bright 2x2 block in the bottom-right corner.
    const data = new Float32Array(16);
    for (const p of [10, 11, 14, 15]) data[p] = 1;
    const out = imageStats('img').extract({ img: { type: 'float32', dims: [1, 1, 4, 4], data } }, undefined);
    expect(out['img.mean']).toEqual([0.25]);
    expect(out['img.std']![0]).toBeCloseTo(Math.sqrt(0.25 - 0.0625), 12);
    expect(out['img.bright']).toEqual([0.25]);
    expect(out['img.centroidX']![0]).toBeCloseTo(2.5 / 3, 12);
    expect(out['img.centroidY']![0]).toBeCloseTo(2.5 / 3, 12);
  });

  it('gives colour images per-channel means in either layout', () => {
    // 2 images 1x2, channels (r, g, b): image 0 pure red, image 1 half blue on the right pixel.
    const nhwc = Float32Array.of(1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1);
    const a = imageStats('x', { layout: 'nhwc' }).extract(
      { x: { type: 'float32', dims: [2, 1, 2, 3], data: nhwc } },
      undefined,
    );
    const nchw = Float32Array.of(1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
    const b = imageStats('x').extract({ x: { type: 'float32', dims: [2, 3, 1, 2], data: nchw } }, undefined);
    for (const out of [a, b]) {
      expect(out['x.channel0']).toEqual([1, 0]);
      expect(out['x.channel2']).toEqual([0, 0.5]);
      expect(out['x.centroidX']).toEqual([0.5, 1]);
    }
  });

  it('reads columns, classes and top scores', () => {
    const cols = columns('f', ['a', 'b'], { categorical: ['b'] }).extract(
      { f: { type: 'float32', dims: [2, 2], data: Float32Array.of(1, 2, 3, 4) } },
      undefined,
    );
    expect(cols).toEqual({ a: [1, 3], b: ['2', '4'] });
    const logits = { y: { type: 'float32' as const, dims: [2, 3], data: Float32Array.of(0, 5, 1, 2, 0, 0) } };
    expect(predictedClass('y', { labels: ['cat', 'dog', 'eel'] }).extract({}, logits)).toEqual({
      'y.class': ['dog', 'cat'],
    });
    const top = topScore('y', { softmax: true }).extract({}, logits)['y.topScore'] as number[];
    expect(top[0]).toBeCloseTo(Math.exp(5) / (1 + Math.exp(5) + Math.exp(1)), 12);
    expect(() => predictedClass('z').extract({}, logits)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});
