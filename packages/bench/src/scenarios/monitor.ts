import { closedLoop, interleaved, ratioTable, scenario, timePerCall } from '../harness.js';

/**
 * The drift monitor's cost per request on mnist-cnn (onnxruntime-node, one intra-op thread):
 * the same model with and without `monitor()` (every request sampled, image statistics and the
 * predicted class measured off the request path).
 */
export default scenario({
  name: 'monitor',
  title: 'Drift monitor: cost per request on mnist-cnn (every request sampled)',
  async run({ pick, log }) {
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
    const watch = monitor({
      profile: ref,
      extractors,
      window: { size: 1000 },
      sampleRate: 1,
      queueSize: 1024,
    });
    const watched = pipeline(model, watch);
    const iterations = pick(20_000, 3_000);
    const durationMs = pick(3000, 1000);
    log(`${iterations} sequential calls each, then 8 callers for ${durationMs} ms, interleaved`);
    const call = (m: typeof model) => (i: number) => m.infer(images[i % images.length]!);
    const [raw, monitored] = await interleaved(pick(5, 3), [
      { name: 'mnist-cnn', run: () => timePerCall('raw', call(model), { iterations }) },
      { name: 'mnist-cnn + monitor()', run: () => timePerCall('monitor', call(watched), { iterations }) },
    ]);
    const [raw8, monitored8] = await interleaved(pick(5, 3), [
      {
        name: 'mnist-cnn, 8 callers',
        run: () => closedLoop('raw', call(model), { concurrency: 8, durationMs }),
      },
      {
        name: 'mnist-cnn + monitor(), 8 callers',
        run: () => closedLoop('monitor', call(watched), { concurrency: 8, durationMs }),
      },
    ]);
    await watch.flush();
    const s = watch.stats();
    await session.release();
    const cost = (a: { mean: number }, b: { mean: number }) =>
      `${(((b.mean - a.mean) / a.mean) * 100).toFixed(1)}%`;
    return [
      ratioTable('mnist-cnn, batch 1, sequential calls', raw!, [monitored!]),
      ratioTable('mnist-cnn, batch 1, 8 concurrent callers', raw8!, [monitored8!]),
      `Monitor cost per request (mean latency): ${cost(raw!, monitored!)} sequential, ${cost(raw8!, monitored8!)} at 8 callers ` +
        `(${(raw!.mean * 1000).toFixed(1)} us per raw call). Monitor counters: ${s.requests} requests, ${s.sampled} sampled, ` +
        `${s.dropped} dropped from a full queue, ${s.evaluations} evaluations. The machine is shared and noisy: ` +
        'differences of a few percent are within run-to-run noise.\n',
    ].join('\n');
  },
});
