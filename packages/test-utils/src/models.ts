import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The directory holding the project's copies of the test models (see models/README.md). */
export const MODELS_DIR = fileURLToPath(new URL('../models/', import.meta.url));

/** The bundled test models. */
export type TestModel =
  | 'mlp.onnx'
  | 'mnist-cnn.onnx'
  | 'mnist-noisy.onnx'
  | 'mnist-slow.onnx'
  | 'tiny-text.onnx'
  | 'mobilenetv2.onnx'
  | 'gru-cell.onnx';

/** Absolute path of a bundled test model. */
export function modelPath(name: TestModel): string {
  return `${MODELS_DIR}${name}`;
}

/**
 * A workerPool loader module (`{ module: STATEFUL_LOADER, export: 'loadAccumulator' }`): an
 * accumulator `statefulModel` whose state lives in the worker, answering `total` and `worker` (the
 * worker's id), so tests see that a sequence stays on one worker.
 */
export const STATEFUL_LOADER = fileURLToPath(new URL('../fixtures/stateful-loader.mjs', import.meta.url));

/** The 200 held-out MNIST digits: images as float32 [200,1,28,28] in [0,1], and their labels. */
export interface MnistHoldout {
  count: number;
  images: Float32Array;
  labels: number[];
  /** One digit as a [1,1,28,28] float32 array. */
  image(i: number): Float32Array;
}

let holdout: MnistHoldout | undefined;

/** Loads (once) the held-out MNIST digits. */
export function mnistHoldout(): MnistHoldout {
  if (holdout) return holdout;
  const raw = JSON.parse(readFileSync(`${MODELS_DIR}mnist-holdout.json`, 'utf8')) as {
    shape: number[];
    images: number[];
    labels: number[];
  };
  const images = Float32Array.from(raw.images);
  const count = raw.labels.length;
  holdout = {
    count,
    images,
    labels: raw.labels,
    image: (i) => images.slice(i * 784, (i + 1) * 784),
  };
  return holdout;
}
