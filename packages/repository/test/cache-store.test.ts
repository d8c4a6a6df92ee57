import { isServeError, type Middleware, wrap } from '@mlserve/core';
import { afterEach, describe, expect, it } from 'vitest';
import { parseModelConfig } from '../src/config.js';
import { loadRepository } from '../src/index.js';
import { addVersion, digit, tempRepo, writeConfig } from './helpers.js';
import { onnxLoader } from './loader.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe('cache.redis and the cacheStore option', () => {
  it('config.json takes cache.redis as a URL or { url, timeoutMs, prefix }', () => {
    const a = parseModelConfig({ cache: { ttlMs: 1000, redis: 'redis://127.0.0.1:6379/0' } }, 'c.json');
    expect(a.cacheRedis).toEqual({ url: 'redis://127.0.0.1:6379/0' });
    expect(a.cache).toEqual({ ttlMs: 1000, max: 10_000 });
    const b = parseModelConfig(
      { cache: { redis: { url: 'rediss://r:6380', timeoutMs: 20, prefix: 'x:' } } },
      'c.json',
    );
    expect(b.cacheRedis).toEqual({ url: 'rediss://r:6380', timeoutMs: 20, prefix: 'x:' });
    for (const bad of [
      { redis: 'localhost:6379' },
      { redis: { url: 'redis://r', port: 1 } },
      { redis: { url: 'redis://r', timeoutMs: -1 } },
    ]) {
      let error: unknown;
      try {
        parseModelConfig({ cache: bad }, 'models/m/config.json');
      } catch (e) {
        error = e;
      }
      expect(isServeError(error) && error.code === 'INVALID_ARGUMENT').toBe(true);
      expect((error as Error).message).toMatch(/cache\.redis/);
    }
  });

  it('a store from cacheStore replaces the in-process bounds and gets a default ttl', async () => {
    const { dir, cleanup } = await tempRepo();
    cleanups.push(cleanup);
    await addVersion(dir, 'mnist', '1');
    await writeConfig(dir, 'mnist', { cache: { redis: { url: 'redis://127.0.0.1:1/0', prefix: 'p:' } } });
    const seen: Record<string, unknown>[] = [];
    const asked: unknown[] = [];
    const store = { get: async () => undefined, set: async () => {} };
    const layer = (options: Record<string, unknown>): Middleware => {
      seen.push(options);
      return (inner) => wrap(inner, { layer: 'cache' });
    };
    const repo = await loadRepository(dir, {
      loaders: { onnx: onnxLoader(), cache: layer },
      warmup: false,
      cacheStore: (name, redis) => {
        asked.push([name, redis]);
        return store;
      },
    });
    cleanups.push(() => repo.close());
    await repo.registry.infer('mnist', undefined, digit(0));
    expect(asked).toEqual([['mnist', { url: 'redis://127.0.0.1:1/0', prefix: 'p:' }]]);
    expect(seen).toEqual([{ ttlMs: 600_000, store }]);
  });

  it('cache.redis without a server that makes stores fails that model with a clear message', async () => {
    const { dir, cleanup } = await tempRepo();
    cleanups.push(cleanup);
    await addVersion(dir, 'mnist', '1');
    await writeConfig(dir, 'mnist', { cache: { redis: 'redis://127.0.0.1:1/0' } });
    const repo = await loadRepository(dir, { loaders: { onnx: onnxLoader() }, warmup: false });
    cleanups.push(() => repo.close());
    const row = repo.versions().find((v) => v.name === 'mnist');
    expect(row?.state).toBe('failed');
    expect(row?.error ?? '').toMatch(/cache\.redis needs a server/);
  });
});
