/**
 * Turns a drawing into what the MNIST model reads, the way MNIST itself was made: the ink's bounding
 * box is scaled (area-averaged, aspect ratio kept) to fit 20x20, then placed on a 28x28 field so that
 * its centre of mass lands on the centre, and the values are scaled to [0, 1] (1 = the darkest ink).
 *
 * One module, used by both paths: the page runs it once and hands the same 784 floats to the model in
 * the browser and to the server, so the two answers can only differ by the runtime, never by the
 * pre-processing. It imports nothing, so it runs in a browser, in Node and in a worker alike.
 */

/** A grey-scale picture: `width * height` ink values, row-major, 0 = no ink (any scale, e.g. 0-255). */
export interface InkImage {
  width: number;
  height: number;
  data: ArrayLike<number>;
}

/** The MNIST field: 28x28 pixels, the digit fitted into 20x20 in the middle. */
export const SIZE = 28;
const BOX = 20;

/** Ink values at or below this fraction of the darkest pixel count as paper when finding the digit. */
const PAPER = 0.05;

/**
 * Reads the ink out of canvas pixels (RGBA) of strokes drawn on a transparent canvas: the alpha
 * channel, which anti-aliasing makes a smooth 0-255 coverage, whatever the ink's colour.
 *
 * @example
 * ```ts
 * const { data, width, height } = ctx.getImageData(0, 0, canvas.width, canvas.height);
 * const ink = inkFromRgba(data, width, height);
 * ```
 */
export function inkFromRgba(rgba: ArrayLike<number>, width: number, height: number): InkImage {
  const data = new Float32Array(width * height);
  for (let i = 0; i < data.length; i++) data[i] = rgba[i * 4 + 3] ?? 0;
  return { width, height, data };
}

/**
 * The ink's bounding box `[x0, y0, x1, y1)` and its darkest value, or undefined when there is none.
 *
 * @example
 * ```ts
 * inkBounds({ width: 3, height: 1, data: [0, 9, 0] }); // { x0: 1, y0: 0, x1: 2, y1: 1, max: 9 }
 * ```
 */
export function inkBounds(
  image: InkImage,
): { x0: number; y0: number; x1: number; y1: number; max: number } | undefined {
  const { width, height, data } = image;
  let max = 0;
  for (let i = 0; i < width * height; i++) max = Math.max(max, data[i] ?? 0);
  if (!(max > 0)) return undefined;
  const cut = max * PAPER;
  let x0 = width;
  let y0 = height;
  let x1 = 0;
  let y1 = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if ((data[y * width + x] ?? 0) <= cut) continue;
      if (x < x0) x0 = x;
      if (x >= x1) x1 = x + 1;
      if (y < y0) y0 = y;
      if (y >= y1) y1 = y + 1;
    }
  }
  return x1 > x0 ? { x0, y0, x1, y1, max } : undefined;
}

/**
 * Area-averaging weights along one axis: how much of source pixels `from .. from+length` falls into
 * each of `out` target pixels. Returns, per target pixel, [first source index, weights...].
 */
function axisWeights(from: number, length: number, out: number): Array<{ start: number; weights: number[] }> {
  const scale = length / out;
  const result: Array<{ start: number; weights: number[] }> = [];
  for (let t = 0; t < out; t++) {
    const a = from + t * scale;
    const b = a + scale;
    const start = Math.floor(a);
    const weights: number[] = [];
    for (let s = start; s < b; s++) weights.push((Math.min(b, s + 1) - Math.max(a, s)) / scale);
    result.push({ start, weights });
  }
  return result;
}

/**
 * The MNIST input for a drawing: float32 `[1, 1, 28, 28]` data in [0, 1], or undefined for a blank
 * drawing (nothing to classify).
 *
 * @example
 * ```ts
 * const { data, width, height } = ctx.getImageData(0, 0, canvas.width, canvas.height);
 * const pixels = toMnist(inkFromRgba(data, width, height));
 * if (pixels) await model.infer({ image: { type: 'float32', dims: [1, 1, 28, 28], data: pixels } });
 * ```
 */
export function toMnist(image: InkImage): Float32Array | undefined {
  const box = inkBounds(image);
  if (!box) return undefined;
  const { width, data } = image;
  const bw = box.x1 - box.x0;
  const bh = box.y1 - box.y0;
  // The longer side becomes 20 px; the other keeps the aspect ratio (a "1" stays thin).
  const k = BOX / Math.max(bw, bh);
  const w = Math.max(1, Math.round(bw * k));
  const h = Math.max(1, Math.round(bh * k));
  const xs = axisWeights(box.x0, bw, w);
  const ys = axisWeights(box.y0, bh, h);
  const small = new Float32Array(w * h);
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let ty = 0; ty < h; ty++) {
    const wy = ys[ty]!;
    for (let tx = 0; tx < w; tx++) {
      const wx = xs[tx]!;
      let v = 0;
      for (let j = 0; j < wy.weights.length; j++) {
        const row = (wy.start + j) * width;
        let line = 0;
        for (let i = 0; i < wx.weights.length; i++) line += (data[row + wx.start + i] ?? 0) * wx.weights[i]!;
        v += line * wy.weights[j]!;
      }
      small[ty * w + tx] = v;
      mass += v;
      mx += v * (tx + 0.5);
      my += v * (ty + 0.5);
    }
  }
  // Shift so the centre of mass sits on the field's centre, keeping the digit inside the field.
  const left = clamp(Math.round(SIZE / 2 - mx / mass), 0, SIZE - w);
  const top = clamp(Math.round(SIZE / 2 - my / mass), 0, SIZE - h);
  let peak = 0;
  for (let i = 0; i < small.length; i++) peak = Math.max(peak, small[i]!);
  const out = new Float32Array(SIZE * SIZE);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) out[(top + y) * SIZE + left + x] = Math.min(1, small[y * w + x]! / peak);
  }
  return out;
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

/**
 * Softmax of logits: the probabilities the page draws as bars.
 *
 * @example
 * ```ts
 * softmax([0, 0]); // [0.5, 0.5]
 * ```
 */
export function softmax(logits: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const exps = Array.from({ length: logits.length }, (_, i) => Math.exp(logits[i]! - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/**
 * Index of the largest value: the predicted digit.
 *
 * @example
 * ```ts
 * argmax([0.1, 0.7, 0.2]); // 1
 * ```
 */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}
