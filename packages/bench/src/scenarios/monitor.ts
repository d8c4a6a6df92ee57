import { closedLoop, interleaved, type LoadResult, ratioTable, scenario, timePerCall } from '../harness.js';

/**
 * The drift monitor's cost per request on mnist-cnn (onnxruntime-node, one intra-op thread):
 * the same model with and without `monitor()`, with every request sampled and with the default
 * `sampleRate: 'auto'` (a 2% CPU budget); image statistics, the predicted class and the top score
 * measured off the request path. CPU time per request is reported beside throughput.
 */
export default scenario({
  name: 'monitor',
  title: "Drift monitor: cost per request on mnist-cnn (every request sampled, and the default 'auto')",
  async run({ pick, log, chart }) {
    // Imported here so that other scenarios run even before this package is built.
    const { pipeline } = await import('@mlserve/core');
    const { monitor, profile, imageStats, predictedClass, topScore } = await import('@mlserve/monitor');
    const { mnistHoldout, modelPath } = await import('@mlserve/test-utils');
    const { loadOnnxModel } = await import('@mlserve/backend-onnx');
    const model = await loadOnnxModel(modelPath('mnist-cnn.onnx'), {
      name: 'mnist',
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    const holdout = mnistHoldout();
    const images = Array.from({ length: holdout.count }, (_, i) => ({
      image: { type: 'float32' as const, dims: [1, 1, 28, 28], data: holdout.image(i) },
    }));
    const extractors = [imageStats('image'), predictedClass('logits'), topScore('logits', { softmax: true })];
    const ref = await profile(
      images.map((inputs) => ({ inputs })),
      { extractors, model },
    );
    const watchAll = monitor({
      profile: ref,
      extractors,
      window: { size: 1000 },
      sampleRate: 1,
      queueSize: 1024,
    });
    // The default: every request measured while that costs under 2% of the thread, fewer beyond.
    const watchAuto = monitor({ profile: ref, extractors, window: { size: 1000 } });
    const all = pipeline(model, watchAll);
    const auto = pipeline(model, watchAuto);
    const iterations = pick(8_000, 1_500);
    const durationMs = pick(2000, 600);
    const rounds = pick(5, 3);
    log(
      `${iterations} sequential calls each, then 8 callers for ${durationMs} ms, ${rounds} interleaved rounds`,
    );
    const call = (m: typeof model) => (i: number) => m.infer(images[i % images.length]!);
    // CPU time per request (process.cpuUsage over the window): steadier than latency on a shared machine.
    const cpuUs = (r: LoadResult) => (r.cpuCores * r.durationMs * 1000) / Math.max(1, r.requests);
    const withCpu = (rows: (LoadResult | undefined)[], base: LoadResult | undefined) => {
      for (const r of rows) {
        if (!r || !base) continue;
        r.extra = {
          ...r.extra,
          'CPU us/req': cpuUs(r).toFixed(2),
          'CPU x baseline': (cpuUs(r) / cpuUs(base)).toFixed(3),
        };
      }
    };
    // 'auto' settles within a few 100 ms periods of load; start it from its steady state, as a
    // server under sustained traffic would be, rather than from its initial rate of 1.
    await closedLoop('run-in', call(auto), { concurrency: 1, durationMs: pick(1500, 600) });
    const [raw, every, chosen] = await interleaved(rounds, [
      { name: 'mnist-cnn', run: () => timePerCall('raw', call(model), { iterations }) },
      { name: 'mnist-cnn + monitor(sampleRate 1)', run: () => timePerCall('all', call(all), { iterations }) },
      {
        name: "mnist-cnn + monitor('auto', default)",
        run: () => timePerCall('auto', call(auto), { iterations }),
      },
    ]);
    const autoRateSequential = watchAuto.stats().sampleRate;
    const [raw8, every8, chosen8] = await interleaved(rounds, [
      {
        name: 'mnist-cnn, 8 callers',
        run: () => closedLoop('raw', call(model), { concurrency: 8, durationMs }),
      },
      {
        name: 'mnist-cnn + monitor(sampleRate 1), 8 callers',
        run: () => closedLoop('all', call(all), { concurrency: 8, durationMs }),
      },
      {
        name: "mnist-cnn + monitor('auto', default), 8 callers",
        run: () => closedLoop('auto', call(auto), { concurrency: 8, durationMs }),
      },
    ]);
    withCpu([raw, every, chosen], raw);
    withCpu([raw8, every8, chosen8], raw8);
    await watchAll.flush();
    await watchAuto.flush();
    await model.dispose();
    // The monitor's own time (measuring and scoring, timed inside the monitor) per request, against
    // the time of a raw call: a steadier figure than the difference of two noisy latencies.
    const busy = (s: ReturnType<typeof watchAll.stats>) => (s.busyMs * 1000) / Math.max(1, s.requests);
    const a = watchAll.stats();
    const q = watchAuto.stats();
    const rawUs = raw!.mean * 1000;
    const pct = (us: number) => `${((us / rawUs) * 100).toFixed(1)}%`;
    const picture = chart(
      'monitor',
      'Drift monitor: throughput, x mnist-cnn alone',
      [
        { label: 'sequential: mnist-cnn', value: 1, highlight: true },
        { label: 'sequential: + monitor(1)', value: every!.throughput / raw!.throughput },
        { label: "sequential: + monitor('auto')", value: chosen!.throughput / raw!.throughput },
        { label: '8 callers: mnist-cnn', value: 1, highlight: true },
        { label: '8 callers: + monitor(1)', value: every8!.throughput / raw8!.throughput },
        { label: "8 callers: + monitor('auto')", value: chosen8!.throughput / raw8!.throughput },
      ],
      'x the throughput without the monitor',
      { markAt: 1 },
    );
    return [
      ratioTable('mnist-cnn, batch 1, sequential calls', raw!, [every!, chosen!]),
      ratioTable('mnist-cnn, batch 1, 8 concurrent callers', raw8!, [every8!, chosen8!]),
      `Monitor time per request, measured inside the monitor: ${busy(a).toFixed(2)} us with every request sampled ` +
        `(${pct(busy(a))} of a raw call's ${rawUs.toFixed(1)} us), ${busy(q).toFixed(2)} us with 'auto' ` +
        `(${pct(busy(q))}; it measured ${((q.sampled / Math.max(1, q.requests)) * 100).toFixed(0)}% of requests, ` +
        `rate ${autoRateSequential.toFixed(2)} after the sequential runs, ${q.sampleRate.toFixed(2)} at the end). Counters: ${a.requests} requests, ${a.dropped} dropped from a full queue, ` +
        `${a.evaluations} evaluations. The machine is shared and noisy: latency differences of a few percent ` +
        'between the rows above are within run-to-run noise.\n',
      picture,
    ].join('\n');
  },
});
