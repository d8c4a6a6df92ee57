import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Model, Tensor } from '@mlserve/core';
import * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, test } from 'vitest';
import { loadTfjsModel } from '../src/index.js';
import { artifactsOf, fakeTfjsNode, loaderWith, removeFakeTfjsNode } from './helpers.js';

const NODE_PKGS = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

async function denseArtifacts(): Promise<tf.io.ModelArtifacts> {
  const m = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [3], units: 2, kernelInitializer: 'ones', biasInitializer: 'zeros' }),
    ],
  });
  const a = await artifactsOf(m, tf);
  m.dispose();
  return a;
}

const x: Tensor = { type: 'float32', dims: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) };

async function out(model: Model): Promise<number[]> {
  const r = await model.infer({ [model.metadata().inputs[0]?.name as string]: x });
  return Array.from(Object.values(r)[0]?.data as Float32Array);
}

afterEach(async () => {
  removeFakeTfjsNode(tf);
  await tf.setBackend('cpu');
});

describe('backend detection', () => {
  test('auto prefers tfjs-node-gpu, then tfjs-node (stand-in modules)', async () => {
    const a = await denseArtifacts();
    const both = await loadTfjsModel(a, {
      loader: loaderWith({
        '@tensorflow/tfjs-node-gpu': () => fakeTfjsNode(tf),
        '@tensorflow/tfjs-node': () => fakeTfjsNode(tf),
      }),
    });
    expect(both.metadata().backend).toBe('tfjs/tensorflow');
    expect(both.metadata().extra?.backendPackage).toBe('@tensorflow/tfjs-node-gpu');
    expect(await out(both)).toEqual([6, 6, 15, 15]);
    expect(tf.getBackend()).toBe('tensorflow');
    await both.dispose();

    const nodeOnly = await loadTfjsModel(a, {
      loader: loaderWith({ '@tensorflow/tfjs-node': () => fakeTfjsNode(tf) }, ['@tensorflow/tfjs-node-gpu']),
    });
    expect(nodeOnly.metadata().extra?.backendPackage).toBe('@tensorflow/tfjs-node');
    expect(nodeOnly.metadata().backend).toBe('tfjs/tensorflow');
    await nodeOnly.dispose();
  });

  test('auto falls back to wasm without tfjs-node, and the model really runs on wasm', async () => {
    const model = await loadTfjsModel(await denseArtifacts(), { loader: loaderWith({}, NODE_PKGS) });
    expect(model.metadata().backend).toBe('tfjs/wasm');
    expect(model.metadata().extra?.backendPackage).toBe('@tensorflow/tfjs-backend-wasm');
    await tf.setBackend('cpu');
    expect(await out(model)).toEqual([6, 6, 15, 15]);
    // The model switched the engine back to wasm to run, and the wasm backend is the real one.
    expect(tf.getBackend()).toBe('wasm');
    expect(tf.backend().constructor.name).toBe('BackendWasm');
    await model.dispose();
  });

  test('auto falls back to cpu when wasm is not installed either', async () => {
    const model = await loadTfjsModel(await denseArtifacts(), {
      loader: loaderWith({}, [...NODE_PKGS, '@tensorflow/tfjs-backend-wasm']),
    });
    expect(model.metadata().backend).toBe('tfjs/cpu');
    expect(await out(model)).toEqual([6, 6, 15, 15]);
    await model.dispose();
  });

  test('a requested backend that is missing is UNAVAILABLE and names the package', async () => {
    const a = await denseArtifacts();
    await expect(
      loadTfjsModel(a, { backend: 'tensorflow', loader: loaderWith({}, NODE_PKGS) }),
    ).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining(
        'run `npm install @tensorflow/tfjs-node-gpu or npm install @tensorflow/tfjs-node`',
      ),
    });
    await expect(
      loadTfjsModel(a, { backend: 'wasm', loader: loaderWith({}, ['@tensorflow/tfjs-backend-wasm']) }),
    ).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining('@tensorflow/tfjs-backend-wasm'),
    });
    // The real loader: tfjs-node and webgpu are not installed here.
    await expect(loadTfjsModel(a, { backend: 'tensorflow' })).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(loadTfjsModel(a, { backend: 'webgpu' })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: expect.stringContaining('@tensorflow/tfjs-backend-webgpu'),
    });
    await expect(loadTfjsModel(a, { backend: 'no-such-backend' })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
    expect(tf.memory().numTensors).toBe(0);
  });

  test('models on different backends run interleaved with correct results', async () => {
    const a = await denseArtifacts();
    const onCpu = await loadTfjsModel(a, { backend: 'cpu', name: 'c' });
    const onWasm = await loadTfjsModel(a, { backend: 'wasm', name: 'w' });
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => out(i % 2 ? onCpu : onWasm)));
    for (const r of results) expect(r).toEqual([6, 6, 15, 15]);
    expect(onCpu.metadata().backend).toBe('tfjs/cpu');
    expect(onWasm.metadata().backend).toBe('tfjs/wasm');
    await onCpu.dispose();
    await onWasm.dispose();
    expect(tf.memory().numTensors).toBe(0);
  });
});

