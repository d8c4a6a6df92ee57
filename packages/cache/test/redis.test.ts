import { fromFunction, type InferContext, pipeline, type Tensors, tensor } from '@mlserve/core';
import {
  freePort,
  mnistHoldout,
  modelPath,
  type RedisServer,
  requireService,
  startRedis,
} from '@mlserve/test-utils';
import Redis from 'ioredis';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CacheStats, responseCache } from '../src/cache.js';
import { decodeTensors } from '../src/codec.js';
import { cacheKey } from '../src/key.js';
import { redisStore } from '../src/redis-store.js';
import { memoryStore } from '../src/store.js';
import { tieredStore } from '../src/tiered-store.js';

const haveRedis = requireService('redis-server', 'apt-get install -y redis-server');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function counter(name = 'double', delayMs = 0) {
  const calls: Tensors[] = [];
  const model = fromFunction({
    name,
    inputs: [{ name: 'x', type: 'float32', dims: [-1, -1] }],
    outputs: [{ name: 'y', type: 'float32', dims: [-1, -1] }],
    concurrency: 64,
    async infer(inputs) {
      calls.push(inputs);
      if (delayMs) await sleep(delayMs);
      return {
        y: {
          type: 'float32',
          dims: inputs.x!.dims,
          data: (inputs.x!.data as Float32Array).map((v) => v * 2),
        },
      };
    },
  });
  return { model, calls };
}
const input = (...v: number[]) => ({ x: tensor('float32', v, [1, v.length]) });
const stats = (m: { stats?: () => Record<string, unknown> }) => m.stats!().cache as CacheStats;

async function waitFor(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await sleep(10);
  }
}

