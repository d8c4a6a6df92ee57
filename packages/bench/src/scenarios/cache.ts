import { closedLoop, interleaved, ratioTable, scenario, timePerCall } from '../harness.js';

/**
 * The response cache on mnist-cnn (onnxruntime-node, one intra-op thread): a hit and a miss
 * against the bare model; the cost of keying a 3x224x224 float input against one mobilenetv2
 * inference; throughput at hit ratios 0, 50, 90 and 99% against the bare model.
 */
export default scenario({
  name: 'cache',
  title: 'Response cache: hits, misses, keying cost and throughput by hit ratio',
  async run({ pick, log, chart, headline }) {
    // Imported here so that other scenarios run even before this package is built.
    const { fromFunction, pipeline } = await import('@mlserve/core');
    const { responseCache, cacheKey } = await import('@mlserve/cache');
    const { mnistHoldout, modelPath } = await import('@mlserve/test-utils');
    const ort = await import('onnxruntime-node');
    const threads = { intraOpNumThreads: 1, interOpNumThreads: 1 };

    const { loadOnnxModel } = await import('@mlserve/backend-onnx');
    const mnist = await loadOnnxModel(modelPath('mnist-cnn.onnx'), { name: 'mnist', ...threads });
    const holdout = mnistHoldout();
    const digit = (i: number) => {
      const data = holdout.image(i % holdout.count);
      // Past the 200 held-out digits, nudge one pixel so that every request is a distinct input.
      data[0] = Math.floor(i / holdout.count) / 1e6;
      return { image: { type: 'float32' as const, dims: [1, 1, 28, 28], data } };
    };

    // 1. Hit versus miss, sequential calls.
    const iterations = pick(3000, 400);
    log(`hit vs miss: ${iterations} sequential calls each`);
    const fixed = digit(7);
    let fresh = 1000;
    const hitCache = pipeline(mnist, responseCache({ max: 1000 }));
    await hitCache.infer(fixed);
    const missCache = pipeline(mnist, responseCache({ max: 1000 }));
    const [bare, hit, miss] = await interleaved(pick(3, 1), [
      {
        name: 'bare model (a new input each call)',
        run: () => timePerCall('bare', () => mnist.infer(digit(fresh++)), { iterations }),
      },
      { name: 'cache hit', run: () => timePerCall('hit', () => hitCache.infer(fixed), { iterations }) },
      {
        name: 'cache miss (key + infer + store)',
        run: () => timePerCall('miss', () => missCache.infer(digit(fresh++)), { iterations }),
      },
    ]);
    const part1 = ratioTable('mnist-cnn, sequential calls, in process', bare!, [hit!, miss!]);
    const summary1 = `Medians: a hit takes ${(hit!.p50 * 1000).toFixed(1)} us against ${(bare!.p50 * 1000).toFixed(1)} us for the model (${(bare!.p50 / hit!.p50).toFixed(1)}x faster); a miss takes ${(miss!.p50 * 1000).toFixed(1)} us (${(((miss!.p50 - bare!.p50) / bare!.p50) * 100).toFixed(0)}% over the bare model).`;

    // 1a. The layer's own cost, around a model that does nothing (a 784-float input, 10 floats out).
    const noop = fromFunction({
      name: 'noop',
      inputs: [{ name: 'image', type: 'float32', dims: [-1, 1, 28, 28] }],
      outputs: [{ name: 'logits', type: 'float32', dims: [-1, 10] }],
      infer: () => ({ logits: { type: 'float32', dims: [1, 10], data: new Float32Array(10) } }),
    });
    const noopHit = pipeline(noop, responseCache({ max: 100_000 }));
    const noopMiss = pipeline(noop, responseCache({ max: 100_000 }));
    const noopMissSolo = pipeline(noop, responseCache({ max: 100_000, coalesce: false }));
    await noopHit.infer(fixed);
    const n = pick(20_000, 3000);
    const [nBare, nHit, nMiss, nMissSolo] = await interleaved(pick(3, 1), [
      {
        name: 'no-op model (a new input each call)',
        run: () => timePerCall('bare', () => noop.infer(digit(fresh++)), { iterations: n }),
      },
      { name: 'cache hit', run: () => timePerCall('hit', () => noopHit.infer(fixed), { iterations: n }) },
      {
        name: 'cache miss',
        run: () => timePerCall('miss', () => noopMiss.infer(digit(fresh++)), { iterations: n }),
      },
      {
        name: 'cache miss, coalesce: false',
        run: () => timePerCall('miss', () => noopMissSolo.infer(digit(fresh++)), { iterations: n }),
      },
    ]);
    const us = (ms: number) => (ms * 1000).toFixed(1);
    const part1a = `${ratioTable('The layer alone: a no-op model with a 28x28 input', nBare!, [nHit!, nMiss!, nMissSolo!])}\nMedian per call: ${us(nBare!.p50)} us bare, ${us(nHit!.p50)} us for a hit, ${us(nMiss!.p50)} us for a miss (${us(nMissSolo!.p50)} us without coalescing). Means run higher on a miss because every miss grows the heap the cache keeps (GC), and this machine deschedules the process often.\n`;

    // 1b. The same through Redis on loopback (a hit is a round trip plus decoding).
    let part1b = '';
    const { hasBinary, startRedis } = await import('@mlserve/test-utils');
    if (hasBinary('redis-server')) {
      const { redisStore } = await import('@mlserve/cache');
      const { default: Redis } = await import('ioredis');
      const server = await startRedis();
      const client = new Redis(server.port, '127.0.0.1', {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        lazyConnect: true,
      });
      await client.connect();
      try {
        const viaRedis = pipeline(
          mnist,
          responseCache({ store: redisStore({ client, timeoutMs: 1000 }), ttlMs: 600_000 }),
        );
        await viaRedis.infer(fixed);
        await new Promise((r) => setTimeout(r, 50));
        log(`redis: ${iterations} sequential calls each`);
        const [bareR, redisHit, redisMiss] = await interleaved(pick(3, 1), [
          {
            name: 'bare model (a new input each call)',
            run: () => timePerCall('bare', () => mnist.infer(digit(fresh++)), { iterations }),
          },
          {
            name: 'Redis hit (GET + decode)',
            run: () => timePerCall('hit', () => viaRedis.infer(fixed), { iterations }),
          },
          {
            name: 'Redis miss (GET + infer + SET)',
            run: () => timePerCall('miss', () => viaRedis.infer(digit(fresh++)), { iterations }),
          },
        ]);
        part1b = ratioTable('mnist-cnn, sequential calls, Redis on loopback', bareR!, [
          redisHit!,
          redisMiss!,
        ]);
      } finally {
        client.disconnect();
        // startRedis() unrefs the child: keep the loop alive until it has exited.
        const alive = setInterval(() => {}, 1000);
        await server.stop();
        clearInterval(alive);
      }
    } else {
      part1b = '_Redis figures skipped: redis-server is not installed._';
    }

    // 2. Keying a 3x224x224 float input against one mobilenetv2 inference.
    log('keying cost vs mobilenetv2');
    const mobilenet = await ort.InferenceSession.create(modelPath('mobilenetv2.onnx'), threads);
    const pixels = new Float32Array(3 * 224 * 224).map((_, i) => (i % 251) / 251);
    const image = { type: 'float32' as const, dims: [1, 3, 224, 224], data: pixels };
    const feeds = { input: new ort.Tensor('float32', pixels, [1, 3, 224, 224]) };
    const [infer, key] = await interleaved(pick(3, 1), [
      {
        name: 'mobilenetv2 inference',
        run: () =>
          timePerCall('mobilenet', () => mobilenet.run(feeds), { iterations: pick(60, 15), warmup: 3 }),
      },
      {
        name: 'cacheKey(3x224x224 float32)',
        run: () =>
          timePerCall('key', () => cacheKey({ name: 'mobilenet', version: '1' }, { input: image }), {
            iterations: pick(600, 100),
          }),
      },
    ]);
    const part2 = `${ratioTable('Keying a 3x224x224 float32 input (602 KB, SHA-256) vs one mobilenetv2 inference', infer!, [key!])}\nMedians: keying costs ${((key!.p50 / infer!.p50) * 100).toFixed(2)}% of one inference (${(key!.p50 * 1000).toFixed(0)} us vs ${infer!.p50.toFixed(2)} ms).\n`;
    await mobilenet.release();

    // 3. Throughput at hit ratios, closed loop.
    const concurrency = 8;
    const durationMs = pick(3000, 800);
    log(`hit ratios: ${concurrency} callers, ${durationMs} ms each`);
    const hot = Array.from({ length: 50 }, (_, i) => digit(i));
    const ratioRun = (ratio: number) => {
      const cached = pipeline(mnist, responseCache({ max: 10_000 }));
      let seq = 0;
      let cold = 100_000;
      return async () => {
        for (const h of hot) await cached.infer(h);
        const r = await closedLoop(
          `${ratio}% hits`,
          () => {
            // Deterministic mix: `ratio` of every 100 requests reuse a hot digit.
            const slot = seq++ % 100;
            return cached.infer(slot < ratio ? hot[slot % hot.length]! : digit(cold++));
          },
          { concurrency, durationMs, warmupMs: 100 },
        );
        const s = cached.stats!().cache as { hitRatio: number };
        r.extra = { 'measured hit ratio': s.hitRatio.toFixed(2) };
        return r;
      };
    };
    const ratios = [0, 50, 90, 99];
    const results = await interleaved(pick(2, 1), [
      {
        name: 'bare model',
        run: () =>
          closedLoop('bare', (i) => mnist.infer(digit(i)), { concurrency, durationMs, warmupMs: 100 }),
      },
      ...ratios.map((r) => ({ name: `cache, ${r}% hits`, run: ratioRun(r) })),
    ]);
    const [base, ...withCache] = results;
    const part3 = ratioTable(`mnist-cnn, ${concurrency} callers, closed loop`, base!, withCache);
    headline(
      `**Cache** (mnist-cnn, ${concurrency} callers): throughput x the bare model at ${withCache.map((r) => `${r.name.replace('cache, ', '')} ${(r.throughput / base!.throughput).toFixed(2)}x`).join(', ')}; a hit's median is ${(bare!.p50 / hit!.p50).toFixed(1)}x faster than an inference.`,
    );
    const picture = chart(
      'cache-hit-ratio',
      'Throughput by hit ratio, x bare model',
      withCache.map((r) => ({ label: r.name, value: r.throughput / base!.throughput })),
      'x bare model',
      { markAt: 1 },
    );
    await mnist.dispose();
    return [
      'The machine is shared and noisy: read the ratios, not the absolute figures.',
      part1,
      summary1,
      part1a,
      part1b,
      part2,
      part3,
      picture,
    ].join('\n\n');
  },
});
