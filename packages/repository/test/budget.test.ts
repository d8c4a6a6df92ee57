/**
 * Models on demand under a memory budget, on real onnxruntime: twenty copies of the tiny MLP
 * (packages/test-utils/models/mlp.onnx) under a budget for five. Each version's cost is set to
 * 100 MiB through `memoryCost` (the tiny MLP's own RSS growth is within the noise of the process,
 * so the expected loads and evictions would not be exact); one test checks the real measurement
 * with MobileNetV2.
 */

import * as grpc from '@grpc/grpc-js';
import { type Middleware, type Tensors, wrap } from '@mlserve/core';
import { loadInferenceProto, serveGrpc } from '@mlserve/grpc';
import { mlservePlugin } from '@mlserve/http';
import { rejection } from '@mlserve/test-utils';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { type BudgetEntry, pickEvictions } from '../src/budget.js';
import { loadRepository, parseBytes, type RepositoryOptions, type VersionEvent } from '../src/index.js';
import { addVersion, tempRepo, writeConfig } from './helpers.js';
import { onnxLoader } from './loader.js';

const MiB = 2 ** 20;
const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const names = Array.from({ length: 20 }, (_, i) => `m${String(i).padStart(2, '0')}`);

function features(seed: number): Tensors {
  const data = new Float32Array(16);
  for (let i = 0; i < 16; i++) data[i] = Math.sin(seed * 16 + i);
  return { features: { type: 'float32', dims: [1, 16], data } };
}

/** Twenty copies of the MLP; `configs` per model name. */
async function twenty(options: RepositoryOptions = {}, configs: Record<string, unknown> = {}) {
  const t = await tempRepo();
  cleanups.push(t.cleanup);
  for (const n of names) {
    await addVersion(t.dir, n, '1', 'mlp.onnx');
    if (configs[n]) await writeConfig(t.dir, n, configs[n]);
  }
  const events: VersionEvent[] = [];
  const repo = await loadRepository(t.dir, {
    loaders: { onnx: onnxLoader() },
    modelMemoryBudget: '500MiB',
    memoryCost: () => 100 * MiB,
    ...options,
  });
  repo.on('version', (e) => events.push(e));
  cleanups.push(() => repo.close());
  return { repo, dir: t.dir, events };
}

type Repo = Awaited<ReturnType<typeof twenty>>['repo'];

/**
 * Requests each model once, in order. The versions load at start in the order their directories
 * are read (not sorted), so tests first settle which five are loaded: the last five touched.
 */
async function touch(repo: Repo, models: readonly string[]): Promise<void> {
  for (const n of models) await repo.registry.infer(n, undefined, features(0));
}

/** A layer that holds a model's requests until `release()`. */
function hold() {
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const middleware: Middleware = (inner) =>
    wrap(inner, {
      layer: 'hold',
      infer: async (inputs, options) => {
        await gate;
        return inner.infer(inputs, options);
      },
    });
  return { middleware, release };
}

const resident = (repo: Awaited<ReturnType<typeof twenty>>['repo']) =>
  repo
    .memory()!
    .versions.filter((v) => v.resident)
    .map((v) => v.name)
    .sort();

describe('sizes and eviction order', () => {
  it('parses sizes, refusing what is not one', () => {
    expect(parseBytes('2GiB')).toBe(2 * 2 ** 30);
    expect(parseBytes('512 MiB')).toBe(512 * MiB);
    expect(parseBytes('1.5GB')).toBe(1.5e9);
    expect(parseBytes('300m')).toBe(300e6);
    expect(parseBytes(4096)).toBe(4096);
    for (const bad of ['', '2XB', '-1GiB', '0', 'GiB', '1e9']) {
      expect(() => parseBytes(bad, '--model-memory-budget')).toThrow(/--model-memory-budget/);
    }
    expect(() => parseBytes(0)).toThrow('positive');
  });

  it('evicts the least recently used idle unpinned versions, as few as needed', () => {
    const e = (key: string, lastUsed: number, more: Partial<BudgetEntry> = {}): BudgetEntry => ({
      key,
      resident: true,
      cost: 100,
      lastUsed,
      inFlight: 0,
      pinned: false,
      ...more,
    });
    const entries = [
      e('a', 1, { pinned: true }),
      e('b', 2, { inFlight: 1 }),
      e('c', 3),
      e('d', 4),
      e('e', 5),
      e('x', 0, { resident: false }),
    ];
    expect(pickEvictions(entries, 0, 500)).toEqual([]);
    expect(pickEvictions(entries, 50, 500)).toEqual(['c']);
    expect(pickEvictions(entries, 150, 500)).toEqual(['c', 'd']);
    expect(pickEvictions(entries, 100, 500, 'c')).toEqual(['d']);
    // Pinned and busy ones stay even when that leaves the budget exceeded.
    expect(pickEvictions(entries, 0, 100)).toEqual(['c', 'd', 'e']);
  });
});

