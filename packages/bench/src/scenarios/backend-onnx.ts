import { interleaved, type LoadResult, ratioTable, scenario, timePerCall } from '../harness.js';

/** Median and mean of the fastest 90% (what is left once preemption spikes are cut), microseconds. */
function robust(samples: Float64Array): { median: number; trimmedMean: number } {
  const sorted = Float64Array.from(samples).sort();
  const keep = Math.max(1, Math.floor(sorted.length * 0.9));
  let sum = 0;
  for (let i = 0; i < keep; i++) sum += sorted[i]!;
  return { median: sorted[Math.floor(sorted.length / 2)]! * 1000, trimmedMean: (sum / keep) * 1000 };
}

/**
 * Calls `a` and `b` alternately (order swapped every call) and times each call, so both see the
 * same noise from the other processes on the machine: the fairest comparison on a shared box.
 */
async function paired(n: number, a: () => Promise<unknown>, b: () => Promise<unknown>) {
  for (let i = 0; i < Math.min(500, n); i++) {
    await a();
    await b();
  }
  const ta = new Float64Array(n);
  const tb = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (i % 2 === 0) {
      let t = performance.now();
      await a();
      ta[i] = performance.now() - t;
      t = performance.now();
      await b();
      tb[i] = performance.now() - t;
    } else {
      let t = performance.now();
      await b();
      tb[i] = performance.now() - t;
      t = performance.now();
      await a();
      ta[i] = performance.now() - t;
    }
  }
  return { a: robust(ta), b: robust(tb) };
}

/**
 * The cost of the Model API over onnxruntime-node: `model.infer()` (validation against metadata,
 * core tensors in and out, abort/deadline checks, stats) against a raw `session.run()` loop on the
 * very same session (`onnxSession(model)`), batch 1, one intra-op thread, sequential calls,
 * interleaved rounds. Target: within 5% on mnist-cnn.
 */
export default scenario({
  name: 'backend-onnx',
  title: 'backend-onnx: Model API overhead over raw session.run',
  async run({ pick, log, chart }) {
    // Imported here so that other scenarios run even before this package is built.
    const { loadOnnxModel, onnxSession } = await import('@mlserve/backend-onnx');
    const { modelPath } = await import('@mlserve/test-utils');
    const ort = await import('onnxruntime-node');

    const cases = [
      { file: 'mlp.onnx' as const, input: 'features', dims: [1, 16], iterations: pick(10_000, 2_000) },
      {
        file: 'mnist-cnn.onnx' as const,
        input: 'image',
        dims: [1, 1, 28, 28],
        iterations: pick(5_000, 1_000),
      },
    ];
    const sections: string[] = [];
    const summary: string[] = [];
    const bars: { label: string; value: number; highlight?: boolean }[] = [];
    for (const c of cases) {
      const model = await loadOnnxModel(modelPath(c.file), { intraOpNumThreads: 1, interOpNumThreads: 1 });
      const session = onnxSession(model)!;
      const size = c.dims.reduce((a, b) => a * b, 1);
      const data = new Float32Array(size).map((_, i) => (i % 17) / 17);
      const feeds = { [c.input]: new ort.Tensor('float32', data, c.dims) };
      const inputs = { [c.input]: { type: 'float32' as const, dims: c.dims, data } };
      const context = {};
      const signal = new AbortController().signal;
      log(`${c.file}: ${c.iterations} sequential calls per round`);
      const [raw, api, full] = (await interleaved(pick(3, 1), [
        {
          name: 'raw session.run',
          run: () => timePerCall('raw', () => session.run(feeds), { iterations: c.iterations }),
        },
        {
          name: 'model.infer',
          run: () => timePerCall('api', () => model.infer(inputs), { iterations: c.iterations }),
        },
        {
          name: 'model.infer + signal, deadline, context',
          run: () =>
            timePerCall(
              'api+',
              () => model.infer(inputs, { signal, deadline: Date.now() + 60_000, context }),
              { iterations: c.iterations },
            ),
        },
      ])) as [LoadResult, LoadResult, LoadResult];
      for (const r of [raw, api, full]) {
        r.extra = {
          'mean (us)': (r.mean * 1000).toFixed(1),
          'time per call x raw': (r.mean / raw.mean).toFixed(3),
        };
      }
      const pair = await paired(
        c.iterations,
        () => session.run(feeds),
        () => model.infer(inputs),
      );
      sections.push(ratioTable(`${c.file}, batch 1, sequential calls, 1 intra-op thread`, raw, [api, full]));
      summary.push(
        `${c.file}: model.infer takes ${(api.mean / raw.mean).toFixed(3)}x the time of raw session.run ` +
          `(${(api.mean * 1000).toFixed(1)} us vs ${(raw.mean * 1000).toFixed(1)} us; ` +
          `${((api.mean - raw.mean) * 1000).toFixed(1)} us per call), ` +
          `${(full.mean / raw.mean).toFixed(3)}x with a signal, a deadline and a context. ` +
          `Paired calls (raw and model.infer alternating): median ${pair.b.median.toFixed(1)} us vs ${pair.a.median.toFixed(1)} us ` +
          `(**${(pair.b.median / pair.a.median).toFixed(3)}x**), mean of the fastest 90% ` +
          `${(pair.b.trimmedMean / pair.a.trimmedMean).toFixed(3)}x.`,
      );
      bars.push(
        { label: `${c.file}: raw session.run`, value: 1, highlight: true },
        { label: `${c.file}: model.infer (paired median)`, value: pair.b.median / pair.a.median },
      );
      await model.dispose();
    }
    return [
      'Same session, same input, sequential calls, rounds interleaved (median round kept). The machine is shared and noisy: read the ratios, not the absolute times.',
      '',
      ...summary.map((s) => `- ${s}`),
      '',
      ...sections,
      chart(
        'backend-onnx',
        'Time per call, x raw session.run',
        bars,
        'x the time of raw session.run (lower is better)',
        {
          markAt: 1,
        },
      ),
    ].join('\n');
  },
});
