import { fromFunction } from '../src/function-model.js';
import type { Model, Tensors } from '../src/types.js';

/** A float32 [-1, n] identity-ish model for tests: y = x * factor, with a call log. */
export function scaleModel(
  options: {
    name?: string;
    factor?: number;
    delayMs?: number;
    width?: number;
    fail?: (x: Float32Array) => boolean;
  } = {},
): Model & { calls: Tensors[] } {
  const { name = 'scale', factor = 2, delayMs = 0, width = 4 } = options;
  const calls: Tensors[] = [];
  const model = fromFunction({
    name,
    inputs: [{ name: 'x', type: 'float32', dims: [-1, width] }],
    outputs: [
      { name: 'y', type: 'float32', dims: [-1, width] },
      { name: 'sum', type: 'float32', dims: [-1] },
    ],
    async infer(inputs) {
      calls.push(inputs);
      if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      const x = inputs.x!;
      const data = x.data as Float32Array;
      if (options.fail?.(data)) throw new Error('model failed on purpose');
      const rows = x.dims[0]!;
      const sums = new Float32Array(rows);
      for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) sums[r]! += data[r * width + c]!;
      return {
        y: { type: 'float32', dims: [...x.dims], data: data.map((v) => v * factor) },
        sum: { type: 'float32', dims: [rows], data: sums },
      };
    },
  });
  return Object.assign(model, { calls });
}