describe('twenty models under a budget for five', () => {
  it('keeps serving every request, with the expected loads and evictions', async () => {
    const { repo, events } = await twenty();
    // Each version loads once at start (one at a time, to measure it); the last five stay.
    let m = repo.memory()!;
    expect(m.loads).toBe(20);
    expect(m.evictions).toBe(15);
    expect(m.coldStarts).toBe(0);
    expect(m.used).toBe(500 * MiB);
    expect(repo.versions().filter((v) => v.resident).length).toBe(5);
    // Every version answers to readiness and routing, loaded or not.
    expect(repo.registry.list().every((s) => s.ready)).toBe(true);
    await touch(repo, names.slice(15));
    expect(resident(repo)).toEqual(names.slice(15));
    const before = repo.memory()!;
    events.length = 0;

    const expected = await repo.registry.infer('m19', undefined, features(1));
    // Two passes in order: each request finds its model unloaded, loads it (one cold start) and
    // unloads the least recently used (one eviction).
    for (let pass = 0; pass < 2; pass++) {
      for (const n of names) {
        const out = await repo.registry.infer(n, undefined, features(1));
        expect(Array.from(out.scores!.data as Float32Array)).toEqual(
          Array.from(expected.scores!.data as Float32Array),
        );
      }
    }
    m = repo.memory()!;
    expect(m.coldStarts - before.coldStarts).toBe(40);
    expect(m.loads - before.loads).toBe(40);
    expect(m.evictions - before.evictions).toBe(40);
    expect(m.used).toBeLessThanOrEqual(m.budget);
    expect(m.overBudget).toBe(0);
    expect(resident(repo)).toEqual(names.slice(15));
    expect(events.filter((e) => e.phase === 'coldStart').length).toBe(40);
    expect(events.filter((e) => e.phase === 'evicted').length).toBe(40);
    expect(m.coldStartMs).toBeGreaterThan(0);

    // Many at once, in random order: every one answered.
    const order = Array.from({ length: 100 }, (_, i) => names[(i * 7) % 20]!);
    const outs = await Promise.all(order.map((n) => repo.registry.infer(n, undefined, features(1))));
    expect(
      outs.every((o) => (o.scores!.data as Float32Array)[0] === (expected.scores!.data as Float32Array)[0]),
    ).toBe(true);
    m = repo.memory()!;
    expect(m.used).toBeLessThanOrEqual(m.budget);
    expect(resident(repo).length).toBeLessThanOrEqual(5);
  });

  it('never unloads a version with a request in flight', async () => {
    const held = hold();
    let holding = false;
    const { repo } = await twenty({
      // m15's requests wait in a layer until released, once `holding` is on.
      middleware: (name) =>
        name === 'm15'
          ? [
              (inner) =>
                wrap(inner, { infer: (i, o) => (holding ? held.middleware(inner) : inner).infer(i, o) }),
            ]
          : [],
    });
    await touch(repo, names.slice(15));
    const evictionsOf15 = () => repo.memory()!.versions.find((v) => v.name === 'm15')!.evictions;
    const before = evictionsOf15();
    holding = true;
    const slow = repo.registry.infer('m15', undefined, features(2));
    // Five cold starts while m15's request is in flight: the first four unload m16..m19; at the
    // fifth, m15 is the least recently used, and stays only because a request is running on it.
    for (const n of names.slice(0, 5)) await repo.registry.infer(n, undefined, features(2));
    expect(evictionsOf15()).toBe(before);
    expect(resident(repo)).toEqual(['m01', 'm02', 'm03', 'm04', 'm15']);
    held.release();
    const out = await slow;
    expect(out.scores!.dims).toEqual([1, 2]);
    // Once idle, it is the least recently used again and goes at the next cold start.
    await repo.registry.infer('m05', undefined, features(2));
    expect(resident(repo)).not.toContain('m15');
  });

  it('never unloads a pinned version', async () => {
    const { repo } = await twenty({}, { m00: { pinned: true }, m01: { pinned: true } });
    // Pinned, m00 and m01 stay loaded whatever the order of the loads at start.
    expect(resident(repo)).toEqual(expect.arrayContaining(['m00', 'm01']));
    await touch(repo, ['m17', 'm18', 'm19']);
    expect(resident(repo)).toEqual(['m00', 'm01', 'm17', 'm18', 'm19']);
    const before = repo.memory()!.coldStarts;
    // Ten cold starts: m00 and m01 are the least recently used all along, and never go.
    for (const n of names.slice(2, 12)) await repo.registry.infer(n, undefined, features(3));
    const m = repo.memory()!;
    expect(resident(repo)).toEqual(['m00', 'm01', 'm09', 'm10', 'm11']);
    expect(
      m.versions
        .filter((v) => v.pinned)
        .map((v) => [v.name, v.evictions])
        .sort(),
    ).toEqual([
      ['m00', 0],
      ['m01', 0],
    ]);
    expect(m.coldStarts - before).toBe(10);
  });

  it('answers UNAVAILABLE with a retry hint, over real HTTP and gRPC, when a load cannot finish within the deadline', async () => {
    const t = await tempRepo();
    cleanups.push(t.cleanup);
    for (const n of ['slow', 'a', 'b']) await addVersion(t.dir, n, '1', 'mlp.onnx');
    const quick = onnxLoader();
    // The slow load takes 2 s, so that a 800 ms gRPC deadline is refused by the server long before
    // the client's own deadline could fire, even on a loaded machine.
    const slowLoader = onnxLoader(undefined, 2000);
    const repo = await loadRepository(t.dir, {
      loaders: { onnx: (source, options) => (options.name === 'slow' ? slowLoader : quick)(source, options) },
      modelMemoryBudget: '200MiB',
      memoryCost: () => 100 * MiB,
    });
    cleanups.push(() => repo.close());
    // Room for two: after a and b are asked for, slow is the one not loaded.
    for (const n of ['a', 'b']) await repo.registry.infer(n, undefined, features(0));
    expect(resident(repo as Repo)).toEqual(['a', 'b']);
    const app = Fastify();
    await app.register(mlservePlugin, { registry: repo.registry, management: repo.management() });
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => app.close());
    const { port } = app.server.address() as { port: number };
    const body = JSON.stringify({
      inputs: [
        { name: 'features', datatype: 'FP32', shape: [1, 16], data: Array.from({ length: 16 }, () => 0.5) },
      ],
    });
    const post = (model: string, timeoutMs?: number) =>
      fetch(`http://127.0.0.1:${port}/v2/models/${model}/infer`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(timeoutMs !== undefined && { 'x-request-timeout-ms': String(timeoutMs) }),
        },
        body,
      });
    // Its last load took 2+ s: a request with 100 ms left is told at once to come back.
    const res = await post('slow', 100);
    expect(res.status).toBe(503);
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const err = (await res.json()) as { code: string; error: string; retryAfterMs: number };
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.error).toContain('cannot be ready within');
    expect(err.retryAfterMs).toBeGreaterThanOrEqual(2000);
    // The load it started goes on; a request with no deadline waits for it and is answered.
    const ok = await post('slow');
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { model_name: string }).model_name).toBe('slow');
    expect(repo.memory()!.versions.find((v) => v.name === 'slow')!.resident).toBe(true);
    // The index says which versions are loaded and which load on demand.
    const index = (await (
      await fetch(`http://127.0.0.1:${port}/v2/repository/index`, { method: 'POST' })
    ).json()) as {
      name: string;
      state: string;
      reason: string;
    }[];
    const row = (n: string) => index.find((r) => r.name === n)!;
    expect(row('slow')).toMatchObject({
      state: 'READY',
      reason: expect.stringContaining('loaded (100.0 MiB'),
    });
    const cold = ['a', 'b'].find((n) => !repo.memory()!.versions.find((v) => v.name === n)!.resident)!;
    expect(row(cold).reason).toContain('loads on its next request');

    // Over gRPC the same: UNAVAILABLE with retry-after-ms when the call's deadline is too short.
    for (const n of ['a', 'b']) await repo.registry.infer(n, undefined, features(0));
    expect(resident(repo as Repo)).toEqual(['a', 'b']);
    const served = await serveGrpc({ registry: repo.registry, host: '127.0.0.1', port: 0 });
    cleanups.push(() => served.close());
    const { GRPCInferenceService } = loadInferenceProto();
    const client = new GRPCInferenceService(`127.0.0.1:${served.port}`, grpc.credentials.createInsecure());
    cleanups.push(async () => client.close());
    const infer = (deadlineMs?: number) =>
      new Promise<grpc.ServiceError | Record<string, unknown>>((resolve) =>
        (client as unknown as { ModelInfer: (...a: unknown[]) => void }).ModelInfer(
          {
            model_name: 'slow',
            inputs: [
              {
                name: 'features',
                datatype: 'FP32',
                shape: [1, 16],
                contents: { fp32_contents: Array.from({ length: 16 }, () => 0.5) },
              },
            ],
          },
          new grpc.Metadata(),
          deadlineMs === undefined ? {} : { deadline: Date.now() + deadlineMs },
          (err: grpc.ServiceError | null, res: Record<string, unknown>) => resolve(err ?? res),
        ),
      );
    const refused = (await infer(800)) as grpc.ServiceError;
    expect(refused.code).toBe(grpc.status.UNAVAILABLE);
    expect(Number(refused.metadata.get('retry-after-ms')[0])).toBeGreaterThanOrEqual(2000);
    const answered = (await infer()) as { model_name: string };
    expect(answered.model_name).toBe('slow');
  });

  it('a cold request with a deadline it can meet waits for the load', async () => {
    const { repo } = await twenty();
    const cold = repo.memory()!.versions.find((v) => !v.resident)!.name;
    const out = await repo.registry.infer(cold, undefined, features(4), { deadline: Date.now() + 30_000 });
    expect(out.scores!.dims).toEqual([1, 2]);
    expect(repo.memory()!.coldStarts).toBe(1);
  });

  it('a removed model leaves the budget; an unknown one is NOT_FOUND', async () => {
    const { repo } = await twenty();
    await repo.unloadModel('m19');
    expect(repo.memory()!.versions.some((v) => v.name === 'm19')).toBe(false);
    expect((await rejection(repo.registry.infer('m19', undefined, features(5)))).code).toBe('NOT_FOUND');
  });
});

describe('measured cost', () => {
  it('counts the RSS growth of a real load and warmup (MobileNetV2)', async () => {
    const t = await tempRepo();
    cleanups.push(t.cleanup);
    await addVersion(t.dir, 'mobilenet', '1', 'mobilenetv2.onnx');
    const repo = await loadRepository(t.dir, { loaders: { onnx: onnxLoader() }, modelMemoryBudget: '2GiB' });
    cleanups.push(() => repo.close());
    const m = repo.memory()!;
    const v = m.versions[0]!;
    // 14 MB of weights: the session holds at least that much once loaded.
    expect(v.bytes).toBeGreaterThan(4 * MiB);
    expect(v.bytes).toBeLessThan(1024 * MiB);
    expect(m.used).toBe(v.bytes);
    expect(v.resident).toBe(true);
  });
});
