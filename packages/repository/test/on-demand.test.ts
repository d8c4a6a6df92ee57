/**
 * Models on demand under a memory budget, from the start: with the default loader (real
 * onnxruntime-node), a repository under a budget loads nothing at start. Each version is served
 * with the metadata of its ONNX file's header (or config.json's `inputs`/`outputs`), its first
 * request loads it, and the least recently used idle versions are unloaded to make room as before.
 */
import { copyFile } from 'node:fs/promises';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import type { Tensors } from '@mlserve/core';
import { mlservePlugin } from '@mlserve/http';
import { mnistHoldout, modelPath, rejection, type TestModel } from '@mlserve/test-utils';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { parseModelConfig } from '../src/config.js';
import { loadRepository, type RepositoryOptions, type VersionEvent } from '../src/index.js';
import { addVersion, argmax, digit, sleep, tempRepo, writeConfig } from './helpers.js';
import { onnxLoader } from './loader.js';

const MiB = 2 ** 20;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup() {
  const t = await tempRepo();
  cleanups.push(t.cleanup);
  return t.dir;
}

/** The default loader (no `loaders`): what `mlserve serve` uses. */
async function open(dir: string, options: RepositoryOptions = {}) {
  const repo = await loadRepository(dir, {
    modelMemoryBudget: '2GiB',
    intraOpThreads: 1,
    workers: 0,
    warmup: false,
    ...options,
  });
  cleanups.push(() => repo.close());
  const events: VersionEvent[] = [];
  repo.on('version', (e) => events.push(e));
  return { repo, events };
}

async function until(what: string, cond: () => boolean, ms = 30_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function features(seed: number): Tensors {
  const data = new Float32Array(16);
  for (let i = 0; i < 16; i++) data[i] = Math.sin(seed * 16 + i);
  return { features: { type: 'float32', dims: [1, 16], data } };
}

const resident = (repo: Awaited<ReturnType<typeof open>>['repo']) =>
  repo
    .memory()!
    .versions.filter((v) => v.resident)
    .map((v) => v.name)
    .sort();

const shipped: Record<string, TestModel> = {
  mnist: 'mnist-cnn.onnx',
  mlp: 'mlp.onnx',
  text: 'tiny-text.onnx',
  mobilenet: 'mobilenetv2.onnx',
  gru: 'gru-cell.onnx',
};

describe('start-up under a budget', () => {
  it('loads nothing: metadata from the ONNX header equals the session, the index answers, the first request loads', async () => {
    const dir = await setup();
    for (const [name, file] of Object.entries(shipped)) await addVersion(dir, name, '1', file);
    const { repo, events } = await open(dir);
    let m = repo.memory()!;
    expect(m.loads).toBe(0);
    expect(m.used).toBe(0);
    expect(m.versions.every((v) => !v.resident && !v.measured && v.bytes > 0)).toBe(true);
    expect(repo.registry.list().every((s) => s.state === 'ready' && s.ready)).toBe(true);
    expect(events.some((e) => e.phase === 'coldStart')).toBe(false);
    // The metadata served before any load is the session's, for every shipped model.
    for (const [name, file] of Object.entries(shipped)) {
      const served = repo.registry.get(name).metadata();
      const session = await loadOnnxModel(modelPath(file), { name, intraOpNumThreads: 1 });
      try {
        const real = session.metadata();
        expect(served.inputs, name).toEqual(real.inputs);
        expect(served.outputs, name).toEqual(real.outputs);
        expect(served.maxBatchSize, name).toBe(real.maxBatchSize);
        expect(served.platform).toBe(real.platform);
      } finally {
        await session.dispose();
      }
    }
    expect(repo.memory()!.loads).toBe(0);

    // Over HTTP: metadata and the index answer without loading.
    const app = Fastify();
    await app.register(mlservePlugin, { registry: repo.registry, management: repo.management() });
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => app.close());
    const { port } = app.server.address() as { port: number };
    const url = `http://127.0.0.1:${port}`;
    const meta = (await (await fetch(`${url}/v2/models/mnist`)).json()) as {
      inputs: { name: string; shape: number[] }[];
    };
    expect(meta.inputs).toEqual([{ name: 'image', datatype: 'FP32', shape: [-1, 1, 28, 28] }]);
    const index = (await (await fetch(`${url}/v2/repository/index`, { method: 'POST' })).json()) as {
      name: string;
      reason: string;
    }[];
    expect(index.map((r) => r.name).sort()).toEqual(Object.keys(shipped).sort());
    expect(
      index.every((r) => /loads on its next request \(about [\d.]+ MiB, estimated\)/.test(r.reason)),
    ).toBe(true);
    // A request the header's metadata refuses never loads the model.
    const bad = await fetch(`${url}/v2/models/mnist/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }),
    });
    expect(bad.status).toBe(400);
    expect(repo.memory()!.loads).toBe(0);

    // The first request loads the model (one cold start) and is answered.
    const res = await fetch(`${url}/v2/models/mnist/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        inputs: [
          {
            name: 'image',
            datatype: 'FP32',
            shape: [1, 1, 28, 28],
            data: Array.from(mnistHoldout().image(0)),
          },
        ],
      }),
    });
    expect(res.status).toBe(200);
    const out = (await res.json()) as { outputs: { name: string; data: number[] }[] };
    expect(argmax(out.outputs[0]!.data)).toBe(mnistHoldout().labels[0]);
    m = repo.memory()!;
    expect(m.loads).toBe(1);
    expect(m.coldStarts).toBe(1);
    const mnist = m.versions.find((v) => v.name === 'mnist')!;
    expect(mnist).toMatchObject({ resident: true, measured: true, loads: 1 });
    expect(events.filter((e) => e.phase === 'coldStart').map((e) => e.name)).toEqual(['mnist']);
    // Loaded, it serves the session's own metadata (the same inputs and outputs).
    const loadedMeta = repo.registry.get('mnist').metadata();
    expect(loadedMeta.backend).toMatch(/^onnxruntime-node\//);
    expect(loadedMeta.inputs[0]!.dims).toEqual([-1, 1, 28, 28]);
  });

  it('twenty models under a budget for five: none loaded at start, then LRU as before', async () => {
    const dir = await setup();
    const names = Array.from({ length: 20 }, (_, i) => `m${String(i).padStart(2, '0')}`);
    for (const n of names) await addVersion(dir, n, '1', 'mlp.onnx');
    const { repo, events } = await open(dir, { modelMemoryBudget: '500MiB', memoryCost: () => 100 * MiB });
    expect(repo.memory()!.loads).toBe(0);
    expect(resident(repo)).toEqual([]);
    const expected = await repo.registry.infer('m00', undefined, features(1));
    // First pass in order: each request loads its model; from the sixth on, each load unloads the
    // least recently used.
    for (const n of names) {
      const out = await repo.registry.infer(n, undefined, features(1));
      expect(Array.from(out.scores!.data as Float32Array)).toEqual(
        Array.from(expected.scores!.data as Float32Array),
      );
    }
    let m = repo.memory()!;
    expect(m.loads).toBe(20);
    expect(m.coldStarts).toBe(20);
    expect(m.evictions).toBe(15);
    expect(resident(repo)).toEqual(names.slice(15));
    // Second pass: all known now (measured 100 MiB each), one cold start and one eviction per request.
    for (const n of names) await repo.registry.infer(n, undefined, features(2));
    m = repo.memory()!;
    expect(m.coldStarts).toBe(40);
    expect(m.evictions).toBe(35);
    expect(m.used).toBeLessThanOrEqual(m.budget);
    expect(m.overBudget).toBe(0);
    expect(resident(repo)).toEqual(names.slice(15));
    expect(events.filter((e) => e.phase === 'evicted').length).toBe(35);
  });
});

