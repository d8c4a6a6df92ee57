import { pipeline, type Tensors, tensor } from '@mlserve/core';
import { freePort, type RedisServer, requireService, startRedis } from '@mlserve/test-utils';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeBinaryFeatures, featureLookup, redisFeatureStore } from '../src/index.js';
import { echoModel } from './helpers.js';

const haveRedis = requireService('redis-server', 'apt-get install -y redis-server');
const ids = (...keys: string[]): Tensors => ({ user: tensor('string', keys) });
const fields = ['age', 'visits', 'ltv'];

async function commandCalls(client: Redis, command: string): Promise<number> {
  const info = await client.info('commandstats');
  const m = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
  return m ? Number(m[1]) : 0;
}

describe.runIf(haveRedis)('Redis feature store', () => {
  let server: RedisServer;
  let admin: Redis;
  let client: Redis;

  beforeAll(async () => {
    server = await startRedis();
    admin = new Redis(server.port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => 50 });
    admin.on('error', () => undefined);
    await admin.connect();
    client = new Redis(server.port, '127.0.0.1', {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 50,
      lazyConnect: true,
    });
    client.on('error', () => undefined);
    await client.connect();
    for (let i = 0; i < 100; i++) {
      await admin.hset(`user:u${i}`, { age: 20 + (i % 50), visits: i % 7, ltv: i * 1.5 });
      await admin.set(
        `vec:u${i}`,
        encodeBinaryFeatures(fields, { age: 20 + (i % 50), visits: i % 7, ltv: i * 1.5 }),
      );
    }
    await admin.hset('user:partial', { age: 50 });
  });
  afterAll(async () => {
    client.disconnect();
    admin.disconnect();
    await server.stop();
  });

  it('reads hashes with pipelined HMGET, merged across concurrent requests', async () => {
    const served = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: redisFeatureStore({ client, prefix: 'user:' }),
        features: [{ name: 'age' }, { name: 'visits', default: 0 }, { name: 'ltv', default: -1 }],
        target: { input: 'features' },
        timeoutMs: 1000,
      }),
    );
    await admin.config('RESETSTAT');
    const outs = await Promise.all(
      Array.from({ length: 64 }, (_, i) => served.infer(ids(`u${i}`, `u${(i * 3) % 100}`))),
    );
    expect(Array.from(outs[5]!.features!.data as Float32Array)).toEqual([25, 5, 7.5, 35, 1, 22.5]);
    const hmgets = await commandCalls(admin, 'hmget');
    const distinct = new Set(Array.from({ length: 64 }, (_, i) => [`u${i}`, `u${(i * 3) % 100}`]).flat())
      .size;
    expect(hmgets).toBe(distinct);
    // One turn's keys, deduplicated, in pipelines of maxKeysPerCall (16) sent together.
    expect(served.stats?.()).toMatchObject({
      features: { roundTrips: Math.ceil(distinct / 16), keysFetched: distinct },
    });
    const partial = await served.infer(ids('partial'));
    expect(Array.from(partial.features!.data as Float32Array)).toEqual([50, 0, -1]);
    await expect(served.infer(ids('nobody'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('reads float32 vectors with one MGET', async () => {
    const served = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: redisFeatureStore({ client, prefix: 'vec:', layout: 'binary', fields }),
        features: [{ name: 'ltv' }, { name: 'age' }],
        target: { input: 'features' },
        timeoutMs: 1000,
        maxKeysPerCall: 100,
      }),
    );
    await admin.config('RESETSTAT');
    const outs = await Promise.all(Array.from({ length: 64 }, (_, i) => served.infer(ids(`u${i}`))));
    expect(Array.from(outs[9]!.features!.data as Float32Array)).toEqual([13.5, 29]);
    expect(await commandCalls(admin, 'mget')).toBe(1);
  });

  it('keeps serving with defaults while Redis is away, and uses it again once back', async () => {
    const lenient = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: redisFeatureStore({ client, prefix: 'user:' }),
        features: [
          { name: 'age', default: 35 },
          { name: 'visits', default: 0 },
        ],
        target: { input: 'features' },
        timeoutMs: 100,
        onStoreError: 'default',
      }),
    );
    const strict = pipeline(
      echoModel(),
      featureLookup({
        keyInput: 'user',
        store: redisFeatureStore({ client, prefix: 'user:' }),
        features: [{ name: 'age' }],
        target: { input: 'features' },
        timeoutMs: 100,
      }),
    );
    let stop = false;
    let ok = 0;
    let failed = 0;
    const values = new Set<number>();
    const traffic = (async () => {
      while (!stop) {
        try {
          const out = await lenient.infer(ids('u1'));
          values.add((out.features!.data as Float32Array)[0]!);
          ok++;
        } catch {
          failed++;
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    await new Promise((r) => setTimeout(r, 50));
    await server.kill();
    await new Promise((r) => setTimeout(r, 150));
    const t0 = Date.now();
    await expect(strict.infer(ids('u1'))).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(Date.now() - t0).toBeLessThan(1000);
    await server.restart();
    // Data was not persisted: write it again, as the feature pipeline would.
    await new Promise((r) => setTimeout(r, 50));
    await admin.hset('user:u1', { age: 21, visits: 1 });
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      const s = lenient.stats!() as { features: { hits: number } };
      if (client.status === 'ready' && s.features.hits > 0 && values.has(21)) {
        const before = s.features.hits;
        await new Promise((r) => setTimeout(r, 30));
        if ((lenient.stats!() as { features: { hits: number } }).features.hits > before) break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    stop = true;
    await traffic;
    expect(failed).toBe(0);
    expect(ok).toBeGreaterThan(10);
    expect(values).toContain(21);
    expect(values).toContain(35);
    expect(lenient.stats?.()).toMatchObject({ features: { storeErrorDefault: expect.any(Number) } });
    expect(
      (lenient.stats!() as { features: { storeErrorDefault: number } }).features.storeErrorDefault,
    ).toBeGreaterThan(0);
    expect(await strict.infer(ids('u1'))).toBeDefined();
  });

  it('the first lookup through a client that is still connecting waits for it (both layouts)', async () => {
    await admin.hset('user:fresh', { age: 23 });
    await admin.set('vec:fresh', encodeBinaryFeatures(fields, { age: 23 }));
    for (const layout of ['hash', 'binary'] as const) {
      const fresh = new Redis(server.port, '127.0.0.1', {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
      });
      fresh.on('error', () => undefined);
      try {
        expect(fresh.status).toBe('connecting');
        const served = pipeline(
          echoModel(),
          featureLookup({
            keyInput: 'user',
            store:
              layout === 'hash'
                ? redisFeatureStore({ client: fresh, prefix: 'user:' })
                : redisFeatureStore({ client: fresh, prefix: 'vec:', layout, fields }),
            features: [{ name: 'age' }],
            target: { input: 'features' },
            timeoutMs: 2000,
          }),
        );
        const out = await served.infer(ids('fresh'));
        expect(Array.from(out.features!.data as Float32Array)).toEqual([23]);
      } finally {
        fresh.disconnect();
      }
    }
  });

  it('a store whose client never connects rejects UNAVAILABLE after readyTimeoutMs, no listener left', async () => {
    const dead = new Redis(await freePort(), '127.0.0.1', {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 20,
    });
    dead.on('error', () => undefined);
    try {
      const store = redisFeatureStore({ client: dead, prefix: 'user:', readyTimeoutMs: 100 });
      await expect(store.getMany(['u1'], ['age'])).rejects.toMatchObject({ code: 'UNAVAILABLE' });
      expect(dead.listenerCount('ready')).toBe(0);
      expect(() => redisFeatureStore({ client: dead, readyTimeoutMs: 0 })).toThrow(
        'options.readyTimeoutMs must be a positive number',
      );
    } finally {
      dead.disconnect();
    }
  });
});
