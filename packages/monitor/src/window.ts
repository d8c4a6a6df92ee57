import type { CategoricalProfile, FeatureProfile, NumericProfile } from './profile.js';
import { binOf } from './stats.js';

/**
 * The live window of one feature. Each row is binned once, when it arrives, against the
 * reference's bins; the window keeps counts per bin (updated as rows enter and leave), so scoring
 * costs O(bins) whatever the window size, and the window holds a few bytes per row.
 */
export interface FeatureWindow {
  readonly length: number;
  push(value: number | string, time: number): void;
  evictBefore(time: number): void;
}

abstract class RingWindow implements FeatureWindow {
  readonly times: Float64Array;
  head = 0;
  length = 0;
  constructor(readonly capacity: number) {
    this.times = new Float64Array(capacity);
  }
  protected abstract add(slot: number, value: number | string): void;
  protected abstract remove(slot: number): void;

  push(value: number | string, time: number): void {
    if (this.length === this.capacity) {
      this.remove(this.head);
      this.head = (this.head + 1) % this.capacity;
      this.length--;
    }
    const slot = (this.head + this.length) % this.capacity;
    this.add(slot, value);
    this.times[slot] = time;
    this.length++;
  }

  evictBefore(time: number): void {
    while (this.length > 0 && this.times[this.head]! < time) {
      this.remove(this.head);
      this.head = (this.head + 1) % this.capacity;
      this.length--;
    }
  }
}

/** A numeric feature: counts over the reference's PSI bins and over its quantile grid (for KS). */
export class NumericWindow extends RingWindow {
  readonly psiCounts: Float64Array;
  /** gridCounts[i]: rows with quantiles[i-1] < x <= quantiles[i] (the last: above the maximum). */
  readonly gridCounts: Float64Array;
  readonly #psiBin: Uint16Array;
  readonly #gridBin: Uint16Array;
  readonly #values: Float64Array;
  /** The reference CDF at each grid point (ties resolved to the last equal quantile). */
  readonly #refCdf: Float64Array;
  sum = 0;

  constructor(
    capacity: number,
    readonly profile: NumericProfile,
  ) {
    super(capacity);
    this.psiCounts = new Float64Array(profile.edges.length + 1);
    this.gridCounts = new Float64Array(profile.quantiles.length + 1);
    this.#psiBin = new Uint16Array(capacity);
    this.#gridBin = new Uint16Array(capacity);
    this.#values = new Float64Array(capacity);
    const q = profile.quantiles;
    const last = q.length - 1;
    this.#refCdf = new Float64Array(q.length);
    for (let i = last; i >= 0; i--) {
      this.#refCdf[i] = i < last && q[i + 1] === q[i] ? this.#refCdf[i + 1]! : i / last;
    }
  }

  protected add(slot: number, value: number | string): void {
    const x = value as number;
    const p = binOf(this.profile.edges, x);
    const g = binOf(this.profile.quantiles, x);
    this.#psiBin[slot] = p;
    this.#gridBin[slot] = g;
    this.#values[slot] = x;
    this.psiCounts[p]!++;
    this.gridCounts[g]!++;
    this.sum += x;
  }

  protected remove(slot: number): void {
    this.psiCounts[this.#psiBin[slot]!]!--;
    this.gridCounts[this.#gridBin[slot]!]!--;
    this.sum -= this.#values[slot]!;
  }

  /** KS distance between the window and the reference, at the reference's quantile points. */
  ks(): number {
    const n = this.length;
    if (n === 0) return Number.NaN;
    let cum = 0;
    let d = 0;
    for (let i = 0; i < this.#refCdf.length; i++) {
      cum += this.gridCounts[i]!;
      d = Math.max(d, Math.abs(cum / n - this.#refCdf[i]!));
    }
    return d;
  }

  mean(): number {
    return this.length ? this.sum / this.length : Number.NaN;
  }
}

/** A categorical feature: counts per reference category, plus one cell for unseen ones. */
export class CategoricalWindow extends RingWindow {
  readonly categories: string[];
  readonly counts: Float64Array;
  readonly #index: Map<string, number>;
  readonly #cell: Uint32Array;

  constructor(
    capacity: number,
    readonly profile: CategoricalProfile,
  ) {
    super(capacity);
    this.categories = Object.keys(profile.frequencies);
    this.#index = new Map(this.categories.map((c, i) => [c, i]));
    this.counts = new Float64Array(this.categories.length + 1);
    this.#cell = new Uint32Array(capacity);
  }

  protected add(slot: number, value: number | string): void {
    const cell = this.#index.get(String(value)) ?? this.categories.length;
    this.#cell[slot] = cell;
    this.counts[cell]!++;
  }

  protected remove(slot: number): void {
    this.counts[this.#cell[slot]!]!--;
  }
}

/** The window for a profiled feature. */
export function windowFor(capacity: number, profile: FeatureProfile): NumericWindow | CategoricalWindow {
  return profile.kind === 'numeric'
    ? new NumericWindow(capacity, profile)
    : new CategoricalWindow(capacity, profile);
}
