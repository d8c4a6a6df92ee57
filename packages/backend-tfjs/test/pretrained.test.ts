import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Model, Tensor } from '@mlserve/core';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { loadTfjsModel } from '../src/index.js';
import { nsfwArtifacts, nsfwModelDir } from './helpers.js';

// nsfwjs (a dev dependency) ships trained MobileNetV2 classifiers (5 classes: drawing, hentai,
// neutral, porn, sexy) as a TF.js graph model (mobilenet_v2_mid) and a layers model (mobilenet_v2).

/** A deterministic image-shaped input: a smooth colour gradient, pixels in [0,1], NHWC. */
function image(batch = 1, seed = 0): Tensor {
  const data = new Float32Array(batch * 224 * 224 * 3);
  for (let b = 0; b < batch; b++) {
    for (let y = 0; y < 224; y++) {
      for (let x = 0; x < 224; x++) {
        const i = ((b * 224 + y) * 224 + x) * 3;
        data[i] = ((x + seed * 37 + b * 11) % 224) / 223;
        data[i + 1] = ((y + seed * 53) % 224) / 223;
        data[i + 2] = ((x + y + b * 29) % 448) / 447;
      }
    }
  }
  return { type: 'float32', dims: [batch, 224, 224, 3], data };
}

function expectProbabilities(t: Tensor | undefined, rows: number): number[][] {
  expect(t?.type).toBe('float32');
  expect(t?.dims).toEqual([rows, 5]);
  const data = t?.data as Float32Array;
  const out: number[][] = [];
  for (let r = 0; r < rows; r++) {
    const row = Array.from(data.subarray(r * 5, r * 5 + 5));
    for (const p of row) expect(p).toBeGreaterThanOrEqual(0);
    expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 4);
    out.push(row);
  }
  return out;
}

describe('nsfwjs MobileNetV2 graph model', () => {
  let dir: string;
  let model: Model;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    dir = nsfwModelDir('mobilenet_v2_mid');
    model = await loadTfjsModel(dir, { backend: 'wasm', name: 'nsfw' });
    server = createServer((req, res) => {
      const name = (req.url ?? '/').replace(/^\/models\//, '');
      if (name.includes('/') || name.includes('..')) {
        res.writeHead(404).end();
        return;
      }
      readFile(join(dir, name)).then(
        (body) => res.writeHead(200).end(body),
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/models`;
  });

  afterAll(async () => {
    await model.dispose();
    await new Promise((r) => server.close(r));
  });

  test('metadata from the graph signature, on wasm', () => {
    const m = model.metadata();
    expect(m.platform).toBe('tfjs_graph_model');
    expect(m.backend).toBe('tfjs/wasm');
    expect(m.inputs).toEqual([{ name: 'input', type: 'float32', dims: [-1, 224, 224, 3], batched: true }]);
    expect(m.outputs).toEqual([{ name: 'Identity', type: 'float32', dims: [-1, 5], batched: true }]);
  });

  test('classifies an image: 5 probabilities that sum to 1; a batch matches single rows', async () => {
    const one = expectProbabilities((await model.infer({ input: image(1, 0) })).Identity, 1);
    const two = expectProbabilities((await model.infer({ input: image(2, 0) })).Identity, 2);
    for (let c = 0; c < 5; c++) expect(two[0]?.[c]).toBeCloseTo(one[0]?.[c] as number, 4);
    expect(two[1]).not.toEqual(two[0]);
  });

  test('the same model over HTTP (tf.io.http on loopback) gives the same answer; 404 is NOT_FOUND', async () => {
    const remote = await loadTfjsModel(`${base}/model.json`, { backend: 'wasm' });
    const a = (await remote.infer({ input: image(1, 3) })).Identity?.data as Float32Array;
    const b = (await model.infer({ input: image(1, 3) })).Identity?.data as Float32Array;
    for (let i = 0; i < 5; i++) expect(a[i]).toBeCloseTo(b[i] as number, 5);
    await remote.dispose();
    await expect(loadTfjsModel(`${base}/missing.json`, { backend: 'wasm' })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
  });
});

test('nsfwjs MobileNetV2 layers model from in-memory artifacts', async () => {
  const { json, shards } = nsfwArtifacts('mobilenet_v2');
  const weights = tf.io.CompositeArrayBuffer.join(shards.map((s) => s.bytes.slice().buffer as ArrayBuffer));
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: weights,
  };
  const model = await loadTfjsModel(artifacts, { backend: 'wasm' });
  const m = model.metadata();
  expect(m.platform).toBe('tfjs_layers_model');
  expect(m.inputs).toEqual([{ name: 'input_1', type: 'float32', dims: [-1, 224, 224, 3], batched: true }]);
  expect(m.outputs[0]?.dims).toEqual([-1, 5]);
  const out = await model.infer({ input_1: image(1, 1) });
  expectProbabilities(out[m.outputs[0]?.name as string], 1);
  await model.dispose();
});
