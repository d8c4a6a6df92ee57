import type * as tf from '@tensorflow/tfjs';
import { type LoadResult, ratioTable, scenario, timePerCall } from '../harness.js';

/**
 * The backends on the same two models: onnxruntime-web (wasm), tfjs (wasm and pure-JS cpu
 * backends) against onnxruntime-node, time per inference, batch 1, sequential calls, one thread
 * each (ORT intra-op 1; onnxruntime-web `env.wasm.numThreads = 1`; tfjs wasm in Node runs
 * single-threaded). The ONNX runtimes load the very same .onnx file.
 *
 * The same architectures on both sides, random weights on the tfjs side (speed does not depend on
 * the values):
 * - MNIST: packages/test-utils/models/mnist-cnn.onnx (conv16-pool-conv32-pool-fc64-fc10, 3x3 "same"
 *   convs) against that architecture built with tf.layers.
 * - MobileNetV2: packages/test-utils/models/mobilenetv2.onnx (torchvision MobileNetV2 1.0, 224x224,
 *   1000 classes; its BatchNorms folded into the convs by the exporter) against MobileNetV2 1.0 built
 *   with tf.layers (convs with bias, no BatchNorm: the same folded compute).
 * Layouts differ as each runtime prefers: ORT NCHW, tfjs NHWC (same element count).
 */
