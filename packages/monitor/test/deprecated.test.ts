import { DEPRECATED_CODE, fromFunction, type Model, pipeline, type Tensors } from '@mlserve/core';
import { expect, it } from 'vitest';
import { columns, monitor, profile } from '../src/index.js';

const row = (a: number, b: number): Tensors => ({
  x: { type: 'float32', dims: [1, 2], data: Float32Array.of(a, b) },
});

it('queueSize, the deprecated name of maxPending, still bounds the queue and warns once', async () => {
  const warnings: string[] = [];
  const listener = (w: Error & { code?: string }) => {
    if (w.code === DEPRECATED_CODE) warnings.push(w.message);
  };
  process.on('warning', listener);
  try {
    const ex = [columns('x', ['a', 'b'])];
    const ref = await profile(
      Array.from({ length: 200 }, (_, i) => ({ inputs: row(i % 10, i % 7) })),
      { extractors: ex },
    );
    const model: Model = fromFunction({
      name: 'tab',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, 1] }],
      infer: ({ x }) => ({
        y: { type: 'float32', dims: [x!.dims[0]!, 1], data: new Float32Array(x!.dims[0]!) },
      }),
    });
    expect(() => monitor({ profile: ref, extractors: ex, queueSize: 0 })).toThrow(
      'monitor: options.queueSize must be a positive integer',
    );
    const watch = monitor({ profile: ref, extractors: ex, sampleRate: 1, queueSize: 4 });
    const served = pipeline(model, watch);
    await Promise.all(Array.from({ length: 100 }, (_, i) => served.infer(row(i % 10, i % 7))));
    expect(watch.stats().queued).toBeLessThanOrEqual(4);
    expect(watch.stats().dropped).toBeGreaterThan(0);
    await watch.flush();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  expect(warnings).toEqual(['monitor: options.queueSize is deprecated; use options.maxPending']);
});
