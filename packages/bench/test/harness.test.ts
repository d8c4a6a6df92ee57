import { describe, expect, it } from 'vitest';
import { closedLoop, interleaved, openLoop, perCpuRatio, ratioTable, timePerCall } from '../src/harness.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('bench harness', () => {
  it('closedLoop keeps `concurrency` requests in flight and counts errors', async () => {
    let inFlight = 0;
    let peak = 0;
    const r = await closedLoop(
      'c',
      async (i) => {
        peak = Math.max(peak, ++inFlight);
        await sleep(5);
        inFlight--;
        if (i % 10 === 0) throw new Error('x');
      },
      { concurrency: 8, durationMs: 200, warmupMs: 0 },
    );
    expect(peak).toBe(8);
    expect(r.requests).toBeGreaterThan(50);
    expect(r.errors).toBeGreaterThan(0);
    expect(r.p50).toBeGreaterThanOrEqual(4);
    expect(r.p99).toBeGreaterThanOrEqual(r.p50);
    expect(r.throughput).toBeCloseTo(((r.requests - r.errors) * 1000) / r.durationMs, 5);
  });

  it('openLoop sends at the given rate whatever the latency', async () => {
    const r = await openLoop('o', () => sleep(20), { rate: 200, durationMs: 500, warmupMs: 0 });
    // 200/s for 0.5 s is 100 requests, even though each takes 20 ms.
    expect(r.requests).toBeGreaterThanOrEqual(95);
    expect(r.requests).toBeLessThanOrEqual(101);
    expect(r.p50).toBeGreaterThanOrEqual(19);
  });

  it('openLoop counts as dropped what would exceed maxInFlight', async () => {
    const r = await openLoop('o', () => sleep(200), {
      rate: 200,
      durationMs: 200,
      warmupMs: 0,
      maxInFlight: 5,
    });
    expect(r.dropped).toBeGreaterThan(20);
  });

  it('timePerCall and interleaved return one result per name', async () => {
    const results = await interleaved(3, [
      { name: 'a', run: () => timePerCall('a', () => undefined, { iterations: 100, warmup: 0 }) },
      { name: 'b', run: () => timePerCall('b', () => sleep(1), { iterations: 5, warmup: 0 }) },
    ]);
    expect(results.map((r) => r.name)).toEqual(['a', 'b']);
    expect(results[0]!.throughput).toBeGreaterThan(results[1]!.throughput);
  });

  it('ratioTable prints ratios to the baseline', async () => {
    const base = await timePerCall('base', () => undefined, { iterations: 10, warmup: 0 });
    const other = { ...base, name: 'other', throughput: base.throughput * 2 };
    const table = ratioTable('t', base, [other]);
    expect(table).toContain('| base (baseline) |');
    expect(table).toMatch(/\| other \| [\d,.]+ \| 2\.00 \|/);
    // Same CPU, twice the throughput: twice the throughput per CPU-second.
    expect(table).toContain('x baseline per CPU-s');
    expect(perCpuRatio(other, base)).toBe('2.00');
    expect(perCpuRatio({ ...other, cpuCores: 0 }, base)).toBe('-');
  });
});
