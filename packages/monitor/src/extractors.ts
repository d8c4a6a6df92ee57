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
  /**
   * Optional allocation-free form of `extract`, used by the monitor when present: calls
   * `emit(i, value)` for each row's value of `features[i]`. It must report the same values as
   * `extract`. The named extractors all have it; `extractor()` ones need not.
   */
  each?(inputs: Tensors, outputs: Tensors | undefined, emit: FeatureEmit): void;
}

/** Receives one value of feature `features[index]` (see {@link Extractor.each}). */
export type FeatureEmit = (index: number, value: number | string) => void;

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
  /** Optional allocation-free form of `extract` (see {@link Extractor.each}). */
  each?: (inputs: Tensors, outputs: Tensors | undefined, emit: FeatureEmit) => void;
}): Extractor {
  for (const f of options.features) {
    if (typeof f.name !== 'string' || f.name.length === 0)
      throw new TypeError('feature names must be non-empty strings');
    if (f.kind !== 'numeric' && f.kind !== 'categorical')
      throw new TypeError(`feature "${f.name}": unknown kind`);
  }
  const ex: Extractor = { features: [...options.features], extract: options.extract };
  if (options.each) return { ...ex, each: options.each };
  return ex;
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
  const isCategorical = names.map((name) => categorical.has(name));
  const read = (inputs: Tensors) => {
    const t = pick(inputs, input, 'input');
    const width = t.dims.length >= 2 ? t.dims[t.dims.length - 1]! : 1;
    if (width !== names.length) {
      throw invalidArgument(`monitor: input "${input}" has ${width} columns, ${names.length} are named`);
    }
    return { data: t.data as ArrayLike<number | bigint>, width, rows: t.data.length / width };
  };
  return extractor({
    features,
    extract(inputs) {
      const { data, width, rows } = read(inputs);
      const out: Record<string, number[] | string[]> = {};
      names.forEach((name, c) => {
        if (isCategorical[c]) {
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
    each(inputs, _outputs, emit) {
      const { data, width, rows } = read(inputs);
      for (let r = 0, p = 0; r < rows; r++) {
        for (let c = 0; c < width; c++, p++) {
          const v = data[p]!;
          emit(c, isCategorical[c] ? String(v) : toNumber(v));
        }
      }
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
  let channelsSeen = 0;
  const make = (channels: number): FeatureSpec[] => {
    const names = [...base];
    if (channels > 1) for (let c = 0; c < channels; c++) names.push(`channel${c}`);
    return names.map((n) => ({ name: `${prefix}${n}`, kind: 'numeric' }));
  };
  const nchw = layout === 'nchw';
  // Scratch reused across calls (extraction is synchronous, so one set per extractor is enough).
  const stats = new Float64Array(5);
  let chan = new Float64Array(1);
  let ink = new Float64Array(0);
  let C = 1;
  let H = 0;
  let W = 0;
  const shape = (inputs: Tensors): { data: ArrayLike<number>; n: number } => {
    const t = pick(inputs, input, 'input');
    if (t.dims.length !== 4)
      throw invalidArgument(`monitor: input "${input}" must be [batch, C, H, W] or [batch, H, W, C]`);
    if (t.type === 'int64' || t.type === 'uint64') {
      throw invalidArgument(`monitor: input "${input}" has 64-bit integer pixels`);
    }
    const [n, d1, d2, d3] = t.dims as [number, number, number, number];
    if (nchw) {
      C = d1;
      H = d2;
      W = d3;
    } else {
      C = d3;
      H = d1;
      W = d2;
    }
    if (C !== channelsSeen) {
      channelsSeen = C;
      ex.features = make(C);
    }
    if (chan.length < C) chan = new Float64Array(C);
    if (C > 1 && ink.length < H * W) ink = new Float64Array(H * W);
    return { data: t.data as ArrayLike<number>, n };
  };
  const ex: Extractor & { features: FeatureSpec[] } = {
    features: make(1),
    extract(inputs) {
      const { data, n } = shape(inputs);
      const out: Record<string, number[]> = {};
      const cols: number[][] = [];
      for (const f of ex.features) {
        const col = new Array<number>(n);
        out[f.name] = col;
        cols.push(col);
      }
      for (let r = 0; r < n; r++) {
        scanImage(data, r * C * H * W, C, H, W, nchw, brightThreshold, stats, chan, ink);
        for (let i = 0; i < 5; i++) cols[i]![r] = stats[i]!;
        if (C > 1) for (let c = 0; c < C; c++) cols[5 + c]![r] = chan[c]!;
      }
      return out;
    },
    each(inputs, _outputs, emit) {
      const { data, n } = shape(inputs);
      for (let r = 0; r < n; r++) {
        scanImage(data, r * C * H * W, C, H, W, nchw, brightThreshold, stats, chan, ink);
        emit(0, stats[0]!);
        emit(1, stats[1]!);
        emit(2, stats[2]!);
        emit(3, stats[3]!);
        emit(4, stats[4]!);
        if (C > 1) for (let c = 0; c < C; c++) emit(5 + c, chan[c]!);
      }
    },
  };
  return ex;
}

/**
 * One image's statistics in one pass with no allocation: `out` gets mean, std, bright share,
 * centroidX, centroidY; `chan` the channel means (when C > 1, using `ink` as scratch).
 */
function scanImage(
  data: ArrayLike<number>,
  off: number,
  C: number,
  H: number,
  W: number,
  nchw: boolean,
  threshold: number,
  out: Float64Array,
  chan: Float64Array,
  ink: Float64Array,
): void {
  const HW = H * W;
  const per = C * HW;
  let s = 0;
  let s2 = 0;
  let bright = 0;
  let mx = 0;
  let my = 0;
  let mass = 0;
  if (C === 1) {
    // The common grey-scale case: one pass. Zero pixels (most of a digit or a mask) add nothing
    // to any sum, so they are skipped, unless the bright threshold is negative.
    const skipZeros = threshold >= 0;
    let p = off;
    for (let y = 0; y < H; y++) {
      let rs = 0;
      let rs2 = 0;
      let rowMass = 0;
      let rowX = 0;
      for (let x = 0; x < W; x++, p++) {
        const v = data[p]!;
        if (v === 0 && skipZeros) continue;
        rs += v;
        rs2 += v * v;
        if (v > threshold) bright++;
        if (v > 0) {
          rowMass += v;
          rowX += v * x;
        }
      }
      s += rs;
      s2 += rs2;
      mass += rowMass;
      mx += rowX;
      my += rowMass * y;
    }
    chan[0] = s / HW;
  } else {
    for (let c = 0; c < C; c++) {
      let cs = 0;
      for (let p = 0; p < HW; p++) {
        const v = data[nchw ? off + c * HW + p : off + p * C + c]!;
        cs += v;
        s2 += v * v;
        if (v > threshold) bright++;
        ink[p] = (c === 0 ? 0 : ink[p]!) + v;
      }
      chan[c] = cs / HW;
      s += cs;
    }
    for (let y = 0, p = 0; y < H; y++) {
      let rowMass = 0;
      for (let x = 0; x < W; x++, p++) {
        const v = ink[p]!;
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
  out[0] = m;
  out[1] = Math.sqrt(Math.max(0, s2 / per - m * m));
  out[2] = bright / per;
  out[3] = mass > 0 ? mx / mass / Math.max(1, W - 1) : 0.5;
  out[4] = mass > 0 ? my / mass / Math.max(1, H - 1) : 0.5;
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
  // Labels of class indices, made once (String(i) per row would allocate).
  const names: string[] = [];
  const label = (j: number): string => {
    const given = options.labels?.[j];
    if (given !== undefined) return given;
    while (names.length <= j) names.push(String(names.length));
    return names[j]!;
  };
  const read = (outputs: Tensors | undefined) => {
    const t = pick(outputs, output, 'output');
    const k = t.dims[t.dims.length - 1] ?? 1;
    return { data: t.data as ArrayLike<number | bigint>, k, rows: k > 0 ? t.data.length / k : 0 };
  };
  const argmax = (data: ArrayLike<number | bigint>, off: number, k: number): number => {
    let best = 0;
    let top = toNumber(data[off]!);
    for (let j = 1; j < k; j++) {
      const v = toNumber(data[off + j]!);
      if (v > top) {
        top = v;
        best = j;
      }
    }
    return best;
  };
  return {
    features: [{ name, kind: 'categorical' }],
    extract(_inputs, outputs) {
      const { data, k, rows } = read(outputs);
      const col: string[] = new Array(rows);
      for (let r = 0; r < rows; r++) col[r] = label(argmax(data, r * k, k));
      return { [name]: col };
    },
    each(_inputs, outputs, emit) {
      const { data, k, rows } = read(outputs);
      for (let r = 0; r < rows; r++) emit(0, label(argmax(data, r * k, k)));
    },
  };
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
  const softmax = options.softmax === true;
  const read = (outputs: Tensors | undefined) => {
    const t = pick(outputs, output, 'output');
    const k = t.dims[t.dims.length - 1] ?? 1;
    return { data: t.data as ArrayLike<number | bigint>, k, rows: k > 0 ? t.data.length / k : 0 };
  };
  const top = (data: ArrayLike<number | bigint>, off: number, k: number): number => {
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < k; j++) max = Math.max(max, toNumber(data[off + j]!));
    if (!softmax) return max;
    let z = 0;
    for (let j = 0; j < k; j++) z += Math.exp(toNumber(data[off + j]!) - max);
    return 1 / z;
  };
  return {
    features: [{ name, kind: 'numeric' }],
    extract(_inputs, outputs) {
      const { data, k, rows } = read(outputs);
      const col: number[] = new Array(rows);
      for (let r = 0; r < rows; r++) col[r] = top(data, r * k, k);
      return { [name]: col };
    },
    each(_inputs, outputs, emit) {
      const { data, k, rows } = read(outputs);
      for (let r = 0; r < rows; r++) emit(0, top(data, r * k, k));
    },
  };
}
