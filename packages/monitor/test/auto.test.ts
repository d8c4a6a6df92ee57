import { fromFunction, type Model, pipeline, type Tensors } from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import { extractor, monitor, profile } from '../src/index.js';

/** A model that answers on the next turn of the event loop, so the monitor's drain gets to run. */
function quick(): Model {
  return fromFunction({
    name: 'quick',
    inputs: [{ name: 'x', type: 'float32', dims: [-1, 1] }],
    outputs: [{ name: 'y', type: 'float32', dims: [-1, 1] }],
    infer: ({ x }) => new Promise<Tensors>((resolve) => setImmediate(() => resolve({ y: x! }))),
  });
}

/** An extractor that burns `us` microseconds of CPU per request: a stand-in for a costly feature. */
function costly(us: number) {
  return extractor({
    features: [{ name: 'x', kind: 'numeric' }],
    extract: (inputs) => {
      const end = performance.now() + us / 1000;
      while (performance.now() < end);
      return { x: inputs.x!.data as Float32Array };
    },
  });
}

const one = (v: number): Tensors => ({ x: { type: 'float32', dims: [1, 1], data: Float32Array.of(v) } });

async function drive(served: Model, ms: number, gapMs = 0): Promise<void> {
  const end = performance.now() + ms;
  for (let i = 0; performance.now() < end; i++) {
    await served.infer(one(i % 50));
    if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
  }
}

describe("sampleRate: 'auto'", () => {
  it('is the default, and samples fewer requests when measuring would exceed the budget', async () => {
    const ex = [costly(200)];
    const ref = await profile(
      Array.from({ length: 200 }, (_, i) => ({ inputs: one(i % 50) })),
      {
        extractors: [
          extractor({ features: ex[0]!.features, extract: (i) => ({ x: i.x!.data as Float32Array }) }),
        ],
      },
    );
    const watch = monitor({ profile: ref, extractors: ex, budget: 0.05 });
    const served = pipeline(quick(), watch);
    expect(watch.stats().sampleRate).toBe(1);
    // Measuring every request would take most of the thread: 200 us against a few us of model.
    await drive(served, 1500);
    const s = watch.stats();
    expect(s.sampleRate).toBeLessThan(0.25);
    expect(s.sampled).toBeLessThan(s.requests);
    expect(s.busyShare).toBeLessThan(0.5);
    // Load off (a request every 5 ms): measuring is cheap again, so the rate climbs back.
    const low = s.sampleRate;
    await drive(served, 800, 5);
    expect(watch.stats().sampleRate).toBeGreaterThan(low);
    await served.dispose();
  });

  it('measures every request while that stays within the budget', async () => {
    const ex = [costly(0)];
    const ref = await profile(
      Array.from({ length: 200 }, (_, i) => ({ inputs: one(i % 50) })),
      { extractors: ex },
    );
    // A cheap extractor and a budget it cannot exceed (the whole thread): measuring always fits, so
    // every request is measured. (With the default 1% budget the outcome would depend on how busy
    // the machine running the test is, since the budget is measured against wall-clock time.)
    const watch = monitor({ profile: ref, extractors: ex, budget: 1 });
    const served = pipeline(quick(), watch);
    await drive(served, 600, 2);
    const s = watch.stats();
    expect(s.sampleRate).toBe(1);
    expect(s.sampled).toBe(s.requests);
    await served.dispose();
  });

  it('rejects a budget outside (0, 1]', async () => {
    const ex = [costly(0)];
    const ref = await profile([{ inputs: one(1) }], { extractors: ex });
    for (const budget of [0, -0.1, 1.5, Number.NaN]) {
      expect(() => monitor({ profile: ref, extractors: ex, budget })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    }
    expect(() => monitor({ profile: ref, extractors: ex, sampleRate: 'sometimes' as 'auto' })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
  });
});
