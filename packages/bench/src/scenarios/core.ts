import { concurrencyLimit, fromFunction, pipeline, tensor, timeout, validation } from '@mlserve/core';
import { interleaved, ratioTable, scenario, timePerCall } from '../harness.js';

/** The cost of core's layers around a model that does (almost) nothing. */
export default scenario({
  name: 'core',
  title: 'Core layers: validation + timeout + concurrency limit around a no-op model',
  async run({ pick, log, chart }) {
    const model = fromFunction({
      name: 'noop',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 16] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, 16] }],
      infer: ({ x }) => ({ y: x! }),
    });
    const served = pipeline(
      model,
      timeout({ defaultMs: 10_000 }),
      validation(),
      concurrencyLimit({ maxConcurrent: 64, maxQueue: 1024 }),
    );
    const inputs = { x: tensor('float32', new Float32Array(16), [1, 16]) };
    const iterations = pick(200_000, 20_000);
    log(`${iterations} calls each, interleaved`);
    const [raw, layered] = await interleaved(pick(3, 1), [
      { name: 'model.infer', run: () => timePerCall('raw', () => model.infer(inputs), { iterations }) },
      {
        name: 'pipeline(timeout, validation, limit)',
        run: () => timePerCall('layers', () => served.infer(inputs), { iterations }),
      },
    ]);
    const picture = chart(
      'core',
      'No-op model: time per call, x model.infer',
      [
        { label: 'model.infer', value: 1, highlight: true },
        { label: 'pipeline(timeout, validation, limit)', value: layered!.mean / raw!.mean },
      ],
      'x the mean time of a bare model.infer call (lower is better)',
      { markAt: 1 },
    );
    return `${ratioTable('No-op model, sequential calls', raw!, [layered!])}\nMean time per call: ${(raw!.mean * 1000).toFixed(2)} us raw, ${(layered!.mean * 1000).toFixed(2)} us through the layers.\n\n${picture}\n`;
  },
});
