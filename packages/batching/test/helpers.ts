import { fromFunction, type InferOptions, type Model, type Tensor, type Tensors } from '@mlserve/core';

export interface Call {
  rows: number;
  inputs: Tensors;
  options: InferOptions;
}

export interface Probe {
  model: Model;
  calls: Call[];
  /** Calls running now, and the most seen at once. */
  running: () => number;
  maxRunning: () => number;
  /** Holds every call until `open()`. */
  hold: () => void;
  open: () => void;
  disposed: () => boolean;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** x float32 [-1, 4] -> y = 2x, z = x + 1 (both [-1, 4]); records calls; can be held busy. */
export function probe(
  opts: { concurrency?: number; maxBatchSize?: number; delayMs?: number; fail?: (x: Tensor) => boolean } = {},
): Probe {
  const calls: Call[] = [];
  let gate: Promise<void> | undefined;
  let release: (() => void) | undefined;
  let running = 0;
  let maxRunning = 0;
  let disposed = false;
  const model = fromFunction({
    name: 'probe',
    inputs: [{ name: 'x', type: 'float32', dims: [-1, 4] }],
    outputs: [
      { name: 'y', type: 'float32', dims: [-1, 4] },
      { name: 'z', type: 'float32', dims: [-1, 4] },
    ],
    concurrency: opts.concurrency ?? 1,
    ...(opts.maxBatchSize !== undefined ? { maxBatchSize: opts.maxBatchSize } : {}),
    infer: async (inputs, options) => {
      const x = inputs.x!;
      calls.push({ rows: x.dims[0]!, inputs, options });
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        if (gate) await gate;
        if (opts.delayMs) await sleep(opts.delayMs);
        if (opts.fail?.(x)) throw new Error('model exploded');
        const d = x.data as Float32Array;
        return {
          y: { type: 'float32', dims: x.dims, data: d.map((v) => v * 2) },
          z: { type: 'float32', dims: x.dims, data: d.map((v) => v + 1) },
        };
      } finally {
        running--;
      }
    },
    dispose: () => {
      disposed = true;
    },
  });
  return {
    model,
    calls,
    running: () => running,
    maxRunning: () => maxRunning,
    hold: () => {
      gate = new Promise((r) => {
        release = r;
      });
    },
    open: () => {
      gate = undefined;
      release?.();
    },
    disposed: () => disposed,
  };
}

/** A [rows, 4] float32 tensor whose elements start at `base`. */
export function rowsOf(rows: number, base = 0): Tensor<'float32'> {
  return {
    type: 'float32',
    dims: [rows, 4],
    data: Float32Array.from({ length: rows * 4 }, (_, i) => base + i),
  };
}

/** Resolves with the ServeError code a promise rejects with. */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}
