import { getEventListeners } from 'node:events';
import type { Tensors } from '@mlserve/core';
import { expect, test, vi } from 'vitest';
import { batching } from '../src/index.js';
import { probe, rowsOf, sleep } from './helpers.js';

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('a random mix of sizes, priorities, parameters, aborts, deadlines and failures: every request settles correctly and nothing leaks', async () => {
  const rand = rng(42);
  const p = probe({ concurrency: 2, delayMs: 1, fail: (x) => (x.data as Float32Array).includes(-7) });
  const served = batching({ maxBatchSize: 8, maxDelayMs: 'auto', maxLatencyMs: 3, maxQueue: 200 })(p.model);
  const controllers: AbortController[] = [];
  const jobs: Promise<string>[] = [];
  for (let i = 0; i < 300; i++) {
    const rows = 1 + Math.floor(rand() * 6);
    const base = rand() < 0.03 ? -7 : i * 100;
    const x = rowsOf(rows, base);
    const ac = new AbortController();
    controllers.push(ac);
    const roll = rand();
    const options = {
      signal: ac.signal,
      priority: Math.floor(rand() * 3),
      parameters: { mode: rand() < 0.5 ? 'a' : 'b' },
      ...(roll < 0.2 ? { deadline: Date.now() + Math.floor(rand() * 20) } : {}),
    };
    if (roll > 0.85) setTimeout(() => ac.abort(), Math.floor(rand() * 10));
    jobs.push(
      served.infer({ x }, options).then(
        (out: Tensors) => {
          const y = out.y!.data as Float32Array;
          for (let k = 0; k < y.length; k++) if (y[k] !== (x.data[k] as number) * 2) return 'WRONG';
          return out.y!.dims[0] === rows ? 'OK' : 'WRONG';
        },
        (err: { code?: string }) => err.code ?? 'UNCODED',
      ),
    );
    if (rand() < 0.3) await sleep(0);
  }
  const outcomes = await Promise.all(jobs);
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
  expect(counts.CANCELLED).toBeGreaterThan(0);
  expect(counts.WRONG).toBeUndefined();
  expect(counts.UNCODED).toBeUndefined();
  expect(counts.OK).toBeGreaterThan(100);
  expect(
    Object.keys(counts).every((c) =>
      ['OK', 'CANCELLED', 'DEADLINE_EXCEEDED', 'INTERNAL', 'RESOURCE_EXHAUSTED'].includes(c),
    ),
  ).toBe(true);
  const s = served.stats!().batching as { queueSize: number; queuedRequests: number; inFlight: number };
  expect(s).toMatchObject({ queueSize: 0, queuedRequests: 0, inFlight: 0 });
  for (const ac of controllers) expect(getEventListeners(ac.signal, 'abort')).toHaveLength(0);
  for (const c of p.calls) expect(c.rows).toBeLessThanOrEqual(8);
  await served.dispose();
});

test('the hot path arms no timer per request and builds no AbortSignal.any per request', async () => {
  const p = probe();
  const served = batching({ maxBatchSize: 64, maxDelayMs: 2 })(p.model);
  const timers = vi.spyOn(globalThis, 'setTimeout');
  const any = vi.spyOn(AbortSignal, 'any');
  const ac = new AbortController();
  try {
    const jobs = Array.from({ length: 512 }, (_, i) =>
      served.infer({ x: rowsOf(1, i) }, { signal: ac.signal, deadline: Date.now() + 10_000 }),
    );
    await Promise.all(jobs);
    // 8 batches of 64: a handful of timers for the batcher, nowhere near one per request.
    expect(timers.mock.calls.length).toBeLessThan(30);
    expect(any).not.toHaveBeenCalled();
  } finally {
    timers.mockRestore();
    any.mockRestore();
  }
  expect(p.calls.length).toBe(8);
});
