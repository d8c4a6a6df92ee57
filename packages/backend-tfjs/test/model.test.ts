import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InferContext, Model, Tensor } from '@mlserve/core';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { fileSystemHandler, loadTfjsModel } from '../src/index.js';
import { artifactsOf, matmulArtifacts, STRING_GRAPH, WHERE_GRAPH, writeModelDir } from './helpers.js';

let dense: Model;
let embed: Model;
let denseArtifacts: tf.io.ModelArtifacts;

beforeAll(async () => {
  await tf.setBackend('cpu');
  const d = tf.sequential({
    layers: [
      tf.layers.dense({
        inputShape: [3],
        units: 2,
        kernelInitializer: 'ones',
        biasInitializer: 'zeros',
        name: 'out',
      }),
    ],
  });
  denseArtifacts = await artifactsOf(d, tf);
  d.dispose();
  const ids = tf.input({ shape: [4], dtype: 'int32', name: 'ids' });
  const emb = tf.layers.embedding({ inputDim: 10, outputDim: 1, embeddingsInitializer: 'ones' }).apply(ids);
  const sum = tf.layers.flatten().apply(emb) as tf.SymbolicTensor;
  const e = tf.model({ inputs: ids, outputs: sum });
  const eArtifacts = await artifactsOf(e, tf);
  e.dispose();
  dense = await loadTfjsModel(denseArtifacts, { backend: 'cpu', name: 'dense' });
  embed = await loadTfjsModel(eArtifacts, { backend: 'cpu', name: 'embed' });
});

afterAll(async () => {
  await dense.dispose();
  await embed.dispose();
});

const f32 = (dims: number[], values: number[]): Tensor => ({
  type: 'float32',
  dims,
  data: new Float32Array(values),
});
const denseIn = () => dense.metadata().inputs[0]?.name as string;

describe('metadata', () => {
  test('layers model: names, dtypes, dynamic batch dim, backend', () => {
    const m = dense.metadata();
    expect(m).toMatchObject({
      name: 'dense',
      version: '1',
      platform: 'tfjs_layers_model',
      backend: 'tfjs/cpu',
    });
    expect(m.inputs).toEqual([{ name: denseIn(), type: 'float32', dims: [-1, 3], batched: true }]);
    expect(m.outputs).toEqual([{ name: 'out', type: 'float32', dims: [-1, 2], batched: true }]);
    expect(m.maxBatchSize).toBe(2 ** 31 - 1);
    expect(embed.metadata().inputs[0]).toMatchObject({ name: 'ids', type: 'int32', dims: [-1, 4] });
  });

  test('graph model with a dynamic op: outputs probed, not batchable, runs via executeAsync', async () => {
    const model = await loadTfjsModel(writeModelDir(WHERE_GRAPH), { backend: 'cpu' });
    const m = model.metadata();
    expect(m.outputs).toEqual([
      { name: 'flags', type: 'bool', dims: [-1], batched: true },
      { name: 'nonzero', type: 'int32', dims: [-1, 1], batched: false },
    ]);
    expect(m.maxBatchSize).toBe(0);
    const r = await model.infer({ x: f32([4], [0, 2, 0, 3]) });
    expect(r.flags).toEqual({ type: 'bool', dims: [4], data: new Uint8Array([0, 1, 0, 1]) });
    expect(r.nonzero).toEqual({ type: 'int32', dims: [2, 1], data: new Int32Array([1, 3]) });
    await model.dispose();
  });
});