export default scenario({
  name: 'backends',
  title:
    'Backends: onnxruntime-web (wasm), tfjs wasm and tfjs cpu against onnxruntime-node (time per inference)',
  async run({ pick, log, chart, headline }) {
    const tf = await import('@tensorflow/tfjs');
    const { loadTfjsModel } = await import('@mlserve/backend-tfjs');
    const { loadOnnxModel } = await import('@mlserve/backend-onnx');
    const web = await import('@mlserve/backend-onnx/web');
    const ortWeb = await import('onnxruntime-web');
    ortWeb.env.wasm.numThreads = 1;
    const { modelPath } = await import('@mlserve/test-utils');

    function mnistCnn() {
      return tf.sequential({
        layers: [
          tf.layers.reshape({ inputShape: [1, 28, 28], targetShape: [28, 28, 1], name: 'image' }),
          tf.layers.conv2d({ filters: 16, kernelSize: 3, padding: 'same', activation: 'relu' }),
          tf.layers.maxPooling2d({ poolSize: 2 }),
          tf.layers.conv2d({ filters: 32, kernelSize: 3, padding: 'same', activation: 'relu' }),
          tf.layers.maxPooling2d({ poolSize: 2 }),
          tf.layers.flatten(),
          tf.layers.dense({ units: 64, activation: 'relu' }),
          tf.layers.dense({ units: 10, name: 'logits' }),
        ],
      });
    }

    function mobileNetV2() {
      const input = tf.input({ shape: [224, 224, 3], name: 'input' });
      let x = tf.layers
        .conv2d({ filters: 32, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu6' })
        .apply(input) as tf.SymbolicTensor;
      let channels = 32;
      const blocks: [number, number, number, number][] = [
        [1, 16, 1, 1],
        [6, 24, 2, 2],
        [6, 32, 3, 2],
        [6, 64, 4, 2],
        [6, 96, 3, 1],
        [6, 160, 3, 2],
        [6, 320, 1, 1],
      ];
      for (const [t, c, n, s] of blocks) {
        for (let i = 0; i < n; i++) {
          const stride = i === 0 ? s : 1;
          let y = x;
          if (t !== 1) {
            y = tf.layers
              .conv2d({ filters: channels * t, kernelSize: 1, activation: 'relu6' })
              .apply(y) as tf.SymbolicTensor;
          }
          y = tf.layers
            .depthwiseConv2d({ kernelSize: 3, strides: stride, padding: 'same', activation: 'relu6' })
            .apply(y) as tf.SymbolicTensor;
          y = tf.layers.conv2d({ filters: c, kernelSize: 1 }).apply(y) as tf.SymbolicTensor;
          x = stride === 1 && channels === c ? (tf.layers.add().apply([x, y]) as tf.SymbolicTensor) : y;
          channels = c;
        }
      }
      x = tf.layers
        .conv2d({ filters: 1280, kernelSize: 1, activation: 'relu6' })
        .apply(x) as tf.SymbolicTensor;
      x = tf.layers.globalAveragePooling2d({}).apply(x) as tf.SymbolicTensor;
      const output = tf.layers.dense({ units: 1000, name: 'output' }).apply(x) as tf.SymbolicTensor;
      return tf.model({ inputs: input, outputs: output });
    }

    async function artifacts(build: () => import('@tensorflow/tfjs').LayersModel) {
      await tf.setBackend('cpu');
      const m = build();
      let saved: import('@tensorflow/tfjs').io.ModelArtifacts | undefined;
      await m.save(
        tf.io.withSaveHandler(async (a) => {
          saved = a;
          return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
        }),
      );
      m.dispose();
      if (!saved) throw new Error('no artifacts');
      return saved;
    }

    const cases = [
      {
        title: 'MNIST CNN (mnist-cnn.onnx vs the same CNN in tf.layers), batch 1',
        onnx: modelPath('mnist-cnn.onnx'),
        onnxInput: 'image',
        onnxDims: [1, 1, 28, 28],
        tfjsDims: [1, 1, 28, 28],
        build: mnistCnn,
        iterations: {
          onnx: pick(2000, 300),
          web: pick(1000, 150),
          wasm: pick(1000, 150),
          cpu: pick(200, 30),
        },
      },
      {
        title: 'MobileNetV2 1.0 224x224 (mobilenetv2.onnx vs MobileNetV2 in tf.layers), batch 1',
        onnx: modelPath('mobilenetv2.onnx'),
        onnxInput: 'input',
        onnxDims: [1, 3, 224, 224],
        tfjsDims: [1, 224, 224, 3],
        build: mobileNetV2,
        iterations: { onnx: pick(200, 20), web: pick(40, 4), wasm: pick(40, 4), cpu: pick(4, 1) },
      },
    ];

    const sections: string[] = [
      'Time per inference, sequential calls, one thread per runtime. Shared 2-core machine under load from',
      'other work: read the ratios, not the absolute figures. "throughput" below is inferences/s.',
      '',
    ];
    const bars: { label: string; value: number; highlight?: boolean }[] = [];
    for (const c of cases) {
      const size = c.onnxDims.reduce((a, b) => a * b, 1);
      const data = new Float32Array(size).map((_, i) => (i % 251) / 251);
      const onnx = await loadOnnxModel(c.onnx, { intraOpNumThreads: 1, interOpNumThreads: 1 });
      const onnxWeb = await web.loadOnnxModel(c.onnx);
      const a = await artifacts(c.build);
      const wasm = await loadTfjsModel(a, { backend: 'wasm', name: 'wasm' });
      const cpu = await loadTfjsModel(a, { backend: 'cpu', name: 'cpu' });
      const tfIn = wasm.metadata().inputs[0]?.name as string;
      const onnxFeeds = { [c.onnxInput]: { type: 'float32' as const, dims: c.onnxDims, data } };
      const tfFeeds = { [tfIn]: { type: 'float32' as const, dims: c.tfjsDims, data } };
      log(`${c.title}: onnxruntime-node`);
      const results: LoadResult[] = [];
      const base = await timePerCall('onnxruntime-node (cpu, 1 thread)', () => onnx.infer(onnxFeeds), {
        iterations: c.iterations.onnx,
        warmup: 10,
      });
      log(`${c.title}: onnxruntime-web (wasm)`);
      results.push(
        await timePerCall('onnxruntime-web (wasm, 1 thread)', () => onnxWeb.infer(onnxFeeds), {
          iterations: c.iterations.web,
          warmup: 3,
        }),
      );
      log(`${c.title}: tfjs wasm`);
      results.push(
        await timePerCall('tfjs wasm', () => wasm.infer(tfFeeds), {
          iterations: c.iterations.wasm,
          warmup: 3,
        }),
      );
      log(`${c.title}: tfjs cpu`);
      results.push(
        await timePerCall('tfjs cpu (pure JS)', () => cpu.infer(tfFeeds), {
          iterations: c.iterations.cpu,
          warmup: pick(1, 0),
        }),
      );
      sections.push(ratioTable(c.title, base, results));
      const [o, w, j] = results as [LoadResult, LoadResult, LoadResult];
      const errors = base.errors + o.errors + w.errors + j.errors;
      const short = c.title.startsWith('MNIST') ? 'mnist-cnn' : 'mobilenetv2';
      bars.push(
        { label: `${short}: onnxruntime-node`, value: 1, highlight: true },
        ...results.map((r) => ({ label: `${short}: ${r.name}`, value: r.p50 / base.p50 })),
      );
      headline(
        `**Backends** (${short}, median time per inference x onnxruntime-node): onnxruntime-web wasm ${(o.p50 / base.p50).toFixed(1)}x, tfjs wasm ${(w.p50 / base.p50).toFixed(1)}x, tfjs cpu ${(j.p50 / base.p50).toFixed(1)}x.`,
      );
      sections.push(
        `Median time per inference as a multiple of onnxruntime-node's (${base.p50.toFixed(2)} ms): ` +
          `onnxruntime-web ${(o.p50 / base.p50).toFixed(1)}x, tfjs wasm ${(w.p50 / base.p50).toFixed(1)}x, tfjs cpu ${(j.p50 / base.p50).toFixed(1)}x` +
          `${errors ? ` (${errors} calls failed!)` : ''}.`,
        '',
      );
      await Promise.all([onnx.dispose(), onnxWeb.dispose(), wasm.dispose(), cpu.dispose()]);
    }
    sections.push(
      chart(
        'backends',
        'Median time per inference, x onnxruntime-node',
        bars,
        'x the median time of onnxruntime-node, 1 thread (lower is better)',
        { markAt: 1 },
      ),
    );
    return sections.join('\n');
  },
});
