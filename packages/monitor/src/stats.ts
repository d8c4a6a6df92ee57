/**
 * The statistics drift is scored with: quantile bin edges, population stability index,
 * Kolmogorov-Smirnov distance and Pearson's chi-square (with its p-value).
 */

/** Proportions smaller than this are raised to it before taking logs (the usual PSI smoothing). */
export const PSI_EPSILON = 1e-4;

/** The `q`-quantile (0..1) of already sorted values, by linear interpolation. */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const pos = (n - 1) * Math.min(1, Math.max(0, q));
  const lo = Math.floor(pos);
  const hi = Math.min(n - 1, lo + 1);
  const a = sorted[lo]!;
  return a + (sorted[hi]! - a) * (pos - lo);
}

/**
 * Interior bin edges at the quantiles of `sorted` (so each bin holds about the same share of the
 * reference), deduplicated: a feature with few distinct values gets fewer bins.
 */
export function quantileEdges(sorted: ArrayLike<number>, bins: number): number[] {
  const edges: number[] = [];
  for (let i = 1; i < bins; i++) {
    const e = quantileSorted(sorted, i / bins);
    if (Number.isFinite(e) && (edges.length === 0 || e > edges[edges.length - 1]!)) edges.push(e);
  }
  return edges;
}

/** The bin of `x` for interior `edges`: bin i holds edges[i-1] < x <= edges[i]. */
export function binOf(edges: readonly number[], x: number): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (x <= edges[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Counts per bin (edges.length + 1 bins). */
export function histogram(values: ArrayLike<number>, edges: readonly number[]): number[] {
  const counts = new Array<number>(edges.length + 1).fill(0);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (Number.isNaN(v)) continue;
    counts[binOf(edges, v)]!++;
  }
  return counts;
}

/**
 * Population stability index between two count vectors of equal length:
 * `sum (a_i - e_i) * ln(a_i / e_i)` over proportions. 0 means identical; 0.1 is a small shift,
 * above 0.25 a large one (the customary reading).
 */
export function psi(expected: readonly number[], actual: readonly number[]): number {
  const te = sum(expected);
  const ta = sum(actual);
  if (te === 0 || ta === 0) return Number.NaN;
  let out = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.max((expected[i] ?? 0) / te, PSI_EPSILON);
    const a = Math.max((actual[i] ?? 0) / ta, PSI_EPSILON);
    out += (a - e) * Math.log(a / e);
  }
  return out;
}

/**
 * Two-sample Kolmogorov-Smirnov distance: the largest gap between the empirical CDFs of two
 * sorted samples (0 identical, 1 disjoint).
 */
export function ksDistance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  const m = b.length;
  if (n === 0 || m === 0) return Number.NaN;
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < n && j < m) {
    const x = a[i]!;
    const y = b[j]!;
    const v = Math.min(x, y);
    while (i < n && a[i]! <= v) i++;
    while (j < m && b[j]! <= v) j++;
    const gap = Math.abs(i / n - j / m);
    if (gap > d) d = gap;
  }
  return d;
}

/**
 * Pearson's chi-square of observed counts against the expected proportions of a reference
 * (categories absent from the reference are pooled into one extra cell with a tiny expectation),
 * with its p-value.
 */
export function chiSquare(
  expected: readonly number[],
  observed: readonly number[],
): { statistic: number; pValue: number } {
  const te = sum(expected);
  const to = sum(observed);
  if (te === 0 || to === 0) return { statistic: Number.NaN, pValue: Number.NaN };
  let stat = 0;
  let cells = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = (Math.max(expected[i] ?? 0, 0.5) / te) * to;
    const o = observed[i] ?? 0;
    stat += ((o - e) * (o - e)) / e;
    cells++;
  }
  const df = Math.max(1, cells - 1);
  return { statistic: stat, pValue: 1 - regularizedGammaP(df / 2, stat / 2) };
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

/** The regularized lower incomplete gamma function P(a, x) (Numerical Recipes' series / fraction). */
export function regularizedGammaP(a: number, x: number): number {
  if (x <= 0) return 0;
  if (!Number.isFinite(x)) return 1;
  const lnGa = logGamma(a);
  if (x < a + 1) {
    let ap = a;
    let del = 1 / a;
    let s = del;
    for (let n = 0; n < 500; n++) {
      ap += 1;
      del *= x / ap;
      s += del;
      if (Math.abs(del) < Math.abs(s) * 1e-14) break;
    }
    return s * Math.exp(-x + a * Math.log(x) - lnGa);
  }
  let b = x + 1 - a;
  let c = 1 / 1e-300;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 500; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (Math.abs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-14) break;
  }
  return 1 - Math.exp(-x + a * Math.log(x) - lnGa) * h;
}

function logGamma(x: number): number {
  const g = [
    76.18009172947146, -86.50532032941678, 24.01409824083091, -1.231739572450155, 0.1208650973866179e-2,
    -0.5395239384953e-5,
  ];
  let y = x;
  const tmp = x + 5.5 - (x + 0.5) * Math.log(x + 5.5);
  let ser = 1.000000000190015;
  for (const c of g) ser += c / ++y;
  return -tmp + Math.log((2.5066282746310007 * ser) / x);
}