describe('config.json inputs and outputs', () => {
  const declared = {
    inputs: [{ name: 'features', type: 'float32', dims: [-1, 16] }],
    outputs: [{ name: 'scores', type: 'float32', dims: [-1, 2] }],
  };

  it('serve a custom loader on demand; a declaration the model contradicts fails its load, naming the difference', async () => {
    const dir = await setup();
    await addVersion(dir, 'good', '1', 'mlp.onnx');
    await addVersion(dir, 'wrong', '1', 'mlp.onnx');
    await addVersion(dir, 'plain', '1', 'mlp.onnx');
    await writeConfig(dir, 'good', declared);
    await writeConfig(dir, 'wrong', {
      ...declared,
      inputs: [{ name: 'features', type: 'float32', dims: [-1, 8] }],
    });
    const log = { loads: [] as string[], disposed: [] as string[] };
    const { repo } = await open(dir, { loaders: { onnx: onnxLoader(log) } });
    // A custom loader without a declaration loads at start (to read its metadata); the others wait.
    expect(log.loads).toEqual(['plain/1']);
    expect(repo.registry.get('good').metadata().inputs).toEqual([
      { name: 'features', type: 'float32', dims: [-1, 16], batched: true },
    ]);
    const out = await repo.registry.infer('good', undefined, features(0));
    expect(out.scores!.dims).toEqual([1, 2]);
    expect(log.loads).toEqual(['plain/1', 'good/1']);
    const err = await rejection(
      repo.registry.infer('wrong', undefined, {
        features: { type: 'float32', dims: [1, 8], data: new Float32Array(8) },
      }),
    );
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toContain(
      'config.json gives input "features" with dims [-1,8], the model has [-1,16]',
    );
    expect(log.disposed).toContain('wrong/1');
    expect(repo.memory()!.versions.find((v) => v.name === 'wrong')!.resident).toBe(false);
  });

  it('are validated, naming the field', () => {
    const f = 'm/config.json';
    expect(() => parseModelConfig({ inputs: declared.inputs }, f)).toThrow(
      '"outputs" must be given with the other',
    );
    expect(() =>
      parseModelConfig({ ...declared, inputs: [{ name: 'x', type: 'float', dims: [1] }] }, f),
    ).toThrow('"inputs[0].type" must be an element type');
    expect(() =>
      parseModelConfig({ ...declared, outputs: [{ name: 'y', type: 'int64', dims: [-2] }] }, f),
    ).toThrow('"outputs[0].dims"');
    expect(() => parseModelConfig({ ...declared, inputs: [] }, f)).toThrow(
      '"inputs" must be a non-empty array',
    );
    expect(parseModelConfig(declared, f).signature?.outputs[0]).toEqual({
      name: 'scores',
      type: 'float32',
      dims: [-1, 2],
      batched: true,
    });
  });
});

