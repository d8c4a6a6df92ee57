/**
 * `npm start` (for now): a pipeline over a pure-JS model, driven by concurrent requests.
 * Shows validation errors, load shedding, deadlines and per-request context.
 */
import {
  concurrencyLimit,
  fromFunction,
  type InferContext,
  pipeline,
  tensor,
  timeout,
  toServeError,
  validation,
} from '@mlserve/core';

// A tiny "model": logistic regression over 4 features, written in plain JS.
const weights = [0.8, -1.2, 0.5, 2.0];
const model = fromFunction({
  name: 'logreg',
  inputs: [{ name: 'features', type: 'float32', dims: [-1, 4] }],
  outputs: [{ name: 'probability', type: 'float32', dims: [-1, 1] }],
  async infer({ features }) {
    await new Promise((r) => setTimeout(r, 5)); // pretend to compute
    const x = features!.data as Float32Array;
    const rows = features!.dims[0]!;
    const p = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      let z = 0;
      for (let c = 0; c < 4; c++) z += weights[c]! * x[r * 4 + c]!;
      p[r] = 1 / (1 + Math.exp(-z));
    }
    return { probability: { type: 'float32', dims: [rows, 1], data: p } };
  },
});

const served = pipeline(
  model,
  timeout({ defaultMs: 1_000 }),
  validation(),
  concurrencyLimit({ maxConcurrent: 4, maxQueue: 8 }),
);

console.log(`mlserve demo: model "${served.name}" v${served.version}`);
console.log(
  'signature:',
  JSON.stringify(served.metadata().inputs),
  '->',
  JSON.stringify(served.metadata().outputs),
);

const context: InferContext = {};
const one = await served.infer({ features: tensor('float32', [1, 0, 0.5, 0.25], [1, 4]) }, { context });
console.log(
  `one request: p = ${(one.probability!.data as Float32Array)[0]!.toFixed(4)}, queued ${context.queueMs?.toFixed(2) ?? 0} ms`,
);

try {
  // @ts-expect-error float64 where the model takes float32: the typed model refuses it at compile time too
  await served.infer({ features: tensor('float64', [1, 2, 3, 4], [1, 4]) });
} catch (err) {
  const e = toServeError(err);
  console.log(`a bad request: ${e.status} ${e.code}: ${e.message}`);
}

const burst = await Promise.allSettled(
  Array.from({ length: 20 }, (_, i) => served.infer({ features: tensor('float32', [i, 1, 2, 3], [1, 4]) })),
);
const ok = burst.filter((r) => r.status === 'fulfilled').length;
const shed = burst
  .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  .map((r) => toServeError(r.reason));
console.log(
  `a burst of 20: ${ok} answered, ${shed.length} shed with ${shed[0]?.status ?? '-'} ${shed[0]?.code ?? ''} (retry after ${shed[0]?.retryAfterMs ?? '-'} ms)`,
);
console.log('stats:', JSON.stringify(served.stats?.()));
await served.dispose();
