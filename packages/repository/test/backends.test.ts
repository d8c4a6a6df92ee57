/**
 * The other backends through the repository's default loaders: a TF.js layers model written to
 * disk as model.json + weights, and an ONNX model in a worker pool (@mlserve/workers, built dist).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mnistHoldout } from '@mlserve/test-utils';
import * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, it } from 'vitest';
import { loadRepository } from '../src/index.js';
import { addVersion, argmax, digit, tempRepo, writeConfig } from './helpers.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Saves a small dense model (x float32[-1,4] -> y float32[-1,2]) as model.json + weights.bin. */
async function writeTfjsModel(dir: string): Promise<tf.LayersModel> {
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [4], units: 2, kernelInitializer: 'ones', biasInitializer: 'zeros' }),
    ],
  });
  await mkdir(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      const weights = new Uint8Array(a.weightData as ArrayBuffer);
      await writeFile(join(dir, 'weights.bin'), weights);
      await writeFile(
        join(dir, 'model.json'),
        JSON.stringify({
          format: a.format,
          generatedBy: a.generatedBy,
          convertedBy: a.convertedBy,
          modelTopology: a.modelTopology,
          weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }],
        }),
      );
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return model;
}

describe('backends', () => {
  it('serves a TF.js model.json through @mlserve/backend-tfjs', async () => {
    const t = await tempRepo();
    cleanups.push(t.cleanup);
    const reference = await writeTfjsModel(join(t.dir, 'dense', '1'));
    await writeConfig(t.dir, 'dense', { backendOptions: { backend: 'cpu' }, warmup: { maxBatchSize: 4 } });
    const repo = await loadRepository(t.dir);
    cleanups.push(() => repo.close());
    expect(repo.versions()).toMatchObject([{ name: 'dense', version: '1', state: 'ready' }]);
    const meta = repo.registry.get('dense').metadata();
    expect(meta.name).toBe('dense');
    expect(meta.backend).toMatch(/tfjs/);
    const x = new Float32Array([1, 2, 3, 4, 0, 0, 0, 1]);
    const out = await repo.registry.infer('dense', undefined, {
      [meta.inputs[0]!.name]: { type: 'float32', dims: [2, 4], data: x },
    });
    const y = Object.values(out)[0]!;
    const want = (reference.predict(tf.tensor2d(x, [2, 4])) as tf.Tensor).dataSync();
    expect(Array.from(y.data as Float32Array)).toEqual(Array.from(want));
    expect(Array.from(y.data as Float32Array)).toEqual([10, 10, 1, 1]);
    reference.dispose();
  });

  it('runs a model in a worker pool when config.json says "workers"', async () => {
    const t = await tempRepo();
    cleanups.push(t.cleanup);
    await addVersion(t.dir, 'mnist', '1');
    await writeConfig(t.dir, 'mnist', {
      workers: { threads: 2, intraOpThreads: 1 },
      warmup: { maxBatchSize: 4 },
    });
    const repo = await loadRepository(t.dir);
    cleanups.push(() => repo.close());
    expect(repo.versions()).toMatchObject([{ name: 'mnist', state: 'ready' }]);
    expect(repo.registry.get('mnist').metadata()).toMatchObject({
      name: 'mnist',
      version: '1',
      concurrency: 2,
    });
    const outs = await Promise.all(
      [0, 1, 2, 3].map((i) => repo.registry.infer('mnist', undefined, digit(i))),
    );
    outs.forEach((o, i) => {
      expect(argmax(o.logits!.data as Float32Array)).toBe(mnistHoldout().labels[i]);
    });
  });
});