describe('what never ran before', () => {
  it('a version changed while it is unloaded reloads without loading; its next load uses the new file and config', async () => {
    const dir = await setup();
    const file = await addVersion(dir, 'a', '1', 'mlp.onnx');
    await addVersion(dir, 'b', '1', 'mlp.onnx');
    const { repo, events } = await open(dir, { modelMemoryBudget: '150MiB', memoryCost: () => 100 * MiB });
    await repo.registry.infer('a', undefined, features(0));
    await repo.registry.infer('b', undefined, features(0));
    expect(resident(repo)).toEqual(['b']);
    const loads = repo.memory()!.loads;
    // a's file becomes the MNIST CNN, and its config caps batches at 2.
    await copyFile(modelPath('mnist-cnn.onnx'), file);
    await writeConfig(dir, 'a', { validation: { maxBatchSize: 2 } });
    await repo.loadModel('a');
    expect(repo.memory()!.loads).toBe(loads);
    expect(events.filter((e) => e.name === 'a' && e.phase === 'reloaded')).toEqual([
      expect.objectContaining({ resident: false }),
    ]);
    // Served with the new header's metadata before it loads.
    expect(
      repo.registry
        .get('a')
        .metadata()
        .inputs.map((i) => i.name),
    ).toEqual(['image']);
    const v = repo.memory()!.versions.find((x) => x.name === 'a')!;
    expect(v).toMatchObject({ resident: false, measured: false });
    const out = await repo.registry.infer('a', undefined, digit(1));
    expect(argmax(out.logits!.data as Float32Array)).toBe(mnistHoldout().labels[1]);
    expect(repo.memory()!.loads).toBe(loads + 1);
    const three: Tensors = {
      image: { type: 'float32', dims: [3, 1, 28, 28], data: new Float32Array(3 * 784) },
    };
    expect((await rejection(repo.registry.infer('a', undefined, three))).message).toMatch(/batch size 3/);
  });

  it('a gated rollout under a budget: both versions load for the shadow, the equal one is promoted', async () => {
    const dir = await setup();
    await addVersion(dir, 'mnist', '1');
    const h = mnistHoldout();
    await writeConfig(dir, 'mnist', {
      warmup: {
        samples: Array.from({ length: 5 }, (_, i) => ({
          inputs: { image: { dims: [1, 1, 28, 28], data: Array.from(h.image(i)) } },
        })),
        batchSizes: [],
      },
      rollout: { gate: { maxP99Ratio: 5, shadowRequests: 40, maxShadowShare: 0.5 } },
    });
    // Room for one version: while the rollout runs both stay loaded (over the budget, warned).
    const { repo, events } = await open(dir, { modelMemoryBudget: '150MiB', memoryCost: () => 100 * MiB });
    expect(repo.memory()!.loads).toBe(0);
    await addVersion(dir, 'mnist', '2');
    await repo.loadModel('mnist');
    await until('a decision', () => repo.registry.status('mnist', '2')?.rollout?.phase === 'promoted');
    const promoted = events.find((e) => e.phase === 'promoted')!.rollout!;
    expect(promoted.figures).toMatchObject({ agreement: 1, requests: 40 });
    await until('retirement', () => repo.registry.versions('mnist').join() === '2');
    const out = await repo.registry.infer('mnist', undefined, digit(2));
    expect(argmax(out.logits!.data as Float32Array)).toBe(h.labels[2]);
    const m = repo.memory()!;
    expect(m.versions.map((v) => [v.version, v.resident])).toEqual([['2', true]]);
    expect(m.overBudget).toBeGreaterThanOrEqual(1);
    expect(
      events
        .filter((e) => e.phase === 'coldStart')
        .map((e) => e.version)
        .sort(),
    ).toEqual(['1', '2']);
  });
});
