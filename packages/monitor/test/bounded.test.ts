import { fromFunction, type Model, pipeline, type Tensors } from '@mlserve/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { columns, extractor, monitor, type Profile, profile } from '../src/index.js';

function tabular(): Model {
  return fromFunction({
    name: 'tab',
    inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
    outputs: [{ name: 'y', type: 'float32', dims: [-1, 1] }],
    infer: ({ x }) => ({
      y: { type: 'float32', dims: [x!.dims[0]!, 1], data: new Float32Array(x!.dims[0]!) },
    }),
  });
}

const row = (a: number, b: number): Tensors => ({
  x: { type: 'float32', dims: [1, 2], data: Float32Array.of(a, b) },
});
const ex = [columns('x', ['a', 'b'])];

async function reference(): Promise<Profile> {
  const samples = Array.from({ length: 1000 }, (_, i) => ({ inputs: row(i % 100, (i * 7) % 13) }));
  return profile(samples, { extractors: ex });
}

describe('monitor stays bounded', () => {
  it('keeps the queue and the window bounded over 100k requests, counting drops', async () => {
    const ref = await reference();
    const watch = monitor({
      profile: ref,
      extractors: ex,
      window: { size: 500 },
      maxPending: 64,
      sampleRate: 1,
    });
    const served = pipeline(tabular(), watch);
    const before = process.memoryUsage().heapUsed;
    let maxQueued = 0;
    for (let burst = 0; burst < 100; burst++) {
      const calls: Promise<Tensors>[] = [];
      for (let i = 0; i < 1000; i++) {
        // 4 KB of payload per request: holding on to 100k of them would take 400 MB.
        const inputs = {
          ...row(i % 100, i % 13),
          blob: { type: 'float32' as const, dims: [1, 1000], data: new Float32Array(1000) },
        };
        calls.push(served.infer(inputs));
      }
      await Promise.all(calls);
      maxQueued = Math.max(maxQueued, watch.stats().queued);
    }
    await watch.flush();
    const s = watch.stats();
    expect(s.requests).toBe(100_000);
    expect(maxQueued).toBeLessThanOrEqual(64);
    expect(s.dropped).toBeGreaterThan(0);
    expect(s.sampled).toBe(100_000);
    expect(s.windowRows).toBeLessThanOrEqual(500);
    expect(s.windowRows).toBeGreaterThan(0);
    expect(process.memoryUsage().heapUsed - before).toBeLessThan(64 * 1024 * 1024);
  });

  it('samples the requested fraction', async () => {
    const ref = await reference();
    const watch = monitor({ profile: ref, extractors: ex, sampleRate: 0.1, maxPending: 10_000 });
    const served = pipeline(tabular(), watch);
    for (let i = 0; i < 5000; i++) await served.infer(row(i % 100, i % 13));
    const s = watch.stats();
    expect(s.requests).toBe(5000);
    expect(s.sampled).toBeGreaterThan(350);
    expect(s.sampled).toBeLessThan(650);
  });

  it('forgets rows older than a time window', async () => {
    const ref = await reference();
    const watch = monitor({ profile: ref, extractors: ex, window: { ms: 100 }, minRows: 1, sampleRate: 1 });
    const served = pipeline(tabular(), watch);
    for (let i = 0; i < 50; i++) await served.infer(row(i, 1));
    expect((await watch.flush()).features.a!.rows).toBe(50);
    await new Promise((r) => setTimeout(r, 150));
    expect(watch.drift().features.a!.rows).toBe(0);
  });

  it('counts requests it cannot measure and still answers them', async () => {
    const ref = await reference();
    const watch = monitor({ profile: ref, extractors: ex });
    const model = fromFunction({
      name: 'loose',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, -1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
      infer: () => ({ y: { type: 'float32', dims: [1], data: new Float32Array(1) } }),
    });
    const served = pipeline(model, watch);
    const out = await served.infer({ x: { type: 'float32', dims: [1, 3], data: new Float32Array(3) } });
    expect(out.y).toBeDefined();
    await watch.flush();
    expect(watch.stats()).toMatchObject({ extractErrors: 1 });
    expect(watch.stats().lastExtractError).toMatch(/3 columns/);
  });

  it('rejects bad options with INVALID_ARGUMENT', async () => {
    const ref = await reference();
    expect(() => monitor({ profile: ref, extractors: ex, sampleRate: 2 })).toThrow(
      expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
    );
    expect(() => monitor({ profile: ref, extractors: ex, window: { size: 0 } })).toThrow(/window.size/);
    expect(() => monitor({ profile: { ...ref, format: 'x' } as unknown as Profile, extractors: ex })).toThrow(
      /not an mlserve profile/,
    );
    expect(() => monitor({ profile: ref, extractors: [] })).toThrow(/extractors/);
    await expect(profile([], { extractors: ex })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('publishes scores as Prometheus gauges and scores categories with chi-square', async () => {
    const cat = extractor({
      features: [{ name: 'colour', kind: 'categorical' }],
      extract: (inputs) => ({
        colour: Array.from(inputs.x!.data as Float32Array, (v) => (v > 0.5 ? 'red' : 'blue')),
      }),
    });
    const ref = await profile(
      Array.from({ length: 200 }, (_, i) => ({ inputs: row(i % 2, 0) })),
      { extractors: [cat] },
    );
    const registry = new Registry();
    const watch = monitor({
      profile: ref,
      extractors: [cat],
      window: { size: 100 },
      alpha: 0.001,
      sampleRate: 1,
      metrics: { registry },
    });
    const served = pipeline(tabular(), watch);
    for (let i = 0; i < 100; i++) await served.infer(row(1, 1));
    const report = await watch.flush();
    expect(report.features.colour!.breached).toEqual(['pValue']);
    const text = await registry.metrics();
    expect(text).toMatch(/mlserve_drift_score\{model="tab",version="1",feature="colour",metric="psi"\} \d/);
    expect(text).toMatch(/mlserve_drift_detected\{model="tab",version="1",feature="colour"\} 1/);
    expect(text).toMatch(/mlserve_monitor_requests\{model="tab",version="1",outcome="sampled"\} 100/);
    expect(text).toMatch(/mlserve_monitor_sample_rate\{model="tab",version="1"\} 1/);
  });

  it('watches one model only', async () => {
    const ref = await reference();
    const watch = monitor({ profile: ref, extractors: ex });
    pipeline(tabular(), watch);
    expect(() => pipeline(tabular(), watch)).toThrow(/one model/);
  });
});
