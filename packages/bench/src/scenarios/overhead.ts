import type { Tensors } from '@mlserve/core';
import { interleaved, type LoadResult, ratioTable, scenario, timePerCall } from '../harness.js';

/**
 * What the whole serving stack costs on a request that misses the cache: `pipeline(model,
 * metrics(), validation(), responseCache(), batching())` at concurrency 1 (so batching only adds
 * its bookkeeping, never a wait), every request a new input, against a raw onnxruntime-node
 * `session.run` loop on the same kind of session (1 intra-op thread). mlp (compute is almost
 * nothing, so this is the overhead in full) and mnist-cnn (a small real model).
 */
/** CPU time per call in microseconds (process CPU over the window, every thread). */
function cpuPerCall(r: LoadResult): number {
  return (r.cpuCores * r.durationMs * 1000) / Math.max(1, r.requests);
}

export default scenario({
  name: 'overhead',
  title: 'Overhead: the full pipeline on a cache miss against a raw session.run loop',
  async run({ pick, log, chart, headline }) {
    // Imported here so that other scenarios run even before these packages are built.
    const { pipeline, validation } = await import('@mlserve/core');
    const { loadOnnxModel } = await import('@mlserve/backend-onnx');
    const { metrics } = await import('@mlserve/metrics');
    const { responseCache } = await import('@mlserve/cache');
    const { batching } = await import('@mlserve/batching');
    const { modelPath } = await import('@mlserve/test-utils');
    const ort = await import('onnxruntime-node');
    const { Registry } = await import('prom-client');

    const threads = { intraOpNumThreads: 1, interOpNumThreads: 1 };
    const cases = [
      { file: 'mlp.onnx' as const, input: 'features', dims: [1, 16], iterations: pick(20_000, 2_000) },
      { file: 'mnist-cnn.onnx' as const, input: 'image', dims: [1, 1, 28, 28], iterations: pick(4_000, 500) },
    ];
    const sections: string[] = [];
    const summary: string[] = [];
    const heads: string[] = [];
    const bars: { label: string; value: number; highlight?: boolean }[] = [];
    for (const c of cases) {
      const size = c.dims.reduce((a, b) => a * b, 1);
      // A pool of distinct inputs; each call also stamps its index into the first element, so no
      // two requests are the same and every one misses the cache.
      const pool = Array.from({ length: 64 }, (_, k) =>
        Float32Array.from({ length: size }, (_, i) => ((i * 31 + k * 7) % 97) / 97),
      );
      const data = (i: number) => {
        const d = pool[i % pool.length]!.slice();
        d[0] = i / 1e7;
        return d;
      };
      const session = await ort.InferenceSession.create(modelPath(c.file), threads);
      const model = await loadOnnxModel(modelPath(c.file), threads);
      const served = pipeline(
        model,
        metrics({ registry: new Registry() }),
        validation(),
        responseCache({ max: 10_000 }),
        batching({ maxBatchSize: 32, maxDelayMs: 'auto' }),
      );
      let seq = 0;
      const rawCall = () => session.run({ [c.input]: new ort.Tensor('float32', data(seq++), c.dims) });
      const servedCall = () => {
        const inputs: Tensors = { [c.input]: { type: 'float32', dims: c.dims, data: data(seq++) } };
        return served.infer(inputs);
      };
      log(`${c.file}: ${c.iterations} sequential calls per round, interleaved`);
      const [raw, full] = (await interleaved(pick(3, 1), [
        {
          name: 'raw session.run loop',
          run: () => timePerCall('raw', rawCall, { iterations: c.iterations, warmup: 200 }),
        },
        {
          name: 'pipeline(metrics, validation, responseCache, batching), cache miss',
          run: () => timePerCall('full', servedCall, { iterations: c.iterations, warmup: 200 }),
        },
      ])) as [LoadResult, LoadResult];
      for (const r of [raw, full]) {
        r.extra = {
          'mean (us)': (r.mean * 1000).toFixed(1),
          'time per call x raw': (r.mean / raw.mean).toFixed(3),
        };
      }
      const stats = served.stats?.() as { cache?: { misses?: number; hits?: number } } | undefined;
      const hits = stats?.cache?.hits ?? 0;
      sections.push(ratioTable(`${c.file}, batch 1, concurrency 1, a new input every call`, raw, [full]));
      summary.push(
        `${c.file}: the full pipeline takes ${(full.mean / raw.mean).toFixed(2)}x the time of raw session.run ` +
          `(mean ${(full.mean * 1000).toFixed(1)} us vs ${(raw.mean * 1000).toFixed(1)} us, ` +
          `+${((full.mean - raw.mean) * 1000).toFixed(1)} us per request; median ${(full.p50 * 1000).toFixed(1)} vs ${(raw.p50 * 1000).toFixed(1)} us, ${(full.p50 / raw.p50).toFixed(2)}x; ` +
          `CPU per call ${cpuPerCall(full).toFixed(1)} vs ${cpuPerCall(raw).toFixed(1)} us, ${(cpuPerCall(full) / cpuPerCall(raw)).toFixed(2)}x)` +
          `${hits > 0 ? `; ${hits} cache hits (expected none)` : ''}.`,
      );
      heads.push(
        `${c.file}: +${((full.p50 - raw.p50) * 1000).toFixed(0)} us on the median request (${(full.p50 / raw.p50).toFixed(2)}x), ${(full.mean / raw.mean).toFixed(2)}x the mean time`,
      );
      bars.push(
        { label: `${c.file.replace('.onnx', '')}: raw session.run`, value: 1, highlight: true },
        { label: `${c.file.replace('.onnx', '')}: full pipeline`, value: full.mean / raw.mean },
      );
      await model.dispose();
      await session.release();
    }
    headline(
      `**Overhead** of the full pipeline (metrics, validation, cache miss, batching; concurrency 1) over a raw \`session.run\` loop: ${heads.join('; ')}.`,
    );
    const picture = chart(
      'overhead',
      'Time per request on a cache miss, x raw session.run',
      bars,
      'x the time of a raw session.run call (lower is better)',
      { markAt: 1 },
    );
    return [
      'Both sides run onnxruntime-node with one intra-op thread, sequential calls (concurrency 1), each call a new input (the cache always misses, batching never waits for company). Rounds interleaved, median round kept. The machine is shared and noisy: read the ratios.',
      '',
      ...summary.map((s) => `- ${s}`),
      '',
      ...sections,
      picture,
    ].join('\n');
  },
});
