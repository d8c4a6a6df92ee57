import { fromFunction } from '@mlserve/core';

/** A one-input model for the feedback tests: `x` in, two scores `[x, 1 - x]` out (class 0 when x > 0.5). */
export const scoresModel = fromFunction({
  name: 'tab',
  inputs: [{ name: 'x', type: 'float32', dims: [-1, 1] }],
  outputs: [{ name: 'scores', type: 'float32', dims: [-1, 2] }],
  infer: ({ x }) => {
    const v = (x!.data as Float32Array)[0]!;
    return { scores: { type: 'float32', dims: [1, 2], data: Float32Array.of(v, 1 - v) } };
  },
});

/** The model's input for one value. */
export const x = (v: number) => ({ x: { type: 'float32' as const, dims: [1, 1], data: Float32Array.of(v) } });
