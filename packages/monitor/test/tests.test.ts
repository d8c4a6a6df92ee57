import { seededRandom } from '@mlserve/test-utils';
import { describe, expect, it } from 'vitest';
import { extractor } from '../src/extractors.js';
import { scoreFeatures } from '../src/monitor.js';
import { type Profile, profile } from '../src/profile.js';
import { bonferroni, chiSquareHomogeneity, holm, kolmogorovQ, ksPValue, wilson } from '../src/stats.js';
import { windowFor } from '../src/window.js';

const rng = seededRandom;
const normal = (r: () => number) => Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());

describe('p-values', () => {
  it("the Kolmogorov distribution's tail has its textbook quantiles", () => {
    expect(kolmogorovQ(1.358)).toBeCloseTo(0.05, 3);
    expect(kolmogorovQ(1.628)).toBeCloseTo(0.01, 3);
    expect(kolmogorovQ(0.5)).toBeCloseTo(0.9639, 3);
    expect(kolmogorovQ(0)).toBe(1);
    // Both forms agree where they meet (the slope there is about -0.58).
    expect(Math.abs(kolmogorovQ(1.17999) - kolmogorovQ(1.18001))).toBeLessThan(2e-5);
  });

  it('scales the KS distance by the effective size of both samples', () => {
    const crit = 1.358 * Math.sqrt((1000 + 2000) / (1000 * 2000));
    expect(ksPValue(crit, 1000, 2000)).toBeGreaterThan(0.045);
    expect(ksPValue(crit, 1000, 2000)).toBeLessThan(0.05);
    expect(ksPValue(0.3, 50, 2000)).toBeLessThan(0.001);
    expect(ksPValue(Number.NaN, 50, 2000)).toBeNaN();
  });

  it('tests homogeneity of two count vectors (a 2 x k table)', () => {
    // By hand: expected counts 509.6 / 490.4 and 20.38 / 19.62; with one degree of freedom the
    // p-value is erfc(sqrt(stat / 2)), 0.00193.
    const r = chiSquareHomogeneity([500, 500], [30, 10]);
    expect(r.statistic).toBeCloseTo(9.619, 2);
    expect(r.df).toBe(1);
    expect(r.pValue).toBeCloseTo(0.00193, 4);
    // Categories absent from both are left out; one category left is no test.
    expect(chiSquareHomogeneity([5, 0], [3, 0])).toEqual({ statistic: 0, df: 0, pValue: 1 });
  });

  it('adjusts p-values with Holm and Bonferroni', () => {
    const h = holm([0.01, 0.04, 0.3, Number.NaN]);
    expect(h[0]).toBeCloseTo(0.03, 12);
    expect(h[1]).toBeCloseTo(0.08, 12);
    expect(h[2]).toBeCloseTo(0.3, 12);
    expect(h[3]).toBeNaN();
    // Monotone: a larger p-value never gets a smaller adjusted one.
    expect(holm([0.02, 0.011])).toEqual([0.022, 0.022]);
    expect(bonferroni([0.01, 0.5, Number.NaN])).toEqual([0.02, 1, Number.NaN]);
  });

  it('gives Wilson intervals that stay inside [0, 1]', () => {
    const w = wilson(480, 500);
    expect(w.estimate).toBe(0.96);
    expect(w.lower).toBeCloseTo(0.939, 3);
    expect(w.upper).toBeCloseTo(0.974, 3);
    expect(wilson(10, 10).upper).toBeCloseTo(1, 12);
    expect(wilson(0, 10).lower).toBe(0);
    expect(wilson(0, 0).estimate).toBeNaN();
  });
});