describe('types', () => {
  test('float32 in, float32 out; output data is a fresh, exact-size copy', async () => {
    const r = await dense.infer({ [denseIn()]: f32([2, 3], [1, 2, 3, 4, 5, 6]) });
    expect(r.out?.dims).toEqual([2, 2]);
    const data = r.out?.data as Float32Array;
    expect(Array.from(data)).toEqual([6, 6, 15, 15]);
    expect(data.buffer.byteLength).toBe(16);
  });

  test('float64 converts to float32 with a range check', async () => {
    const ok = await dense.infer({
      [denseIn()]: { type: 'float64', dims: [1, 3], data: new Float64Array([1, 2, 3]) },
    });
    expect(Array.from(ok.out?.data as Float32Array)).toEqual([6, 6]);
    await expect(
      dense.infer({ [denseIn()]: { type: 'float64', dims: [1, 3], data: new Float64Array([1, 1e39, 3]) } }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('does not fit float32'),
    });
  });

  test('int64 converts to int32 only when every value fits; never wraps', async () => {
    const want = await embed.infer({
      ids: { type: 'int32', dims: [1, 4], data: new Int32Array([1, 2, 3, 4]) },
    });
    const got = await embed.infer({
      ids: { type: 'int64', dims: [1, 4], data: new BigInt64Array([1n, 2n, 3n, 4n]) },
    });
    expect(got).toEqual(want);
    await expect(
      embed.infer({
        ids: { type: 'int64', dims: [1, 4], data: new BigInt64Array([1n, 2n ** 32n + 1n, 3n, 4n]) },
      }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('does not fit int32'),
    });
    await expect(
      embed.infer({ ids: { type: 'int64', dims: [1, 4], data: new BigInt64Array([1n, 2n ** 60n, 3n, 4n]) } }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(
      embed.infer({ ids: { type: 'float64', dims: [1, 4], data: new Float64Array([1, 2.5, 3, 4]) } }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const u8 = await embed.infer({
      ids: { type: 'uint8', dims: [1, 4], data: new Uint8Array([1, 2, 3, 4]) },
    });
    expect(u8).toEqual(want);
  });

  test('strings in and out', async () => {
    const model = await loadTfjsModel(writeModelDir(STRING_GRAPH), { backend: 'cpu' });
    expect(model.metadata().inputs[0]).toMatchObject({ name: 's', type: 'string' });
    const r = await model.infer({ s: { type: 'string', dims: [2], data: ['héllo', 'wörld'] } });
    expect(r.out).toEqual({ type: 'string', dims: [2], data: ['héllo', 'wörld'] });
    await expect(model.infer({ s: f32([1], [1]) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await model.dispose();
  });

  test('a string for a numeric input is refused', async () => {
    await expect(
      dense.infer({ [denseIn()]: { type: 'string', dims: [1, 3], data: ['a', 'b', 'c'] } }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('requests', () => {
  test('bad requests are INVALID_ARGUMENT with a message that says what is wrong', async () => {
    const n = denseIn();
    const cases: [unknown, string][] = [
      [{}, 'missing input'],
      [{ [n]: f32([1, 3], [1, 2, 3]), extra: f32([1], [1]) }, 'unknown input "extra"'],
      [{ [n]: f32([1, 4], [1, 2, 3, 4]) }, 'expected float32[-1,3], got float32[1,4]'],
      [{ [n]: f32([3], [1, 2, 3]) }, 'expected float32[-1,3]'],
      [{ [n]: { type: 'float32', dims: [2, 3], data: new Float32Array(3) } }, 'do not fill'],
      [{ [n]: { type: 'float32', dims: [-1, 3], data: new Float32Array(3) } }, 'bad dims'],
      [{ [n]: 42 }, 'is not a tensor'],
      [null, 'inputs must be an object'],
    ];
    for (const [inputs, msg] of cases) {
      await expect(dense.infer(inputs as never)).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: expect.stringContaining(msg),
      });
    }
    await expect(dense.infer({ [n]: f32([1, 3], [1, 2, 3]) }, { outputs: ['nope'] })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: expect.stringContaining('unknown output "nope"'),
    });
  });

  test('a shape error inside the graph is INVALID_ARGUMENT', async () => {
    const model = await loadTfjsModel(matmulArtifacts(), { backend: 'cpu' });
    const ok = await model.infer({ x: f32([1, 3], [1, 1, 1]) });
    expect(Array.from(ok.y?.data as Float32Array)).toEqual([9, 12]);
    await expect(model.infer({ x: f32([1, 2], [1, 1]) })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await model.dispose();
  });

  test('cancelled and expired requests do not run; context says backend and compute time', async () => {
    const n = denseIn();
    const ac = new AbortController();
    ac.abort();
    await expect(dense.infer({ [n]: f32([1, 3], [1, 2, 3]) }, { signal: ac.signal })).rejects.toMatchObject({
      code: 'CANCELLED',
    });
    await expect(
      dense.infer({ [n]: f32([1, 3], [1, 2, 3]) }, { deadline: Date.now() - 1 }),
    ).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    const context: InferContext = {};
    await dense.infer({ [n]: f32([1, 3], [1, 2, 3]) }, { context });
    expect(context.backend).toBe('tfjs/cpu');
    expect(context.computeMs).toBeGreaterThanOrEqual(0);
    const stats = dense.stats?.()['backend-tfjs'] as { inferences: number; failures: number };
    expect(stats.inferences).toBeGreaterThan(0);
    expect(stats.failures).toBeGreaterThan(0);
  });

  test('dispose is idempotent; later infers are UNAVAILABLE', async () => {
    const model = await loadTfjsModel(denseArtifacts, { backend: 'cpu' });
    const before = tf.memory().numTensors;
    await Promise.all([model.dispose(), model.dispose()]);
    expect(tf.memory().numTensors).toBeLessThan(before);
    expect(model.isReady?.()).toBe(false);
    await expect(model.infer({ [denseIn()]: f32([1, 3], [1, 2, 3]) })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });
});

describe('sources', () => {
  test('fileSystemHandler saves and loadTfjsModel loads the same model from disk (dir, file, file://)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tfjs-save-'));
    const m = await tf.loadLayersModel(tf.io.fromMemory(denseArtifacts));
    await m.save(fileSystemHandler(dir, tf.io));
    m.dispose();
    const json = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8'));
    expect(json.weightsManifest[0].paths).toEqual(['weights.bin']);
    for (const src of [dir, join(dir, 'model.json'), new URL(`file://${dir}/model.json`)]) {
      const model = await loadTfjsModel(src, { backend: 'cpu' });
      const r = await model.infer({ [model.metadata().inputs[0]?.name as string]: f32([1, 3], [1, 2, 3]) });
      expect(Array.from(Object.values(r)[0]?.data as Float32Array)).toEqual([6, 6]);
      await model.dispose();
    }
  });

  test('missing or broken files fail with a code', async () => {
    await expect(loadTfjsModel('/nonexistent/model')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(loadTfjsModel(mkdtempSync(join(tmpdir(), 'empty-')))).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    const bad = mkdtempSync(join(tmpdir(), 'bad-'));
    writeFileSync(join(bad, 'model.json'), '{not json');
    await expect(loadTfjsModel(bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    writeFileSync(join(bad, 'model.json'), '{"foo": 1}');
    await expect(loadTfjsModel(bad)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const noShard = writeModelDir({
      ...matmulArtifacts(),
      weightData: undefined,
      weightsManifest: [{ paths: ['gone.bin'], weights: [{ name: 'w', shape: [3, 2], dtype: 'float32' }] }],
    });
    await expect(loadTfjsModel(noShard)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const outside = writeModelDir({
      ...matmulArtifacts(),
      weightData: undefined,
      weightsManifest: [{ paths: ['../../etc/passwd'], weights: [] }],
    });
    await expect(loadTfjsModel(outside)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(loadTfjsModel('ftp://example.com/model.json')).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(loadTfjsModel('')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(loadTfjsModel(denseArtifacts, { format: 'onnx' as never })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    await expect(loadTfjsModel({ foo: 1 } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});
