import { closedLoop, interleaved, ratioTable, scenario } from '../harness.js';

/**
 * Online feature lookup from a real Redis: 32 features per request, 64 concurrent callers, each
 * request one random entity of 10,000. Baseline: one store round trip per request (`merge: false`);
 * against it, lookups merged into one round trip per event-loop turn (HMGET pipeline, and the
 * binary layout with one MGET).
 */
export default scenario({
  name: 'features',
  title: 'Feature lookup: 32 features from Redis, merged vs one round trip per request, 64 callers',
  async run({ pick, log, chart }) {
    // Imported here so that other scenarios run even before this package is built.
    const { fromFunction, pipeline, tensor } = await import('@mlserve/core');
    const { featureLookup, redisFeatureStore, encodeBinaryFeatures } = await import('@mlserve/features');
    const { startRedis } = await import('@mlserve/test-utils');
    const { Redis } = await import('ioredis');
    const server = await startRedis();
    const client = new Redis(server.port, '127.0.0.1', { enableOfflineQueue: true });
    try {
      const names = Array.from({ length: 32 }, (_, i) => `f${i}`);
      const entities = 10_000;
      log(`writing ${entities} entities x ${names.length} features`);
      for (let start = 0; start < entities; start += 500) {
        const p = client.pipeline();
        for (let e = start; e < start + 500; e++) {
          const record = Object.fromEntries(names.map((n, i) => [n, (e * 31 + i) % 1000]));
          p.hset(`u:${e}`, record);
          p.set(`v:${e}`, encodeBinaryFeatures(names, record));
        }
        await p.exec();
      }
      const model = fromFunction({
        name: 'scorer',
        inputs: [{ name: 'features', type: 'float32', dims: [-1, 32] }],
        outputs: [{ name: 'score', type: 'float32', dims: [-1, 1] }],
        infer: ({ features }) => {
          const x = features!.data as Float32Array;
          let s = 0;
          for (const v of x) s += v;
          return { score: { type: 'float32', dims: [1, 1], data: Float32Array.of(s) } };
        },
      });
      const features = names.map((name) => ({ name, default: 0 }));
      const make = (layout: 'hash' | 'binary', merge: boolean, maxKeysPerCall = 16) =>
        pipeline(
          model,
          featureLookup({
            keyInput: 'user',
            store: redisFeatureStore({
              client,
              prefix: layout === 'hash' ? 'u:' : 'v:',
              layout,
              fields: names,
            }),
            features,
            target: { input: 'features' },
            timeoutMs: 1000,
            merge,
            maxKeysPerCall,
          }),
        );
      const configs = {
        perRequest: make('hash', false),
        mergedOneCall: make('hash', true, 64),
        merged: make('hash', true),
        mergedBinary: make('binary', true),
      };
      let n = 0;
      const call = (m: (typeof configs)['merged']) => () =>
        m.infer({ user: tensor('string', [String((n++ * 7919) % entities)]) });
      const durationMs = pick(3000, 1000);
      log(`64 callers, ${durationMs} ms per configuration, interleaved`);
      const results = await interleaved(pick(3, 1), [
        {
          name: 'one HMGET round trip per request',
          run: () => closedLoop('a', call(configs.perRequest), { concurrency: 64, durationMs }),
        },
        {
          name: 'merged per tick, one pipeline of up to 64 HMGET',
          run: () => closedLoop('b', call(configs.mergedOneCall), { concurrency: 64, durationMs }),
        },
        {
          name: 'merged per tick, pipelines of 16 HMGET (default)',
          run: () => closedLoop('b2', call(configs.merged), { concurrency: 64, durationMs }),
        },
        {
          name: 'merged per tick, binary layout (MGET of 16)',
          run: () => closedLoop('c', call(configs.mergedBinary), { concurrency: 64, durationMs }),
        },
      ]);
      const stats = Object.entries(configs).map(([k, m]) => {
        const s = (m.stats!() as { features: { requests: number; roundTrips: number } }).features;
        return `${k}: ${(s.requests / Math.max(1, s.roundTrips)).toFixed(1)} requests per round trip`;
      });
      const picture = chart(
        'features',
        'Feature lookup from Redis: throughput, x one round trip per request',
        results.map((r, i) => ({
          label: r.name,
          value: r.throughput / results[0]!.throughput,
          highlight: i === 0,
        })),
        'x the throughput of one HMGET round trip per request (64 callers)',
        { markAt: 1 },
      );
      return `${ratioTable('32 features per request, 64 concurrent callers, real Redis on loopback', results[0]!, results.slice(1))}\n${stats.join('; ')}. Redis runs on the same shared 2-core machine, so its CPU competes with the server's; the figures are noisy.\n\n${picture}\n`;
    } finally {
      client.disconnect();
      // startRedis() unrefs the child: keep the loop alive until its exit event arrives.
      const keepAlive = setInterval(() => undefined, 1000);
      await server.stop();
      clearInterval(keepAlive);
    }
  },
});
