import type { Tensors } from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import {
  columns,
  type Extractor,
  extractor,
  imageStats,
  predictedClass,
  topScore,
} from '../src/extractors.js';

/** What `each` emits, gathered into columns named like `extract`'s. */
function viaEach(ex: Extractor, inputs: Tensors, outputs?: Tensors): Record<string, (number | string)[]> {
  const out: Record<string, (number | string)[]> = {};
  ex.each!(inputs, outputs, (i, v) => {
    const name = ex.features[i]!.name;
    (out[name] ??= []).push(v);
  });
  return out;
}

function same(ex: Extractor, inputs: Tensors, outputs?: Tensors): void {
  const cols = ex.extract(inputs, outputs);
  const emitted = viaEach(ex, inputs, outputs);
  expect(Object.keys(emitted).sort()).toEqual(Object.keys(cols).sort());
  for (const [name, values] of Object.entries(cols)) {
    const got = emitted[name]!;
    expect(got.length, name).toBe(values.length);
    for (let i = 0; i < values.length; i++) {
      if (typeof values[i] === 'number') expect(got[i] as number, name).toBeCloseTo(values[i] as number, 12);
      else expect(got[i], name).toBe(values[i]);
    }
  }
}

const rand = (n: number, seed: number, zeros = 0.6): Float32Array => {
  let x = seed;
  return Float32Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    const u = x / 2147483648;
    return u < zeros ? 0 : u * 2 - 0.5;
  });
};

describe('the allocation-free each() path', () => {
  it('emits what extract() returns, for grey and colour images in both layouts', () => {
    same(imageStats('img'), { img: { type: 'float32', dims: [3, 1, 7, 5], data: rand(105, 1) } });
    // A negative threshold counts zero pixels as bright: the zero-skipping pass must not skip them.
    same(imageStats('img', { brightThreshold: -0.1 }), {
      img: { type: 'float32', dims: [2, 1, 4, 4], data: rand(32, 2) },
    });
    same(imageStats('img', { layout: 'nhwc' }), {
      img: { type: 'float32', dims: [2, 3, 4, 3], data: rand(72, 3) },
    });
    same(imageStats('img'), { img: { type: 'float32', dims: [2, 3, 4, 3], data: rand(72, 4) } });
  });

  it('gives exact grey statistics with zero pixels skipped', () => {
    const data = Float32Array.of(0, 0, 0.25, 0, 1, 0, -0.5, 0, 0);
    const out = viaEach(imageStats('g'), { g: { type: 'float32', dims: [1, 1, 3, 3], data } });
    const mean = 0.75 / 9;
    expect(out['g.mean']![0]).toBeCloseTo(mean, 12);
    expect(out['g.std']![0]).toBeCloseTo(Math.sqrt((0.0625 + 1 + 0.25) / 9 - mean * mean), 12);
    expect(out['g.bright']![0]).toBeCloseTo(1 / 9, 12);
    // Ink (positive pixels only): 0.25 at (2, 0), 1 at (1, 1).
    expect(out['g.centroidX']![0]).toBeCloseTo((0.25 * 2 + 1) / 1.25 / 2, 12);
    expect(out['g.centroidY']![0]).toBeCloseTo(1 / 1.25 / 2, 12);
  });

  it('emits what extract() returns for classes, top scores and columns', () => {
    const logits = { y: { type: 'float32' as const, dims: [3, 4], data: rand(12, 5, 0) } };
    same(predictedClass('y'), {}, logits);
    same(predictedClass('y', { labels: ['a', 'b', 'c', 'd'] }), {}, logits);
    same(topScore('y', { softmax: true }), {}, logits);
    same(topScore('y'), {}, logits);
    same(columns('x', ['a', 'b', 'c'], { categorical: ['b'] }), {
      x: { type: 'float32', dims: [4, 3], data: rand(12, 6, 0.3) },
    });
  });

  it('is kept by extractor() when given, and absent otherwise', () => {
    const features = [{ name: 'n', kind: 'numeric' as const }];
    expect(extractor({ features, extract: () => ({ n: [1] }) }).each).toBeUndefined();
    const ex = extractor({ features, extract: () => ({ n: [1] }), each: (_i, _o, emit) => emit(0, 1) });
    expect(viaEach(ex, {})).toEqual({ n: [1] });
  });

  it('rejects bad input with INVALID_ARGUMENT, as extract() does', () => {
    const emit = () => undefined;
    expect(() => imageStats('img').each!({}, undefined, emit)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() =>
      imageStats('img').each!(
        { img: { type: 'float32', dims: [1, 4], data: new Float32Array(4) } },
        undefined,
        emit,
      ),
    ).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => topScore('y').each!({}, {}, emit)).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});
