import { invalidArgument, type Tensor, type Tensors } from '@mlserve/core';

/** Numbers get histograms, KS and PSI; categories get frequencies, PSI and chi-square. */
export type FeatureKind = 'numeric' | 'categorical';

/** One monitored feature. */
export interface FeatureSpec {
  name: string;
  kind: FeatureKind;
}

/** The values of each feature for every row of one request: numbers or category labels. */
export type FeatureColumns = Record<string, ArrayLike<number> | readonly string[]>;

/**
 * Turns a request (and its response) into feature values, one per row. Extraction runs off the
 * request path, in the monitor's drain.
 *
 * @example
 * ```ts
 * const ageAndCountry = extractor({
 *   features: [{ name: 'age', kind: 'numeric' }, { name: 'country', kind: 'categorical' }],
 *   extract: (inputs) => ({ age: inputs.age!.data as Float32Array, country: inputs.country!.data as string[] }),
 * });
 * ```
 */
export interface Extractor {
  readonly features: readonly FeatureSpec[];
  extract(inputs: Tensors, outputs: Tensors | undefined): FeatureColumns;
}

/**
 * An extractor from a function, for features the named extractors do not cover.
 *
 * @example
 * ```ts
 * const length = extractor({
 *   features: [{ name: 'tokens', kind: 'numeric' }],
 *   extract: (inputs) => ({ tokens: [inputs.input_ids!.dims[1]!] }),
 * });
 * ```
 */
export function extractor(options: {
  features: readonly FeatureSpec[];
  extract: (inputs: Tensors, outputs: Tensors | undefined) => FeatureColumns;
}): Extractor {
  for (const f of options.features) {
    if (typeof f.name !== 'string' || f.name.length === 0)
      throw new TypeError('feature names must be non-empty strings');
    if (f.kind !== 'numeric' && f.kind !== 'categorical')
      throw new TypeError(`feature "${f.name}": unknown kind`);
  }
  return { features: [...options.features], extract: options.extract };
}

function pick(tensors: Tensors | undefined, name: string, where: 'input' | 'output'): Tensor {
  const t = tensors?.[name];
  if (!t) throw invalidArgument(`monitor: the ${where} "${name}" is missing`);
  if (t.type === 'string') throw invalidArgument(`monitor: the ${where} "${name}" is not numeric`);
  return t;
}

function toNumber(v: number | bigint): number {
  return typeof v === 'bigint' ? Number(v) : v;
}

/**
 * One numeric feature per column of a `[batch, F]` input (tabular models).
 *
 * @example
 * ```ts
 * columns('features', ['age', 'income', 'tenure']); // features [batch, 3]
 * ```
 */
export function columns(
  input: string,
  names: readonly string[],
  options: { categorical?: readonly string[] } = {},
): Extractor {
  const categorical = new Set(options.categorical ?? []);
  const features = names.map(
    (name) => ({ name, kind: categorical.has(name) ? 'categorical' : 'numeric' }) as FeatureSpec,
  );
  return extractor({
    features,
    extract(inputs) {
      const t = pick(inputs, input, 'input');
      const width = t.dims.length >= 2 ? t.dims[t.dims.length - 1]! : 1;
      if (width !== names.length) {
        throw invalidArgument(`monitor: input "${input}" has ${width} columns, ${names.length} are named`);
      }
      const rows = t.data.length / width;
      const out: Record<string, number[] | string[]> = {};
      const data = t.data as ArrayLike<number | bigint>;
      names.forEach((name, c) => {
        if (categorical.has(name)) {
          const col: string[] = new Array(rows);
          for (let r = 0; r < rows; r++) col[r] = String(data[r * width + c]);
          out[name] = col;
        } else {
          const col: number[] = new Array(rows);
          for (let r = 0; r < rows; r++) col[r] = toNumber(data[r * width + c]!);
          out[name] = col;
        }
      });
      return out;
    },
  });
}

/** Options of {@link imageStats}. */
export interface ImageStatsOptions {
  /** `nchw` (PyTorch/ONNX, the default) or `nhwc` (TensorFlow). */
  layout?: 'nchw' | 'nhwc';
  /** A pixel brighter than this counts towards `bright` (default 0.5, for pixels in [0,1]). */
  brightThreshold?: number;
  /** Prefix of the feature names (default `${input}.`). */
  prefix?: string;
}

/**
 * Summary features of an image batch `[batch, C, H, W]` (or `[batch, H, W, C]`): `mean` and `std`
 * of the pixels, `bright` (the fraction above a threshold), `centroidX` / `centroidY` (where the
 * ink is, 0..1, which catches shifted or cropped images), and `channel<i>` means when there is
 * more than one channel (which catches colour casts).
 *
 * @example
 * ```ts
 * imageStats('image', { brightThreshold: 0.5 }); // image.mean, image.std, image.bright, image.centroidX, ...
 * ```
 */
