import { fromFunction, pipeline, type Tensors, tensor } from '@mlserve/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { featureLookup, memoryFeatureStore } from '../src/index.js';
import { echoModel, instrumented } from './helpers.js';

const users = () =>
  memoryFeatureStore({
    u1: { age: 31, visits: 4, ltv: 120.5 },
    u2: { age: 45, visits: 0, ltv: 80 },
    u3: { age: 22, visits: null, ltv: 10 },
  });
const ids = (...keys: string[]): Tensors => ({ user: tensor('string', keys) });
const features = [
  { name: 'age', default: 35 },
  { name: 'visits', default: 0 },
  { name: 'ltv', onMissing: 'reject' as const },
];

describe('featureLookup', () => {
  it('fills a float32 [batch, F] input in the declared order and drops the key input', async () => {
    const model = echoModel();
    const served = pipeline(
      model,
      featureLookup({
        keyInput: 'user',
        store: users(),
        features,
        target: { input: 'features', order: ['ltv', 'age', 'visits'] },
      }),
    );
    const out = await served.infer(ids('u2', 'u1'));
    expect(out.features!.dims).toEqual([2, 3]);
    expect(Array.from(out.features!.data as Float32Array)).toEqual([80, 45, 0, 120.5, 31, 4]);
    expect(Object.keys(model.seen[0]!)).toEqual(['features']);
  });

  it('appends to the columns the caller sent', async () => {
    const served = pipeline(
      echoModel(),
      featureLookup({ keyInput: 'user', store: users(), features, target: { input: 'features' } }),
    );
    const out = await served.infer({
      ...ids('u1', 'u2'),
      features: tensor('float32', [7, 8, 9, 10], [2, 2]),
    });
    expect(Array.from(out.features!.data as Float32Array)).toEqual([7, 8, 31, 4, 120.5, 9, 10, 45, 0, 80]);
    await expect(
      served.infer({ ...ids('u1', 'u2'), features: tensor('float32', [1, 2, 3], [3, 1]) }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('merges the lookups of concurrent requests into one deduplicated round trip', async () => {
    const store = instrumented(users());
    const lookup = featureLookup({ keyInput: 'user', store, features, target: { input: 'features' } });
    const served = pipeline(echoModel(), lookup);
    const keys = ['u1', 'u2', 'u3'];
    const results = await Promise.all(
      Array.from({ length: 64 }, (_, i) => served.infer(ids(keys[i % 3]!, keys[(i + 1) % 3]!))),
    );
    expect(results).toHaveLength(64);
    expect(store.calls).toHaveLength(1);
    expect(store.calls[0]!.sort()).toEqual(['u1', 'u2', 'u3']);
    expect(served.stats?.()).toMatchObject({ features: { requests: 64, roundTrips: 1, keysFetched: 3 } });
  });

  it('gives every request its own round trip with merge: false', async () => {
    const store = instrumented(users());
    const served = pipeline(
      echoModel(),
      featureLookup({ keyInput: 'user', store, features, target: { input: 'features' }, merge: false }),
    );
    const outs = await Promise.all(Array.from({ length: 10 }, () => served.infer(ids('u1', 'u2', 'u1'))));
    expect(Array.from(outs[9]!.features!.data as Float32Array)).toEqual([
      31, 4, 120.5, 45, 0, 80, 31, 4, 120.5,
    ]);
    expect(store.calls).toHaveLength(10);
    expect(store.calls[0]).toEqual(['u1', 'u2']);
  });

  it('joins lookups of keys already in flight from an earlier turn', async () => {
    const store = instrumented(users(), { delayMs: 30 });
    const served = pipeline(
      echoModel(),
      featureLookup({ keyInput: 'user', store, features, target: { input: 'features' }, timeoutMs: 1000 }),
    );
    const first = served.infer(ids('u1'));
    await new Promise((r) => setTimeout(r, 5));
    const second = served.infer(ids('u1'));
    await Promise.all([first, second]);
    expect(store.calls).toEqual([['u1']]);
    expect(served.stats?.()).toMatchObject({ features: { joined: 1 } });
  });

  it('splits merged batches into calls of at most maxKeysPerCall keys', async () => {
    const store = instrumented(memoryFeatureStore());
    const served = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store,
        features: [{ name: 'age', default: 1 }],
        target: { input: 'features' },
        maxKeysPerCall: 10,
      }),
    );
    await Promise.all(Array.from({ length: 25 }, (_, i) => served.infer(ids(`k${i}`))));
    expect(store.calls.map((c) => c.length)).toEqual([10, 10, 5]);
  });

  it('answers repeated keys from the LRU until the TTL passes', async () => {
    const store = instrumented(users());
    const served = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store,
        features,
        target: { input: 'features' },
        cache: { max: 100, ttlMs: 80 },
      }),
    );
    await served.infer(ids('u1', 'u2'));
    await served.infer(ids('u1', 'u2'));
    expect(store.calls).toHaveLength(1);
    expect(served.stats?.()).toMatchObject({ features: { cacheHits: 2 } });
    await new Promise((r) => setTimeout(r, 120));
    await served.infer(ids('u1'));
    expect(store.calls).toHaveLength(2);
  });

  it('applies the missing-value policy per feature', async () => {
    const served = pipeline(
      echoModel(),
      featureLookup({ keyInput: 'user', store: users(), features, target: { input: 'features' } }),
    );
    const out = await served.infer(ids('u3'));
    expect(Array.from(out.features!.data as Float32Array)).toEqual([22, 0, 10]);
    await expect(served.infer(ids('u1', 'ghost'))).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'entity "ghost" was not found in the feature store',
    });
    const lenient = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: users(),
        features: [{ name: 'age', default: 35 }],
        target: { input: 'features' },
      }),
    );
    expect(Array.from((await lenient.infer(ids('ghost'))).features!.data as Float32Array)).toEqual([35]);
    expect(served.stats?.()).toMatchObject({ features: { hits: 1, missingDefault: 1, missingReject: 1 } });
    expect(lenient.stats?.()).toMatchObject({ features: { missingDefault: 1 } });
  });

  it('bounds the wait with timeoutMs, then rejects or uses defaults', async () => {
    const slow = instrumented(users(), { delayMs: 300 });
    const strict = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: slow,
        features,
        target: { input: 'features' },
        timeoutMs: 20,
      }),
    );
    const t0 = Date.now();
    await expect(strict.infer(ids('u1'))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(Date.now() - t0).toBeLessThan(200);
    const lenient = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: slow,
        features: [
          { name: 'age', default: 35 },
          { name: 'ltv', default: -1, onMissing: 'reject' },
        ],
        target: { input: 'features' },
        timeoutMs: 20,
        onStoreError: 'default',
      }),
    );
    const ctx = {};
    const out = await lenient.infer(ids('u1', 'u2'), { context: ctx });
    expect(Array.from(out.features!.data as Float32Array)).toEqual([35, -1, 35, -1]);
    expect(ctx).toMatchObject({ featureStoreError: true, featureKeys: 2 });
    expect(lenient.stats?.()).toMatchObject({ features: { storeErrorDefault: 1, timeouts: 1 } });
  });

  it('lets go of keys whose store call never returns', async () => {
    const calls: string[][] = [];
    const hung = {
      getMany: (keys: string[]) => {
        calls.push(keys);
        return new Promise<never>(() => undefined);
      },
    };
    const served = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: hung,
        features,
        target: { input: 'features' },
        timeoutMs: 20,
      }),
    );
    for (let round = 0; round < 3; round++) {
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) => served.infer(ids(`k${i}`))),
      );
      expect(results.every((r) => r.status === 'rejected' && r.reason.code === 'UNAVAILABLE')).toBe(true);
      await new Promise((r) => setTimeout(r, 10));
      expect(served.stats?.()).toMatchObject({ features: { inflight: 0 } });
    }
    // Each round asked the store again rather than waiting on the stuck calls.
    expect(calls.flat()).toHaveLength(150);
    expect(served.stats?.()).toMatchObject({ features: { callTimeouts: 12 } });
  });

  it('turns a failing store into UNAVAILABLE, or defaults, by policy', async () => {
    const down = instrumented(users(), { fail: true });
    const strict = pipeline(
      echoModel(),
      featureLookup({ keyInput: 'user', store: down, features, target: { input: 'features' } }),
    );
    await expect(strict.infer(ids('u1'))).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      message: 'feature store failed: store is down',
    });
    // A feature without a default cannot be defaulted: still UNAVAILABLE, and it says why.
    const partial = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: down,
        features,
        target: { input: 'features' },
        onStoreError: 'default',
      }),
    );
    await expect(partial.infer(ids('u1'))).rejects.toThrow(/"ltv" has no default/);
    expect(strict.stats?.()).toMatchObject({ features: { storeErrors: 1, storeErrorReject: 1 } });
  });

  it('builds separate typed inputs and takes the key from a parameter', async () => {
    const store = memoryFeatureStore({ 'item:7': { price: 9.5, stock: 3, category: 'books' } });
    const model = echoModel();
    const served = pipeline(
      model,
      featureLookup({
        keyParameter: 'item',
        keyPrefix: 'item:',
        store,
        features: [
          { name: 'price', type: 'float64' },
          { name: 'stock', type: 'int64' },
          { name: 'category', type: 'string' },
        ],
        target: 'separate',
      }),
    );
    await served.infer({ x: tensor('float32', [1, 2], [2, 1]) }, { parameters: { item: 7 } });
    const seen = model.seen[0]!;
    expect(seen.price).toEqual({ type: 'float64', dims: [2, 1], data: Float64Array.of(9.5, 9.5) });
    expect(seen.stock).toEqual({ type: 'int64', dims: [2, 1], data: BigInt64Array.of(3n, 3n) });
    expect(seen.category).toEqual({ type: 'string', dims: [2, 1], data: ['books', 'books'] });
    await expect(served.infer({ x: tensor('float32', [1], [1, 1]) })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('rejects bad keys with INVALID_ARGUMENT and honours aborts', async () => {
    const served = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: instrumented(users(), { delayMs: 100 }),
        features,
        target: { input: 'features' },
        timeoutMs: 1000,
      }),
    );
    await expect(served.infer({})).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(served.infer({ user: tensor('float32', [1]) })).rejects.toThrow(/string or integer keys/);
    await expect(served.infer({ user: tensor('string', ['a', 'b'], [1, 2]) })).rejects.toThrow(/\[batch\]/);
    const numeric = await pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        keyPrefix: 'u',
        store: users(),
        features,
        target: { input: 'features' },
      }),
    ).infer({ user: tensor('int64', [2n]) });
    expect(Array.from(numeric.features!.data as Float32Array)).toEqual([45, 0, 80]);
    const controller = new AbortController();
    const pending = served.infer(ids('u1'), { signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('describes what callers send: the key input instead of what it fills', () => {
    const model = fromFunction({
      name: 'ranker',
      inputs: [
        { name: 'features', type: 'float32', dims: [-1, 5] },
        { name: 'query', type: 'int64', dims: [-1, 8] },
      ],
      outputs: [{ name: 'score', type: 'float32', dims: [-1, 1] }],
      infer: () => ({ score: tensor('float32', [0], [1, 1]) }),
    });
    const appended = pipeline(
      model,
      featureLookup({ keyInput: 'user', store: users(), features, target: { input: 'features' } }),
    );
    expect(appended.metadata().inputs.map((i) => [i.name, i.type, i.dims])).toEqual([
      ['features', 'float32', [-1, 2]],
      ['query', 'int64', [-1, 8]],
      ['user', 'string', [-1]],
    ]);
    const separate = pipeline(
      model,
      featureLookup({
        keyParameter: 'user',
        store: users(),
        features: [{ name: 'query', default: 0 }],
        target: 'separate',
      }),
    );
    expect(separate.metadata().inputs.map((i) => i.name)).toEqual(['features']);
  });

  it('checks its options', () => {
    const base = { store: users(), features, target: { input: 'f' } } as const;
    expect(() => featureLookup({ ...base })).toThrow(/exactly one of/);
    expect(() => featureLookup({ ...base, keyInput: 'a', keyParameter: 'b' })).toThrow(/exactly one of/);
    expect(() => featureLookup({ ...base, keyInput: 'a', features: [] })).toThrow(/at least one/);
    expect(() =>
      featureLookup({ ...base, keyInput: 'a', features: [{ name: 'x', onMissing: 'default' }] }),
    ).toThrow(/no default/);
    expect(() => featureLookup({ ...base, keyInput: 'a', target: { input: 'f', order: ['age'] } })).toThrow(
      /every feature/,
    );
    expect(() => featureLookup({ ...base, keyInput: 'a', cache: { max: 0, ttlMs: 1 } })).toThrow(/cache/);
    expect(() =>
      featureLookup({ ...base, keyInput: 'a', features: [{ name: 's', type: 'string', default: 'x' }] }),
    ).toThrow(/float32/);
  });

  it('publishes its decisions as Prometheus counters', async () => {
    const registry = new Registry();
    const served = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: users(),
        features,
        target: { input: 'features' },
        metrics: { registry },
      }),
    );
    await served.warmup?.();
    await served.infer(ids('u1', 'u3'));
    await served.infer(ids('ghost')).catch(() => undefined);
    const text = await registry.metrics();
    expect(text).toMatch(/mlserve_feature_lookups_total\{model="echo",decision="hit"\} 1/);
    expect(text).toMatch(/mlserve_feature_lookups_total\{model="echo",decision="missing_default"\} 1/);
    expect(text).toMatch(/mlserve_feature_lookups_total\{model="echo",decision="missing_reject"\} 1/);
    expect(text).toMatch(/mlserve_feature_store_round_trips_total\{model="echo"\} 2/);
    // A second scrape does not double count.
    expect(await registry.metrics()).toMatch(/decision="hit"\} 1\n/);
  });
});
