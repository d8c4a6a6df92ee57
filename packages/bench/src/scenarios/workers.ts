import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import type { Model, Tensors } from '@mlserve/core';
import { modelPath } from '@mlserve/test-utils';
import { workerPool } from '@mlserve/workers';
import { closedLoop, interleaved, type LoadResult, ratioTable, scenario } from '../harness.js';

/**
 * mobilenetv2 saturating both cores: one main-thread session with 2 intra-op threads against a
 * pool of 2 workers with 1 intra-op thread each. Throughput should hold (>= 0.9x) while the
 * event loop stays free (loop delay p99 <= 5 ms with the pool).
 */
export default scenario({
  name: 'workers',
  title: 'Worker pool: mobilenetv2 on 2 workers x 1 thread vs the main thread x 2 threads',
  async run({ pick, log, chart, headline }) {
    const source = modelPath('mobilenetv2.onnx');
    const image = new Float32Array(3 * 224 * 224).map((_, i) => Math.sin(i) * 0.5);
    // A fresh array per call: the pool moves (detaches) whole-buffer inputs; both sides pay the copy.
    const inputs = (): Tensors => ({
      input: { type: 'float32', dims: [1, 3, 224, 224], data: image.slice() },
    });
    const durationMs = pick(5_000, 1_200);
    const concurrency = 4;
    log('loading the main-thread session and the pool');
    const main: Model = await loadOnnxModel(source, { intraOpNumThreads: 2, interOpNumThreads: 1 });
    const pool: Model = await workerPool({ backend: 'onnx', source, threads: 2, intraOpThreads: 1 });
    try {
      await Promise.all([main.infer(inputs()), pool.infer(inputs()), pool.infer(inputs())]);
      const loop = (r: LoadResult): LoadResult => ({
        ...r,
        extra: { 'event-loop delay p99 (ms)': r.loopDelayP99.toFixed(2) },
      });
      log(`${concurrency} callers, ${durationMs} ms windows, interleaved`);
      const [inThread, pooled] = await interleaved(pick(3, 1), [
        {
          name: 'main thread, 1 session x 2 intra-op',
          run: async () =>
            loop(await closedLoop('main', () => main.infer(inputs()), { concurrency, durationMs })),
        },
        {
          name: 'workerPool, 2 workers x 1 intra-op',
          run: async () =>
            loop(await closedLoop('pool', () => pool.infer(inputs()), { concurrency, durationMs })),
        },
      ]);
      // The machine's own floor: event-loop delay with nothing to do (other processes still run).
      const idle = monitorEventLoopDelay({ resolution: 1 });
      idle.enable();
      await new Promise((r) => setTimeout(r, pick(2_000, 500)));
      idle.disable();
      const floor = idle.percentile(99) / 1e6;
      const ratio = pooled!.throughput / inThread!.throughput;
      headline(
        `**Workers**: mobilenetv2 on \`workerPool\` (2 x 1 thread) reaches ${ratio.toFixed(2)}x the main thread's throughput, with an event-loop delay p99 of ${pooled!.loopDelayP99.toFixed(1)} ms against ${inThread!.loopDelayP99.toFixed(1)} ms.`,
      );
      const picture = chart(
        'workers',
        'mobilenetv2: main thread vs worker pool',
        [
          { label: 'throughput, main thread', value: 1, highlight: true },
          { label: 'throughput, workerPool', value: ratio },
          {
            label: 'event-loop delay p99, main thread',
            value: inThread!.loopDelayP99 / Math.max(inThread!.loopDelayP99, 1e-3),
            highlight: true,
          },
          {
            label: 'event-loop delay p99, workerPool',
            value: pooled!.loopDelayP99 / Math.max(inThread!.loopDelayP99, 1e-3),
          },
        ],
        'x the main-thread figure (throughput: higher is better; loop delay: lower is better)',
        { markAt: 1 },
      );
      return (
        `${ratioTable(`mobilenetv2, batch 1, ${concurrency} callers`, inThread!, [pooled!])}\n` +
        `Throughput of the pool over the main-thread session: ${ratio.toFixed(2)}x (target >= 0.9). ` +
        `Event-loop delay p99: ${pooled!.loopDelayP99.toFixed(2)} ms with the pool (target <= 5 ms), ` +
        `${inThread!.loopDelayP99.toFixed(2)} ms with the session on the main thread; ` +
        `${floor.toFixed(2)} ms with an idle process (the machine's floor).\n\n${picture}\n`
      );
    } finally {
      await Promise.all([main.dispose(), pool.dispose()]);
    }
  },
});