export function imageStats(input: string, options: ImageStatsOptions = {}): Extractor {
  const { layout = 'nchw', brightThreshold = 0.5, prefix = `${input}.` } = options;
  const base = ['mean', 'std', 'bright', 'centroidX', 'centroidY'];
  const names = {
    mean: `${prefix}mean`,
    std: `${prefix}std`,
    bright: `${prefix}bright`,
    centroidX: `${prefix}centroidX`,
    centroidY: `${prefix}centroidY`,
  };
  let channelsSeen = 0;
  const make = (channels: number): FeatureSpec[] => {
    const names = [...base];
    if (channels > 1) for (let c = 0; c < channels; c++) names.push(`channel${c}`);
    return names.map((n) => ({ name: `${prefix}${n}`, kind: 'numeric' }));
  };
  const ex: Extractor & { features: FeatureSpec[] } = {
    features: make(1),
    extract(inputs) {
      const t = pick(inputs, input, 'input');
      if (t.dims.length !== 4)
        throw invalidArgument(`monitor: input "${input}" must be [batch, C, H, W] or [batch, H, W, C]`);
      const [n, d1, d2, d3] = t.dims as [number, number, number, number];
      const [C, H, W] = layout === 'nchw' ? [d1, d2, d3] : [d3, d1, d2];
      if (C !== channelsSeen) {
        channelsSeen = C;
        ex.features = make(C);
      }
      if (t.type === 'int64' || t.type === 'uint64') {
        throw invalidArgument(`monitor: input "${input}" has 64-bit integer pixels`);
      }
      const data = t.data as Float32Array;
      const HW = H * W;
      const per = C * HW;
      const out: Record<string, number[]> = {};
      for (const f of ex.features) out[f.name] = new Array(n);
      const mean = out[names.mean]!;
      const std = out[names.std]!;
      const brightOut = out[names.bright]!;
      const cx = out[names.centroidX]!;
      const cy = out[names.centroidY]!;
      const chan = new Float64Array(C);
      // Ink per pixel, summed over channels (only needed when there is more than one).
      const ink = C > 1 ? new Float64Array(HW) : undefined;
      const nchw = layout === 'nchw';
      for (let r = 0; r < n; r++) {
        const off = r * per;
        let s = 0;
        let s2 = 0;
        let bright = 0;
        let mx = 0;
        let my = 0;
        let mass = 0;
        if (C === 1) {
          // The common grey-scale case: one pass over the pixels.
          for (let y = 0, p = off; y < H; y++) {
            let rowMass = 0;
            for (let x = 0; x < W; x++, p++) {
              const v = data[p]!;
              s += v;
              s2 += v * v;
              if (v > brightThreshold) bright++;
              if (v > 0) {
                rowMass += v;
                mx += v * x;
              }
            }
            mass += rowMass;
            my += rowMass * y;
          }
          chan[0] = s;
        } else {
          for (let c = 0; c < C; c++) {
            let cs = 0;
            for (let p = 0; p < HW; p++) {
              const v = data[nchw ? off + c * HW + p : off + p * C + c]!;
              cs += v;
              s2 += v * v;
              if (v > brightThreshold) bright++;
              ink![p] = (c === 0 ? 0 : ink![p]!) + v;
            }
            chan[c] = cs;
            s += cs;
          }
          for (let y = 0, p = 0; y < H; y++) {
            let rowMass = 0;
            for (let x = 0; x < W; x++, p++) {
              const v = ink![p]!;
              if (v > 0) {
                rowMass += v;
                mx += v * x;
              }
            }
            mass += rowMass;
            my += rowMass * y;
          }
        }
        const m = s / per;
        mean[r] = m;
        std[r] = Math.sqrt(Math.max(0, s2 / per - m * m));
        brightOut[r] = bright / per;
        cx[r] = mass > 0 ? mx / mass / Math.max(1, W - 1) : 0.5;
        cy[r] = mass > 0 ? my / mass / Math.max(1, H - 1) : 0.5;
        if (C > 1) for (let c = 0; c < C; c++) out[`${prefix}channel${c}`]![r] = chan[c]! / HW;
      }
      return out;
    },
  };
  return ex;
}

/**
 * The predicted class (argmax of an output's last axis) as a categorical feature: a shift in the
 * class mix is often the first visible sign of decay.
 *
 * @example
 * ```ts
 * predictedClass('logits', { labels: ['zero', 'one', ...] }); // feature "logits.class"
 * ```
 */
export function predictedClass(
  output: string,
  options: { labels?: readonly string[]; name?: string } = {},
): Extractor {
  const name = options.name ?? `${output}.class`;
  return extractor({
    features: [{ name, kind: 'categorical' }],
    extract(_inputs, outputs) {
      const t = pick(outputs, output, 'output');
      const k = t.dims[t.dims.length - 1] ?? 1;
      const rows = k > 0 ? t.data.length / k : 0;
      const data = t.data as ArrayLike<number | bigint>;
      const col: string[] = new Array(rows);
      for (let r = 0; r < rows; r++) {
        let best = 0;
        let top = toNumber(data[r * k]!);
        for (let j = 1; j < k; j++) {
          const v = toNumber(data[r * k + j]!);
          if (v > top) {
            top = v;
            best = j;
          }
        }
        col[r] = options.labels?.[best] ?? String(best);
      }
      return { [name]: col };
    },
  });
}

/**
 * The top score of an output's last axis (after a softmax when the output holds logits) as a
 * numeric feature: falling confidence is a drift signal that needs no labels.
 *
 * @example
 * ```ts
 * topScore('logits', { softmax: true }); // feature "logits.topScore"
 * ```
 */
export function topScore(output: string, options: { softmax?: boolean; name?: string } = {}): Extractor {
  const name = options.name ?? `${output}.topScore`;
  return extractor({
    features: [{ name, kind: 'numeric' }],
    extract(_inputs, outputs) {
      const t = pick(outputs, output, 'output');
      const k = t.dims[t.dims.length - 1] ?? 1;
      const rows = k > 0 ? t.data.length / k : 0;
      const data = t.data as ArrayLike<number>;
      const col: number[] = new Array(rows);
      for (let r = 0; r < rows; r++) {
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < k; j++) max = Math.max(max, toNumber(data[r * k + j]!));
        if (options.softmax) {
          let z = 0;
          for (let j = 0; j < k; j++) z += Math.exp(toNumber(data[r * k + j]!) - max);
          col[r] = 1 / z;
        } else col[r] = max;
      }
      return { [name]: col };
    },
  });
}
