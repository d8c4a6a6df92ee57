import { readFile, writeFile } from 'node:fs/promises';
import { invalidArgument, type Model, notFound, type Tensors, toServeError } from '@mlserve/core';
import type { Extractor, FeatureColumns } from './extractors.js';
import type { Baseline } from './feedback.js';
import { histogram, quantileEdges, quantileSorted } from './stats.js';

/** The reference of a numeric feature: fixed bins from its quantiles plus a quantile sketch for KS. */
export interface NumericProfile {
  kind: 'numeric';
  count: number;
  /** Interior bin edges (quantiles of the reference), so PSI compares like with like. */
  edges: number[];
  /** Reference rows per bin (edges.length + 1 bins). */
  counts: number[];
  /** Equally spaced quantiles of the reference (its CDF, for the KS distance). */
  quantiles: number[];
  mean: number;
  std: number;
  min: number;
  max: number;
}

/** The reference of a categorical feature: how often each category occurred. */
export interface CategoricalProfile {
  kind: 'categorical';
  count: number;
  frequencies: Record<string, number>;
}

/** One feature's reference. */
export type FeatureProfile = NumericProfile | CategoricalProfile;

/** A reference profile, as saved in `profile.json` next to the model. */
export interface Profile {
  format: 'mlserve-profile';
  version: 1;
  createdAt: string;
  /** Rows the profile was built from. */
  rows: number;
  features: Record<string, FeatureProfile>;
  /** The model's quality on held-out data (see `measureBaseline()`), for ground-truth feedback. */
  baseline?: Baseline;
}

/** One reference sample: a request's inputs and, when known, the model's outputs. */
export interface ProfileSample {
  inputs: Tensors;
  outputs?: Tensors;
}

/** Options of {@link profile}. */
export interface ProfileOptions {
  /** What to measure (see `imageStats`, `columns`, `predictedClass`, `topScore`, `extractor`). */
  extractors: readonly Extractor[];
  /** Computes the outputs of samples that carry none, so predictions get a reference too. */
  model?: Model;
  /** PSI bins per numeric feature (default 10: deciles of the reference). */
  bins?: number;
  /** Quantiles kept for KS (default 256: the reference CDF to within 0.4%). */
  quantiles?: number;
}

/**
 * Builds the reference profile of training (or validation) data: per numeric feature a histogram
 * over quantile bin edges and a quantile sketch, per categorical feature its frequencies.
 *
 * @example
 * ```ts
 * const ref = await profile(trainingDigits.map((image) => ({ inputs: { image } })), {
 *   extractors: [imageStats('image'), predictedClass('logits')],
 *   model,
 * });
 * await saveProfile('models/mnist/profile.json', ref);
 * ```
 */
