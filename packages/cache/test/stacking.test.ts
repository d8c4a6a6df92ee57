import { batching } from '@mlserve/batching';
import { fromFunction, type InferContext, pipeline } from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CacheStats, responseCache } from '../src/cache.js';

/**
 * The documented order, cache outside batching, against the real @mlserve/batching and a real
 * onnxruntime session: hits never wait for a batch window and never take a row of a batch.
 */
describe('responseCache outside @mlserve/batching, on onnxruntime mnist-cnn', () => {
  let session: ort.InferenceSession;
  let rows = 0;
  beforeAll(async () => {
    session = await ort.InferenceSession.create(modelPath('mnist-cnn.onnx'), {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
  });
  afterAll(() => session?.release());

  const mnist = () =>
    fromFunction({
      name: 'mnist',
      inputs: [{ name: 'image', type: 'float32', dims: [-1, 1, 28, 28] }],
      outputs: [{ name: 'logits', type: 'float32', dims: [-1, 10] }],
      async infer({ image }) {
        rows += image!.dims[0]!;
        const r = await session.run({
          image: new ort.Tensor('float32', image!.data as Float32Array, [...image!.dims]),
        });
        return {
          logits: {
            type: 'float32',
            dims: [...r.logits!.dims],
            data: (r.logits!.data as Float32Array).slice(),
          },
        };
      },
    });
  const digit = (i: number) => ({
    image: { type: 'float32' as const, dims: [1, 1, 28, 28], data: mnistHoldout().image(i) },
  });

  it('answers hits without waiting for the batch window, and batches only the misses', async () => {
    const windowMs = 300;
    const served = pipeline(
      mnist(),
      responseCache({ max: 1000 }),
      batching({ maxBatchSize: 8, maxDelayMs: windowMs }),
    );
    // Warm: three digits in one batch (they wait for the window).
    const warm = await Promise.all([0, 1, 2].map((i) => served.infer(digit(i))));
    expect(rows).toBe(3);

    // A miss waits in the batcher's window; a hit, sent after it, returns long before. (Sent a
    // turn later: a request sent in the very turn a batch ended counts as having queued while the
    // model was busy, and the batcher releases it without the window.)
    await new Promise((r) => setImmediate(r));
    const t0 = performance.now();
    let missDone = 0;
    const miss = served.infer(digit(3)).then((r) => {
      missDone = performance.now() - t0;
      return r;
    });
    const ctx: InferContext = {};
    const hit = await served.infer(digit(1), { context: ctx });
    const hitMs = performance.now() - t0;
    expect(ctx.cacheHit).toBe(true);
    expect(missDone).toBe(0); // still queued when the hit came back
    expect(hitMs).toBeLessThan(windowMs / 3);
    expect(hit.logits!.data).toEqual(warm[1]!.logits!.data);
    await miss;
    expect(missDone).toBeGreaterThanOrEqual(windowMs * 0.8);

    // Only misses reached the batcher and the model.
    const stats = served.stats!() as { cache: CacheStats; batching: { requests: number; items: number } };
    expect(stats.batching.requests).toBe(4);
    expect(rows).toBe(4);
    expect(stats.cache).toMatchObject({ hits: 1, misses: 4 });
    await served.dispose();
  });
});