describe('alarms at every window size (seeded simulation)', () => {
  // Three numeric features (two of them correlated, as image statistics are) and one categorical.
  const features = extractor({
    features: [
      { name: 'a', kind: 'numeric' },
      { name: 'b', kind: 'numeric' },
      { name: 'c', kind: 'numeric' },
      { name: 'k', kind: 'categorical' },
    ],
    extract: (inputs) => {
      const d = inputs.x!.data as Float32Array;
      const rows = d.length / 4;
      const col = (j: number) => Array.from({ length: rows }, (_, i) => d[i * 4 + j]!);
      return { a: col(0), b: col(1), c: col(2), k: col(3).map((v) => String(v)) };
    },
  });
  const draw = (r: () => number, n: number, shift = 0, skew = 0) => {
    const data = new Float32Array(n * 4);
    for (let i = 0; i < n; i++) {
      const z = normal(r);
      data[i * 4] = z + shift;
      data[i * 4 + 1] = 0.8 * z + 0.6 * normal(r);
      data[i * 4 + 2] = r() ** 2;
      data[i * 4 + 3] = r() < skew ? 0 : Math.floor(r() * 10);
    }
    return data;
  };
  const table = (data: Float32Array) => ({
    x: { type: 'float32' as const, dims: [data.length / 4, 4], data },
  });
  const score = (ref: Profile, data: Float32Array) => {
    const n = data.length / 4;
    const windows = new Map(Object.entries(ref.features).map(([name, f]) => [name, windowFor(n, f)]));
    const cols = features.extract(table(data), undefined);
    for (const [name, values] of Object.entries(cols))
      for (const v of Array.from(values as ArrayLike<number | string>)) windows.get(name)!.push(v, 0);
    return scoreFeatures(ref, windows);
  };

  it('stays under 1% false alarms per evaluation from 30 to 5,000 rows and catches shifts', async () => {
    const r = rng(42);
    const ref = await profile([{ inputs: table(draw(r, 2000)) }], { extractors: [features] });
    for (const n of [30, 100, 1000, 5000]) {
      const trials = n >= 1000 ? 100 : 300;
      let alarms = 0;
      for (let t = 0; t < trials; t++)
        if (Object.values(score(ref, draw(r, n))).some((s) => s.drifted)) alarms++;
      // At most 1% expected; the bound leaves room for the binomial noise of a few hundred trials.
      expect(alarms / trials, `window ${n}`).toBeLessThanOrEqual(0.02);
    }
    // A shift of one feature by 0.75 standard deviations, and one category's share raised by 20 points.
    for (const n of [200, 1000]) {
      let shifted = 0;
      let skewed = 0;
      for (let t = 0; t < 50; t++) {
        const s = score(ref, draw(r, n, 0.75));
        if (s.a!.drifted) shifted++;
        if (score(ref, draw(r, n, 0, 0.22)).k!.drifted) skewed++;
        expect(s.a!.breached).toEqual(s.a!.drifted ? ['pValue'] : []);
      }
      expect(shifted, `shift at ${n}`).toBeGreaterThanOrEqual(49);
      expect(skewed, `class share at ${n}`).toBeGreaterThanOrEqual(49);
    }
  });

  it('tests nothing before minRows, and effect floors hold back significant but small shifts', async () => {
    const r = rng(7);
    const ref = await profile([{ inputs: table(draw(r, 2000)) }], { extractors: [features] });
    const small = score(ref, draw(r, 29, 3));
    expect(small.a!.drifted).toBe(false);
    expect(small.a!.pValue).toBeNaN();
    // 20,000 rows shifted by 0.1 sd: significant, yet under a KS floor of 0.1.
    const n = 20_000;
    const windows = new Map(Object.entries(ref.features).map(([name, f]) => [name, windowFor(n, f)]));
    const cols = features.extract(table(draw(r, n, 0.1)), undefined);
    for (const [name, values] of Object.entries(cols))
      for (const v of Array.from(values as ArrayLike<number | string>)) windows.get(name)!.push(v, 0);
    expect(scoreFeatures(ref, windows).a!.drifted).toBe(true);
    const floored = scoreFeatures(ref, windows, { thresholds: { ks: 0.1 } }).a!;
    expect(floored.drifted).toBe(false);
    expect(floored.breached).toEqual(['pValue']);
  });
});