describe.runIf(haveRedis)('redisStore against a real redis-server', () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  let prefixSeq = 0;
  const prefix = () => `test${++prefixSeq}:`;

  async function connect(): Promise<Redis> {
    const client = new Redis(server.port, '127.0.0.1', {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 50,
      lazyConnect: true,
    });
    client.on('error', () => {});
    await client.connect();
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await server?.stop();
  });

  it('validates its options with exact messages', () => {
    const client = { getBuffer: async () => null, set: async () => 'OK', del: async () => 0 };
    expect(() => redisStore({ client: {} as never })).toThrow(
      'redisStore: options.client must be an ioredis client',
    );
    expect(() => redisStore({ client, timeoutMs: 0 })).toThrow(
      'redisStore: options.timeoutMs must be a positive number',
    );
    expect(() => redisStore({ client, breaker: { failures: 0 } })).toThrow(
      'redisStore: options.breaker.failures must be a positive integer',
    );
    expect(() => tieredStore({ near: memoryStore({ max: 1 }), far: undefined as never })).toThrow(
      'tieredStore: options.near and options.far must be CacheStores',
    );
    expect(redisStore({ client, breaker: false }).kind).toBe('redis');
  });

  it('lets replicas share answers, stored as compact binary with a PX expiry', async () => {
    const p = prefix();
    const [c1, c2] = [await connect(), await connect()];
    const a = counter();
    const b = counter();
    const replicaA = pipeline(
      a.model,
      responseCache({ store: redisStore({ client: c1, prefix: p }), ttlMs: 60_000 }),
    );
    const replicaB = pipeline(
      b.model,
      responseCache({ store: redisStore({ client: c2, prefix: p }), ttlMs: 60_000 }),
    );
    const big = { x: { type: 'float32' as const, dims: [1, 1000], data: new Float32Array(1000).fill(0.1) } };
    await replicaA.infer(big);
    const key = p + cacheKey({ name: 'double', version: '1' }, big);
    await waitFor(async () => (await c1.exists(key)) === 1);
    const raw = (await c1.getBuffer(key))!;
    expect(raw.subarray(0, 4).toString('latin1')).toBe('MLC\u0001');
    expect(raw.byteLength).toBeLessThan(4000 + 64);
    const ttl = await c1.pttl(key);
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    const ctx: InferContext = {};
    const fromB = await replicaB.infer(big, { context: ctx });
    expect(ctx.cacheHit).toBe(true);
    expect(b.calls).toHaveLength(0);
    expect(fromB.y!.data).toEqual(new Float32Array(1000).fill(0.1).map((v) => v * 2));
    // Another prefix (another deployment) does not see it.
    const other = counter();
    const otherDeployment = pipeline(
      other.model,
      responseCache({ store: redisStore({ client: c2, prefix: prefix() }), ttlMs: 60_000 }),
    );
    await otherDeployment.infer(big);
    expect(other.calls).toHaveLength(1);
  });

  it('expires answers through Redis (TTL)', async () => {
    const client = await connect();
    const { model, calls } = counter();
    const served = pipeline(
      model,
      responseCache({ store: redisStore({ client, prefix: prefix() }), ttlMs: 80 }),
    );
    await served.infer(input(1));
    await waitFor(() => stats(served).bytesWritten !== 0);
    await sleep(20);
    await served.infer(input(1));
    expect(calls).toHaveLength(1);
    await sleep(150);
    await served.infer(input(1));
    expect(calls).toHaveLength(2);
  });

  it('coalesces 50 identical concurrent requests into one lookup and one inference', async () => {
    const client = await connect();
    const { model, calls } = counter('double', 30);
    const served = pipeline(
      model,
      responseCache({ store: redisStore({ client, prefix: prefix() }), ttlMs: 60_000 }),
    );
    const before = Number((await client.info('stats')).match(/keyspace_misses:(\d+)/)![1]);
    const outs = await Promise.all(Array.from({ length: 50 }, () => served.infer(input(3))));
    const after = Number((await client.info('stats')).match(/keyspace_misses:(\d+)/)![1]);
    expect(calls).toHaveLength(1);
    expect(after - before).toBe(1);
    for (const o of outs) expect([...(o.y!.data as Float32Array)]).toEqual([6]);
    expect(stats(served)).toMatchObject({ coalesced: 49, inferences: 1 });
  });

  it('serves a corrupt entry as a miss, counts it, and overwrites it', async () => {
    const client = await connect();
    const p = prefix();
    const { model, calls } = counter();
    const served = pipeline(
      model,
      responseCache({ store: redisStore({ client, prefix: p }), ttlMs: 60_000 }),
    );
    const key = p + cacheKey({ name: 'double', version: '1' }, input(4));
    await client.set(key, '{"y":[8]}');
    const out = await served.infer(input(4));
    expect([...(out.y!.data as Float32Array)]).toEqual([8]);
    expect(stats(served).storeErrors).toBe(1);
    await waitFor(async () => decodeOk(await client.getBuffer(key)));
    await served.infer(input(4));
    expect(calls).toHaveLength(1);
  });

  it('keeps serving as misses while Redis is down, and hits resume after a restart', async () => {
    const client = await connect();
    const { model, calls } = counter();
    const store = redisStore({
      client,
      prefix: prefix(),
      timeoutMs: 100,
      breaker: { failures: 3, cooldownMs: 150 },
    });
    const served = pipeline(model, responseCache({ store, ttlMs: 60_000 }));
    await served.infer(input(5));
    await waitFor(() => stats(served).bytesWritten !== 0);
    await sleep(20);
    await served.infer(input(5));
    expect(calls).toHaveLength(1);
    await server.kill();
    try {
      for (let i = 0; i < 10; i++) {
        const out = await served.infer(input(5));
        expect([...(out.y!.data as Float32Array)]).toEqual([10]);
      }
      expect(calls).toHaveLength(11);
      // The first failures count; then the breaker stops calling Redis for a while.
      expect(stats(served).storeErrors).toBeGreaterThanOrEqual(3);
      expect(stats(served)).toMatchObject({ breakerOpen: true, breakerOpens: 1 });
      expect(stats(served).shortCircuited).toBeGreaterThan(0);
    } finally {
      await server.restart();
    }
    await waitFor(() => client.status === 'ready');
    await sleep(200); // past the cooldown
    await served.infer(input(5)); // empty Redis after the crash: a miss that writes again
    await waitFor(async () => (await client.dbsize()) > 0);
    const ctx: InferContext = {};
    await served.infer(input(5), { context: ctx });
    expect(ctx.cacheHit).toBe(true);
    expect(calls).toHaveLength(12);
    expect(stats(served).breakerOpen).toBe(false);
  });

  it('stops paying the timeout once the breaker opens on a hung Redis, and closes it when Redis answers', async () => {
    const client = await connect();
    const { model, calls } = counter();
    const p = prefix();
    const store = redisStore({
      client,
      prefix: p,
      timeoutMs: 30,
      breaker: { failures: 2, cooldownMs: 300 },
    });
    const served = pipeline(model, responseCache({ store, ttlMs: 60_000 }));
    server.process.kill('SIGSTOP');
    try {
      await served.infer(input(21)); // GET and SET time out: two failures open the breaker
      await waitFor(() => stats(served).breakerOpen === true);
      const timeoutsBefore = stats(served).timeouts as number;
      for (let i = 0; i < 20; i++) await served.infer(input(22 + i));
      expect(calls).toHaveLength(21);
      expect(stats(served).timeouts).toBe(timeoutsBefore); // no command was sent to the hung server
      expect(stats(served).shortCircuited).toBe(40);
    } finally {
      server.process.kill('SIGCONT');
    }
    await sleep(350);
    await served.infer(input(21));
    // Redis answers again: the write lands and the breaker is closed.
    await waitFor(async () => (await client.keys(`${p}*`)).length === 1);
    expect(stats(served).breakerOpen).toBe(false);
  });

  it('treats a hung Redis as a miss within timeoutMs (the connection stays open, no answer)', async () => {
    const client = await connect();
    const { model, calls } = counter();
    const served = pipeline(
      model,
      responseCache({ store: redisStore({ client, prefix: prefix(), timeoutMs: 40 }), ttlMs: 60_000 }),
    );
    server.process.kill('SIGSTOP');
    try {
      const t0 = performance.now();
      const out = await served.infer(input(6));
      const ms = performance.now() - t0;
      expect([...(out.y!.data as Float32Array)]).toEqual([12]);
      expect(ms).toBeLessThan(400); // 10x the timeout: the request did not wait for Redis
      expect(calls).toHaveLength(1);
      await waitFor(() => stats(served).storeErrors >= 2); // the GET and the fire-and-forget SET
      expect(stats(served).timeouts).toBeGreaterThanOrEqual(2);
    } finally {
      server.process.kill('SIGCONT');
    }
  });

  it('serves hot answers from a near in-process tier, sharing through Redis (tieredStore)', async () => {
    const p = prefix();
    const [c1, c2] = [await connect(), await connect()];
    const a = counter();
    const b = counter();
    const tiered = (client: Redis) =>
      tieredStore({
        near: memoryStore({ max: 100 }),
        far: redisStore({ client, prefix: p }),
        nearTtlMs: 5_000,
      });
    const replicaA = pipeline(a.model, responseCache({ store: tiered(c1), ttlMs: 60_000 }));
    const replicaB = pipeline(b.model, responseCache({ store: tiered(c2), ttlMs: 60_000 }));
    await replicaA.infer(input(11));
    await waitFor(async () => (await c1.keys(`${p}*`)).length === 1);
    const redisHits = async () => Number((await c1.info('stats')).match(/keyspace_hits:(\d+)/)![1]);
    const h0 = await redisHits();
    const ctx: InferContext = {};
    await replicaB.infer(input(11), { context: ctx }); // far hit, copied near
    expect(ctx.cacheHit).toBe(true);
    for (let i = 0; i < 5; i++) await replicaB.infer(input(11)); // near hits: no Redis round trip
    expect((await redisHits()) - h0).toBe(1);
    expect(b.calls).toHaveLength(0);
    expect(stats(replicaB)).toMatchObject({
      hits: 6,
      nearHits: 5,
      farHits: 1,
      store: 'tiered(memory,redis)',
    });
    // With Redis hung, near hits still answer and far misses run the model.
    server.process.kill('SIGSTOP');
    try {
      await replicaB.infer(input(11));
      await replicaB.infer(input(12));
      expect(b.calls).toHaveLength(1);
      expect(stats(replicaB).nearHits).toBe(6);
    } finally {
      server.process.kill('SIGCONT');
    }
  });

  it("caches a real onnxruntime mnist-cnn: hits equal the model's own answers", async () => {
    const client = await connect();
    const session = await ort.InferenceSession.create(modelPath('mnist-cnn.onnx'), {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    let runs = 0;
    const mnist = fromFunction({
      name: 'mnist',
      inputs: [{ name: 'image', type: 'float32', dims: [-1, 1, 28, 28] }],
      outputs: [{ name: 'logits', type: 'float32', dims: [-1, 10] }],
      async infer({ image }) {
        runs++;
        const r = await session.run({
          image: new ort.Tensor('float32', image!.data as Float32Array, image!.dims),
        });
        const logits = r.logits!;
        return {
          logits: { type: 'float32', dims: [...logits.dims], data: (logits.data as Float32Array).slice() },
        };
      },
      dispose: () => session.release(),
    });
    const p = prefix();
    const served = pipeline(
      mnist,
      responseCache({ store: redisStore({ client, prefix: p }), ttlMs: 60_000 }),
    );
    const digits = mnistHoldout();
    const first: Float32Array[] = [];
    for (let i = 0; i < 20; i++) {
      const out = await served.infer({ image: tensor('float32', digits.image(i), [1, 1, 28, 28]) });
      first.push(out.logits!.data as Float32Array);
    }
    await waitFor(async () => (await client.keys(`${p}*`)).length >= 20);
    let correct = 0;
    for (let i = 0; i < 20; i++) {
      const out = await served.infer({ image: tensor('float32', digits.image(i), [1, 1, 28, 28]) });
      const logits = out.logits!.data as Float32Array;
      expect(logits).toEqual(first[i]);
      if (logits.indexOf(Math.max(...logits)) === digits.labels[i]) correct++;
    }
    expect(runs).toBe(20);
    expect(stats(served).hits).toBe(20);
    expect(correct).toBeGreaterThanOrEqual(17);
    await served.dispose();
  });

  it('waits for a client that is still connecting instead of missing (no await of ready needed)', async () => {
    const p = prefix();
    // As a user writes it: construct, serve at once.
    const fresh = new Redis(server.port, '127.0.0.1', { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    fresh.on('error', () => {});
    clients.push(fresh);
    expect(fresh.status).toBe('connecting');
    const c = counter();
    const served = pipeline(
      c.model,
      responseCache({ store: redisStore({ client: fresh, prefix: p, timeoutMs: 2000 }), ttlMs: 60_000 }),
    );
    await served.infer(input(1, 2));
    const key = p + cacheKey({ name: 'double', version: '1' }, input(1, 2));
    await waitFor(async () => fresh.status === 'ready' && (await fresh.exists(key)) === 1);
    const ctx: InferContext = {};
    await served.infer(input(1, 2), { context: ctx });
    expect(ctx.cacheHit).toBe(true);
    expect(c.calls).toHaveLength(1);
    expect(stats(served).storeErrors).toBe(0);
  });

  it('a client that never connects costs a lookup at most timeoutMs and leaves no listener behind', async () => {
    const deadPort = await freePort();
    const dead = new Redis(deadPort, '127.0.0.1', {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 20,
    });
    dead.on('error', () => {});
    clients.push(dead);
    const store = redisStore({ client: dead, prefix: prefix(), timeoutMs: 100, breaker: false });
    for (let i = 0; i < 5; i++) {
      await expect(store.get('k')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    }
    await sleep(150);
    expect(dead.listenerCount('ready')).toBe(0);
  });
});

function decodeOk(raw: Buffer | null): boolean {
  if (!raw) return false;
  try {
    decodeTensors(raw);
    return true;
  } catch {
    return false;
  }
}