/**
 * The Kolmogorov distribution's upper tail, P(K > lambda): the asymptotic p-value of a KS
 * statistic scaled by the square root of the (effective) sample size.
 */
export function kolmogorovQ(lambda: number): number {
  if (!(lambda > 0)) return 1;
  if (lambda < 1.18) {
    // The small-lambda form converges fast where the alternating series does not.
    const y = Math.exp((-Math.PI * Math.PI) / (8 * lambda * lambda));
    let s = 0;
    for (let j = 1; j < 12; j += 2) s += y ** (j * j);
    return Math.min(1, Math.max(0, 1 - (Math.sqrt(2 * Math.PI) / lambda) * s));
  }
  let s = 0;
  for (let j = 1; j <= 100; j++) {
    const term = Math.exp(-2 * j * j * lambda * lambda);
    s += j % 2 === 1 ? term : -term;
    if (term < 1e-16) break;
  }
  return Math.min(1, Math.max(0, 2 * s));
}

/**
 * The p-value of a two-sample Kolmogorov-Smirnov distance `d` between samples of `n` and `m`
 * rows: the asymptotic Kolmogorov distribution at the effective size `nm / (n + m)`, with
 * Stephens' small-sample correction. Ties (discrete features) and a distance measured on a grid
 * both make the true distance larger than the one given, so the p-value errs high (fewer alarms).
 *
 * @example
 * ```ts
 * ksPValue(0.3, 50, 2000); // 0.0002: fifty rows this far from the reference are rare by chance
 * ```
 */
export function ksPValue(d: number, n: number, m: number): number {
  if (!(n > 0 && m > 0) || Number.isNaN(d)) return Number.NaN;
  const ne = Number.isFinite(m) ? (n * m) / (n + m) : n;
  const sq = Math.sqrt(ne);
  return kolmogorovQ((sq + 0.12 + 0.11 / sq) * d);
}

/**
 * Pearson's chi-square test of homogeneity between the reference's counts and the window's (a
 * 2 x k table): unlike a goodness-of-fit test against the reference's proportions, it accounts
 * for the reference being a sample too. Categories absent from both are left out.
 *
 * @example
 * ```ts
 * chiSquareHomogeneity([500, 500], [30, 10]); // { statistic: 10.4, df: 1, pValue: 0.0013 }
 * ```
 */
export function chiSquareHomogeneity(
  reference: ArrayLike<number>,
  window: ArrayLike<number>,
): { statistic: number; df: number; pValue: number } {
  let m = 0;
  let n = 0;
  for (let i = 0; i < reference.length; i++) m += reference[i] ?? 0;
  for (let i = 0; i < window.length; i++) n += window[i] ?? 0;
  if (m === 0 || n === 0) return { statistic: Number.NaN, df: 0, pValue: Number.NaN };
  let stat = 0;
  let cells = 0;
  const cols = Math.max(reference.length, window.length);
  for (let i = 0; i < cols; i++) {
    const r = reference[i] ?? 0;
    const w = window[i] ?? 0;
    const t = r + w;
    if (t === 0) continue;
    cells++;
    const er = (t * m) / (m + n);
    const ew = (t * n) / (m + n);
    stat += ((r - er) * (r - er)) / er + ((w - ew) * (w - ew)) / ew;
  }
  const df = cells - 1;
  if (df < 1) return { statistic: 0, df: 0, pValue: 1 };
  return { statistic: stat, df, pValue: 1 - regularizedGammaP(df / 2, stat / 2) };
}

/**
 * Holm's step-down adjustment of p-values for testing several features at once: the chance of
 * any false alarm among them stays at or under the level each adjusted p-value is compared with.
 * NaN p-values (features not tested) stay NaN and do not count.
 *
 * @example
 * ```ts
 * holm([0.01, 0.04, 0.3]); // [0.03, 0.08, 0.3]
 * ```
 */
export function holm(pValues: readonly number[]): number[] {
  const idx = pValues.map((p, i) => [p, i] as const).filter(([p]) => !Number.isNaN(p));
  idx.sort((a, b) => a[0] - b[0]);
  const out = pValues.map(() => Number.NaN);
  const k = idx.length;
  let running = 0;
  idx.forEach(([p, i], rank) => {
    running = Math.max(running, Math.min(1, (k - rank) * p));
    out[i] = running;
  });
  return out;
}

/** Bonferroni's adjustment: each p-value times the number of p-values tested (capped at 1). */
export function bonferroni(pValues: readonly number[]): number[] {
  const k = pValues.filter((p) => !Number.isNaN(p)).length;
  return pValues.map((p) => (Number.isNaN(p) ? p : Math.min(1, p * k)));
}

/**
 * Wilson's score interval for a proportion of `successes` in `n` trials (z = 1.96 for 95%).
 *
 * @example
 * ```ts
 * wilson(480, 500); // { estimate: 0.96, lower: 0.939, upper: 0.974 }
 * ```
 */
export function wilson(
  successes: number,
  n: number,
  z = 1.959964,
): { estimate: number; lower: number; upper: number } {
  if (!(n > 0)) return { estimate: Number.NaN, lower: Number.NaN, upper: Number.NaN };
  const p = successes / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { estimate: p, lower: Math.max(0, centre - half), upper: Math.min(1, centre + half) };
}