describe('SavedModel (stand-in tfjs-node API)', () => {
  function savedModelDir(): string {
    const dir = mkdtempSync(join(tmpdir(), 'savedmodel-'));
    writeFileSync(join(dir, 'saved_model.pb'), '');
    return dir;
  }
  const sig = (scale: number) => ({
    inputs: { x: { name: 'serving_x:0', dtype: 'float32' as const, shape: [-1, 2] } },
    outputs: { y: { name: 'StatefulPartitionedCall:0', dtype: 'float32' as const, shape: [-1, 2] }, scale },
  });
  const loaded: { path: string; tags: string[]; signature: string }[] = [];
  const node = {
    getMetaGraphsFromSavedModel: async () => [
      {
        tags: ['serve'],
        signatureDefs: {
          serving_default: { inputs: sig(2).inputs, outputs: { y: sig(2).outputs.y } },
          triple: { inputs: sig(3).inputs, outputs: { y: sig(3).outputs.y } },
        },
      },
    ],
    loadSavedModel: async (path: string, tags: string[], signature: string) => {
      loaded.push({ path, tags, signature });
      const k = signature === 'triple' ? 3 : 2;
      return { predict: (m: tf.NamedTensorMap) => ({ y: tf.mul(m.x as tf.Tensor, k) }), dispose() {} };
    },
  };
  const loader = loaderWith({ '@tensorflow/tfjs-node': () => fakeTfjsNode(tf, node) }, [
    '@tensorflow/tfjs-node-gpu',
  ]);
  const input: Tensor = { type: 'float32', dims: [1, 2], data: new Float32Array([1, 2]) };

  test('loads the selected signature through tf.node.loadSavedModel', async () => {
    const dir = savedModelDir();
    const def = await loadTfjsModel(dir, { loader });
    expect(def.metadata().platform).toBe('tensorflow_savedmodel');
    expect(def.metadata().inputs).toEqual([{ name: 'x', type: 'float32', dims: [-1, 2], batched: true }]);
    expect(Array.from((await def.infer({ x: input })).y?.data as Float32Array)).toEqual([2, 4]);
    const triple = await loadTfjsModel(dir, { loader, signature: 'triple', tags: ['serve'] });
    expect(Array.from((await triple.infer({ x: input })).y?.data as Float32Array)).toEqual([3, 6]);
    expect(loaded.at(-1)).toEqual({ path: dir, tags: ['serve'], signature: 'triple' });
    await def.dispose();
    await triple.dispose();
  });

  test('an unknown signature or tag set is NOT_FOUND and lists what exists', async () => {
    const dir = savedModelDir();
    await expect(loadTfjsModel(dir, { loader, signature: 'nope' })).rejects.toMatchObject({
      code: 'NOT_FOUND',
      message: expect.stringContaining('serving_default, triple'),
    });
    await expect(loadTfjsModel(dir, { loader, tags: ['train'] })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });

  test('without tfjs-node a SavedModel is UNAVAILABLE and says what to install', async () => {
    await expect(loadTfjsModel(savedModelDir(), { loader: loaderWith({}, NODE_PKGS) })).rejects.toMatchObject(
      {
        code: 'UNAVAILABLE',
        message: expect.stringContaining('@tensorflow/tfjs-node'),
      },
    );
  });
});