export async function profile(
  samples: Iterable<ProfileSample> | AsyncIterable<ProfileSample>,
  options: ProfileOptions,
): Promise<Profile> {
  const { extractors, model, bins = 10, quantiles = 256 } = options;
  if (!Array.isArray(extractors) || extractors.length === 0) {
    throw invalidArgument('profile: options.extractors must name at least one extractor');
  }
  if (!Number.isInteger(bins) || bins < 2)
    throw invalidArgument('profile: options.bins must be an integer >= 2');
  if (!Number.isInteger(quantiles) || quantiles < 2) {
    throw invalidArgument('profile: options.quantiles must be an integer >= 2');
  }
  const numeric = new Map<string, number[]>();
  const categorical = new Map<string, Map<string, number>>();
  let rows = 0;
  for await (const sample of samples) {
    let outputs = sample.outputs;
    if (!outputs && model) outputs = await model.infer(sample.inputs);
    let sampleRows = 0;
    for (const ex of extractors) {
      let cols: FeatureColumns;
      try {
        cols = ex.extract(sample.inputs, outputs);
      } catch (err) {
        throw toServeError(err, 'INVALID_ARGUMENT');
      }
      for (const [name, values] of Object.entries(cols)) {
        sampleRows = Math.max(sampleRows, values.length);
        const first = values[0];
        if (typeof first === 'string' || categorical.has(name)) {
          let freq = categorical.get(name);
          if (!freq) {
            freq = new Map();
            categorical.set(name, freq);
          }
          for (let i = 0; i < values.length; i++) {
            const k = String(values[i]);
            freq.set(k, (freq.get(k) ?? 0) + 1);
          }
        } else {
          let list = numeric.get(name);
          if (!list) {
            list = [];
            numeric.set(name, list);
          }
          for (let i = 0; i < values.length; i++) {
            const v = values[i] as number;
            if (Number.isFinite(v)) list.push(v);
          }
        }
      }
    }
    rows += sampleRows;
  }
  if (rows === 0) throw invalidArgument('profile: no samples (a reference needs data)');
  const features: Record<string, FeatureProfile> = {};
  for (const [name, list] of numeric) {
    if (list.length === 0) throw invalidArgument(`profile: feature "${name}" has no finite values`);
    const sorted = Float64Array.from(list).sort();
    const edges = quantileEdges(sorted, bins);
    let s = 0;
    let s2 = 0;
    for (const v of sorted) {
      s += v;
      s2 += v * v;
    }
    const mean = s / sorted.length;
    const q: number[] = [];
    for (let i = 0; i < quantiles; i++) q.push(quantileSorted(sorted, i / (quantiles - 1)));
    features[name] = {
      kind: 'numeric',
      count: sorted.length,
      edges,
      counts: histogram(sorted, edges),
      quantiles: q,
      mean,
      std: Math.sqrt(Math.max(0, s2 / sorted.length - mean * mean)),
      min: sorted[0]!,
      max: sorted[sorted.length - 1]!,
    };
  }
  for (const [name, freq] of categorical) {
    let count = 0;
    for (const c of freq.values()) count += c;
    features[name] = { kind: 'categorical', count, frequencies: Object.fromEntries(freq) };
  }
  return { format: 'mlserve-profile', version: 1, createdAt: new Date().toISOString(), rows, features };
}

/**
 * Checks that a parsed value is a {@link Profile}; throws INVALID_ARGUMENT naming what is wrong.
 */
export function assertProfile(value: unknown): asserts value is Profile {
  const p = value as Partial<Profile> | null;
  if (typeof p !== 'object' || p === null || p.format !== 'mlserve-profile' || p.version !== 1) {
    throw invalidArgument('profile: not an mlserve profile (format "mlserve-profile", version 1)');
  }
  if (typeof p.features !== 'object' || p.features === null)
    throw invalidArgument('profile: features missing');
  for (const [name, f] of Object.entries(p.features)) {
    if (f?.kind === 'numeric') {
      const ok =
        Array.isArray(f.edges) &&
        Array.isArray(f.counts) &&
        f.counts.length === f.edges.length + 1 &&
        Array.isArray(f.quantiles) &&
        f.quantiles.length >= 2 &&
        f.quantiles.length <= 10_000 &&
        f.edges.length < 1000 &&
        f.edges.every((e) => typeof e === 'number');
      if (!ok)
        throw invalidArgument(
          `profile: numeric feature "${name}" needs edges, counts (edges+1) and quantiles`,
        );
    } else if (f?.kind === 'categorical') {
      if (typeof f.frequencies !== 'object' || f.frequencies === null) {
        throw invalidArgument(`profile: categorical feature "${name}" needs frequencies`);
      }
    } else throw invalidArgument(`profile: feature "${name}" has an unknown kind`);
  }
}

/**
 * Writes a profile as JSON (by convention `profile.json` in the model's repository folder).
 *
 * @example
 * ```ts
 * await saveProfile('models/mnist/1/profile.json', ref);
 * ```
 */
export async function saveProfile(path: string, value: Profile): Promise<void> {
  await writeFile(path, `${JSON.stringify(value)}\n`);
}

/**
 * Reads and checks a profile written by {@link saveProfile}.
 *
 * @example
 * ```ts
 * const ref = await loadProfile('models/mnist/1/profile.json');
 * ```
 */
export async function loadProfile(path: string): Promise<Profile> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT')
      throw notFound(`profile: no file at ${path}`, { cause: err });
    throw toServeError(err, 'INVALID_ARGUMENT');
  }
  assertProfile(parsed);
  return parsed;
}
