import { fromFunction, type Model, pipeline, type Tensors } from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import { columns, monitor, profile } from '../src/index.js';

const ex = [columns('x', ['a'])];
const one = (v: number): Tensors => ({ x: { type: 'float32', dims: [1, 1], data: Float32Array.of(v) } });

function echo(): Model {
  return fromFunction({
    name: 'echo',
    inputs: [{ name: 'x', type: 'float32', dims: [-1, 1] }],
    outputs: [{ name: 'y', type: 'float32', dims: [-1, 1] }],
    infer: ({ x }) => ({ y: x! }),
  });
}

describe('the drain', () => {
  it('measures a trickle of requests a few milliseconds later, without flush()', async () => {
    const ref = await profile(
      Array.from({ length: 100 }, (_, i) => ({ inputs: one(i) })),
      { extractors: ex },
    );
    const watch = monitor({ profile: ref, extractors: ex, sampleRate: 1 });
    const served = pipeline(echo(), watch);
    await served.infer(one(1));
    await served.infer(one(2));
    expect(watch.stats().queued).toBe(2);
    await new Promise((r) => setTimeout(r, 50));
    expect(watch.stats()).toMatchObject({ queued: 0, windowRows: 2 });
    await served.dispose();
  });

  it('measures a full batch on the next turn of the event loop', async () => {
    const ref = await profile(
      Array.from({ length: 100 }, (_, i) => ({ inputs: one(i) })),
      { extractors: ex },
    );
    const watch = monitor({ profile: ref, extractors: ex, sampleRate: 1, drainBatch: 8 });
    const served = pipeline(echo(), watch);
    await Promise.all(Array.from({ length: 20 }, (_, i) => served.infer(one(i))));
    expect(watch.stats().queued).toBe(20);
    await new Promise((r) => setImmediate(r));
    // One turn measures one batch of 8, the next another; the 4 left wait for the short timer.
    expect(watch.stats().queued).toBe(12);
    await new Promise((r) => setImmediate(r));
    expect(watch.stats().queued).toBe(4);
    await new Promise((r) => setTimeout(r, 50));
    expect(watch.stats()).toMatchObject({ queued: 0, windowRows: 20 });
    await served.dispose();
  });
});
