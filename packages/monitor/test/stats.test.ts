import { describe, expect, it } from 'vitest';
import {
  binOf,
  chiSquare,
  histogram,
  ksDistance,
  psi,
  quantileEdges,
  regularizedGammaP,
} from '../src/stats.js';

describe('stats', () => {
  it('bins by interior edges, right-inclusive', () => {
    const edges = [1, 2, 3];
    expect([0, 1, 1.5, 2, 3, 4].map((x) => binOf(edges, x))).toEqual([0, 0, 1, 1, 2, 3]);
    expect(histogram([0, 1, 1.5, 2, 3, 4, Number.NaN], edges)).toEqual([2, 2, 1, 1]);
  });

  it('takes quantile edges and drops duplicates', () => {
    const sorted = Float64Array.from({ length: 100 }, (_, i) => i);
    expect(quantileEdges(sorted, 4)).toEqual([24.75, 49.5, 74.25]);
    expect(quantileEdges(Float64Array.from([0, 0, 0, 0, 1]), 4)).toEqual([0]);
  });

  it('PSI is 0 for equal distributions and grows with the shift', () => {
    expect(psi([10, 20, 30], [1, 2, 3])).toBeCloseTo(0, 12);
    const small = psi([25, 25, 25, 25], [28, 24, 24, 24]);
    const large = psi([25, 25, 25, 25], [70, 10, 10, 10]);
    expect(small).toBeLessThan(0.02);
    expect(large).toBeGreaterThan(0.5);
    expect(psi([], [])).toBeNaN();
  });

  it('KS distance is the largest CDF gap', () => {
    expect(ksDistance([1, 2, 3, 4], [1, 2, 3, 4])).toBe(0);
    expect(ksDistance([1, 2], [3, 4])).toBe(1);
    expect(ksDistance([1, 2, 3, 4], [3, 4, 5, 6])).toBeCloseTo(0.5, 12);
  });

  it('chi-square p-values match the tables', () => {
    // chi2 = 3.841 at df 1 is p = 0.05; df 9 at 16.919 is p = 0.05.
    expect(1 - regularizedGammaP(0.5, 3.841 / 2)).toBeCloseTo(0.05, 3);
    expect(1 - regularizedGammaP(4.5, 16.919 / 2)).toBeCloseTo(0.05, 3);
    const same = chiSquare([100, 100], [50, 50]);
    expect(same.statistic).toBeCloseTo(0, 12);
    expect(same.pValue).toBeCloseTo(1, 6);
    expect(chiSquare([100, 100], [90, 10]).pValue).toBeLessThan(1e-6);
  });
});
