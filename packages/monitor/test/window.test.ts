import { describe, expect, it } from 'vitest';
import type { NumericProfile } from '../src/profile.js';
import { histogram, ksDistance, psi, quantileEdges, quantileSorted } from '../src/stats.js';
import { CategoricalWindow, NumericWindow } from '../src/window.js';

function seeded(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function reference(values: number[]): NumericProfile {
  const sorted = Float64Array.from(values).sort();
  const edges = quantileEdges(sorted, 10);
  const quantiles = Array.from({ length: 256 }, (_, i) => quantileSorted(sorted, i / 255));
  return {
    kind: 'numeric',
    count: sorted.length,
    edges,
    counts: histogram(sorted, edges),
    quantiles,
    mean: 0,
    std: 0,
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
  };
}

describe('feature windows', () => {
  const rand = seeded(7);
  const ref = Array.from({ length: 5000 }, () => rand() + rand() + rand());
  const profile = reference(ref);

  it('scores like the exact statistics over the same rows', () => {
    const w = new NumericWindow(1000, profile);
    const live = Array.from({ length: 3000 }, () => rand() + rand() + rand() + 0.3);
    live.forEach((v, i) => {
      w.push(v, i);
    });
    const kept = Float64Array.from(live.slice(2000)).sort();
    expect(w.length).toBe(1000);
    expect(Array.from(w.psiCounts)).toEqual(histogram(kept, profile.edges));
    expect(psi(profile.counts, Array.from(w.psiCounts))).toBeGreaterThan(0.1);
    const exact = ksDistance(kept, Float64Array.from(ref).sort());
    expect(Math.abs(w.ks() - exact)).toBeLessThan(0.02);
    expect(w.mean()).toBeCloseTo(kept.reduce((a, b) => a + b, 0) / kept.length, 6);
  });

  it('evicts by time and returns to empty counts', () => {
    const w = new NumericWindow(100, profile);
    for (let i = 0; i < 50; i++) w.push(1.5, i);
    w.evictBefore(25);
    expect(w.length).toBe(25);
    w.evictBefore(1000);
    expect(w.length).toBe(0);
    expect(Array.from(w.psiCounts).every((c) => c === 0)).toBe(true);
    expect(Array.from(w.gridCounts).every((c) => c === 0)).toBe(true);
    expect(w.ks()).toBeNaN();
  });

  it('resolves tied reference quantiles (a feature that is mostly 0)', () => {
    const zeros = reference([...new Array(900).fill(0), ...Array.from({ length: 100 }, (_, i) => i + 1)]);
    const w = new NumericWindow(1000, zeros);
    for (let i = 0; i < 900; i++) w.push(0, i);
    for (let i = 0; i < 100; i++) w.push(i + 1, i);
    expect(w.ks()).toBeLessThan(0.02);
  });

  it('counts unseen categories in one extra cell', () => {
    const w = new CategoricalWindow(3, { kind: 'categorical', count: 2, frequencies: { a: 1, b: 1 } });
    for (const v of ['a', 'b', 'zzz', 'zzz']) w.push(v, 0);
    expect(Array.from(w.counts)).toEqual([0, 1, 2]);
  });
});
