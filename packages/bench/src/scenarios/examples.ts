import { loadOnnxModel } from '@mlserve/backend-onnx';
import { createClient } from '@mlserve/client';
import { type Model, type ModelRegistry, tensor } from '@mlserve/core';
import { freePort, mnistHoldout } from '@mlserve/test-utils';
import { closedLoop, interleaved, type LoadResult, ratioTable, scenario } from '../harness.js';

/** The part of packages/examples/src/fastify-app.ts this scenario uses (loaded from source by tsx). */
interface FastifyExample {
  app: { listen(o: { port: number; host: string }): Promise<string> };
  registry: ModelRegistry;
  close(): Promise<void>;
}
type CreateFastifyApp = (options?: { threads?: number }) => Promise<FastifyExample>;
const EXAMPLE = new URL('../../../examples/src/fastify-app.ts', import.meta.url).href;
const MODEL = new URL('../../../examples/model-repository/mnist/1/model.onnx', import.meta.url);

/**
 * The Fastify example end to end, as a user runs it: KServe V2 JSON over loopback HTTP into
 * validation, the response cache, batching and a pool of 2 workers x 1 onnxruntime thread.
 * Baseline: the same MNIST model called in process on the main thread (1 intra-op thread), no
 * HTTP, no layers. Distinct digits defeat the cache (a unique value in a corner pixel that is
 * always 0 in MNIST); "same digit" shows what the cache makes of repeats.
 */
export default scenario({
  name: 'examples',
  title: 'Examples: the Fastify app (HTTP + validation + cache + batching + 2 workers) vs the bare model',
  async run({ pick, log, chart }) {
    const { images, count } = mnistHoldout();
    const digits = Array.from({ length: count }, (_, i) => images.slice(i * 784, (i + 1) * 784));
    const concurrency = 16;
    const durationMs = pick(4_000, 1_500);

    log('loading the bare model and the Fastify example (2 workers)');
    const bare: Model = await loadOnnxModel(MODEL.pathname, { intraOpNumThreads: 1, spinning: false });
    const { createFastifyApp } = (await import(EXAMPLE)) as { createFastifyApp: CreateFastifyApp };
    const example = await createFastifyApp();
    const port = await freePort();
    await example.app.listen({ port, host: '127.0.0.1' });
    // The requests go as a JSON user's would (V2 JSON, what the README's curl line sends), through
    // @mlserve/client with binary tensors off.
    const client = createClient({ url: `http://127.0.0.1:${port}`, binary: false, connections: concurrency });
    const post = (image: Float32Array) =>
      client.infer('mnist', { image: tensor('float32', image, [1, 1, 28, 28]) });
    let unique = 1;
    // Triton's counters from /metrics: inferences per model execution is the mean batch size.
    const counters = async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const read = (name: string) =>
        Number(/ ([\d.e+-]+)$/.exec(text.split('\n').find((l) => l.startsWith(`${name}{`)) ?? '')?.[1] ?? 0);
      return {
        inferences: read('nv_inference_count'),
        executions: read('nv_inference_exec_count'),
        hits: read('nv_cache_num_hits_per_model'),
      };
    };
    const viaHttp = (name: string, image: (i: number) => Float32Array) => async (): Promise<LoadResult> => {
      const before = await counters();
      const r = await closedLoop(name, (i) => post(image(i)), { concurrency, durationMs });
      const after = await counters();
      const executions = after.executions - before.executions;
      const inferences = after.inferences - before.inferences;
      r.extra = {
        'mean batch':
          executions > 0 ? ((inferences - (after.hits - before.hits)) / executions).toFixed(1) : '-',
        'cache hits': `${Math.round((100 * (after.hits - before.hits)) / Math.max(1, inferences))}%`,
      };
      return r;
    };
    try {
      const results = await interleaved(pick(3, 1), [
        {
          name: 'bare model, in process, main thread',
          run: () =>
            closedLoop(
              'bare',
              (i) =>
                bare.infer({ image: { type: 'float32', dims: [1, 1, 28, 28], data: digits[i % count]! } }),
              { concurrency, durationMs },
            ),
        },
        {
          name: 'Fastify example, V2 JSON, distinct digits',
          run: viaHttp('distinct', (i) => {
            // A unique value in pixel 0 (always 0 in MNIST), so the cache cannot answer.
            const image = digits[i % count]!.slice();
            image[0] = (unique++ % 1e6) * 1e-9;
            return image;
          }),
        },
        { name: 'Fastify example, V2 JSON, same digit', run: viaHttp('same', () => digits[0]!) },
        {
          name: 'Fastify example, GET /hello (HTTP alone, no model)',
          run: () =>
            closedLoop(
              'hello',
              async () => {
                const res = await fetch(`http://127.0.0.1:${port}/hello`);
                await res.arrayBuffer();
              },
              { concurrency, durationMs },
            ),
        },
      ]);
      const [base, distinct, same, hello] = results as [LoadResult, LoadResult, LoadResult, LoadResult];
      const picture = chart(
        'examples',
        'The Fastify example: throughput, x the bare model',
        results.map((r) => ({ label: r.name, value: r.throughput / base.throughput, highlight: r === base })),
        `x the bare model's throughput (${concurrency} callers)`,
        { markAt: 1 },
      );
      return (
        `${ratioTable(`mnist-cnn, ${concurrency} callers, ${durationMs} ms windows`, base, [distinct, same, hello])}\n` +
        'The HTTP client runs in the same process as the server and shares its 2 cores, so the HTTP rows ' +
        'pay for both ends of every request. The machine is shared and noisy: read the ratios, not the ' +
        `absolute figures. Distinct digits over HTTP reach ${(distinct.throughput / base.throughput).toFixed(2)}x ` +
        `the bare model's throughput; repeats, answered by the cache, ${(same.throughput / base.throughput).toFixed(2)}x; ` +
        `an empty GET, ${(hello.throughput / base.throughput).toFixed(2)}x. This model computes in well under a ` +
        'millisecond, so HTTP and the JSON encoding of 784 numbers, not the model, set the pace; for such ' +
        'models use the V2 binary tensor extension (see the http scenario) or run them on the device, as the page does.\n\n' +
        `${picture}\n`
      );
    } finally {
      await client.close();
      await Promise.all([bare.dispose(), example.close()]);
    }
  },
});
