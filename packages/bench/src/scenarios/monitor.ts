import { closedLoop, interleaved, ratioTable, scenario, timePerCall } from '../harness.js';

/**
 * The drift monitor's cost per request on mnist-cnn (onnxruntime-node, one intra-op thread):
 * the same model with and without `monitor()` (every request sampled, image statistics and the
 * predicted class measured off the request path).
 */
export default scenario({
  name: 'monitor',
  title: 'Drift monitor: cost per request on mnist-cnn (every request sampled)',
  async run({ pick, log, chart }) {
    // Imported here so that other scenarios run even before this package is built.
    const { fromFunction, pipeline } = await import('@mlserve/core');
    const { monitor, profile, imageStats, predictedClass, topScore } = await import('@mlserve/monitor');
    const { mnistHoldout, modelPath } = await import('@mlserve/test-utils');
    const ort = await import('onnxruntime-node');
    const session = await ort.InferenceSession.create(modelPath('mnist-cnn.onnx'), {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    const model = fromFunction({
      name: 'mnist',
      inputs: [{ name: 'image', type: 'float32', dims: [-1, 1, 28, 28] }],
      outputs: [{ name: 'logits', type: 'float32', dims: [-1, 10] }],
      async infer({ image }) {
        const r = await session.run({
          image: new ort.Tensor('float32', image!.data as Float32Array, [...image!.dims]),
        });
        return {
          logits: { type: 'float32', dims: [...r.logits!.dims], data: r.logits!.data as Float32Array },
        };
      },
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
    const watchQuarter = monitor({ profile: ref, extractors, window: { size: 1000 }, sampleRate: 0.25 });
    const all = pipeline(model, watchAll);
    const quarter = pipeline(model, watchQuarter);
    const iterations = pick(8_000, 1_500);
    const durationMs = pick(2000, 600);
    log(`${iterations} sequential calls each, then 8 callers for ${durationMs} ms, interleaved`);
    const call = (m: typeof model) => (i: number) => m.infer(images[i % images.length]!);
    const rounds = pick(3, 1);
    const [raw, every, some] = await interleaved(rounds, [
      { name: 'mnist-cnn', run: () => timePerCall('raw', call(model), { iterations }) },
      { name: 'mnist-cnn + monitor(sampleRate 1)', run: () => timePerCall('all', call(all), { iterations }) },
      {
        name: 'mnist-cnn + monitor(sampleRate 0.25)',
        run: () => timePerCall('quarter', call(quarter), { iterations }),
      },
    ]);
    const [raw8, every8, some8] = await interleaved(rounds, [
      {
        name: 'mnist-cnn, 8 callers',
        run: () => closedLoop('raw', call(model), { concurrency: 8, durationMs }),
      },
      {
        name: 'mnist-cnn + monitor(sampleRate 1), 8 callers',
        run: () => closedLoop('all', call(all), { concurrency: 8, durationMs }),
      },
      {
        name: 'mnist-cnn + monitor(sampleRate 0.25), 8 callers',
        run: () => closedLoop('quarter', call(quarter), { concurrency: 8, durationMs }),
      },
    ]);
    await watchAll.flush();
    await watchQuarter.flush();
    await session.release();
    // The monitor's own time (measuring and scoring, timed inside the monitor) per request, against
    // the time of a raw call: a steadier figure than the difference of two noisy latencies.
    const busy = (s: ReturnType<typeof watchAll.stats>) => (s.busyMs * 1000) / Math.max(1, s.requests);
    const a = watchAll.stats();
    const q = watchQuarter.stats();
    const rawUs = raw!.mean * 1000;
    const pct = (us: number) => `${((us / rawUs) * 100).toFixed(1)}%`;
    const picture = chart(
      'monitor',
      'Drift monitor: throughput, x mnist-cnn alone',
      [
        { label: 'sequential: mnist-cnn', value: 1, highlight: true },
        { label: 'sequential: + monitor(1)', value: every!.throughput / raw!.throughput },
        { label: 'sequential: + monitor(0.25)', value: some!.throughput / raw!.throughput },
        { label: '8 callers: mnist-cnn', value: 1, highlight: true },
        { label: '8 callers: + monitor(1)', value: every8!.throughput / raw8!.throughput },
        { label: '8 callers: + monitor(0.25)', value: some8!.throughput / raw8!.throughput },
      ],
      'x the throughput without the monitor',
      { markAt: 1 },
    );
    return [
      ratioTable('mnist-cnn, batch 1, sequential calls', raw!, [every!, some!]),
      ratioTable('mnist-cnn, batch 1, 8 concurrent callers', raw8!, [every8!, some8!]),
      `Monitor time per request, measured inside the monitor: ${busy(a).toFixed(2)} us with every request sampled ` +
        `(${pct(busy(a))} of a raw call's ${rawUs.toFixed(1)} us), ${busy(q).toFixed(2)} us at sampleRate 0.25 ` +
        `(${pct(busy(q))}). Counters: ${a.requests} requests, ${a.dropped} dropped from a full queue, ` +
        `${a.evaluations} evaluations. The machine is shared and noisy: latency differences of a few percent ` +
        'between the rows above are within run-to-run noise.\n',
      picture,
    ].join('\n');
  },
});
