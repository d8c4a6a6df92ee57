import { fromFunction, type Model, type Tensor, type Tensors, validateRequest } from '@mlserve/core';
import fc from 'fast-check';
import { expect, expectTypeOf, test } from 'vitest';
import { type BatchingModel, batching } from '../src/index.js';
import { codeOf, probe, rowsOf } from './helpers.js';

/** Untyped on purpose: the property sends arbitrary tensor records. */
const model = (): Model =>
  fromFunction({
    name: 'two',
    inputs: [
      { name: 'a', type: 'float32', dims: [-1, 3] },
      { name: 'b', type: 'int32', dims: [-1, 2, -1] },
    ],
    outputs: [{ name: 'y', type: 'float32', dims: [-1, 1] }],
    infer: ({ a }) => ({
      y: { type: 'float32', dims: [a!.dims[0]!, 1], data: new Float32Array(a!.dims[0]!) },
    }),
  });

type Mutation =
  | 'none'
  | 'type'
  | 'rank'
  | 'fixedDim'
  | 'length'
  | 'rows'
  | 'unknown'
  | 'missing'
  | 'notTensor';
/** Valid requests, and requests with one thing wrong. */
const requestArb = fc
  .record({
    rows: fc.integer({ min: 0, max: 3 }),
    k: fc.integer({ min: 0, max: 3 }),
    mutation: fc.constantFrom<Mutation>(
      'none',
      'none',
      'none',
      'type',
      'rank',
      'fixedDim',
      'length',
      'rows',
      'unknown',
      'missing',
      'notTensor',
    ),
  })
  .map(({ rows, k, mutation }) => {
    const a = { type: 'float32', dims: [rows, 3], data: new Float32Array(rows * 3) } as Record<
      string,
      unknown
    >;
    const b = { type: 'int32', dims: [rows, 2, k], data: new Int32Array(rows * 2 * k) } as Record<
      string,
      unknown
    >;
    const req: Record<string, unknown> = { a, b };
    if (mutation === 'type') a.data = new Float64Array(rows * 3);
    if (mutation === 'rank') b.dims = [rows, 2 * k];
    if (mutation === 'fixedDim') a.dims = [rows, 4];
    if (mutation === 'length') a.data = new Float32Array(rows * 3 + 1);
    if (mutation === 'rows') b.dims = [rows + 1, 2, k];
    if (mutation === 'unknown') req.c = a;
    if (mutation === 'missing') delete req.b;
    if (mutation === 'notTensor') req.a = { type: 'float32', dims: 'x' };
    return req as unknown as Tensors;
  });

test("the batcher's fast input check accepts and refuses exactly what core's validateRequest does", async () => {
  const m = model();
  const meta = m.metadata();
  const served = batching({ maxDelayMs: 0 })(m);
  let valid = 0;
  let invalid = 0;
  await fc.assert(
    fc.asyncProperty(requestArb, async (inputs) => {
      let coreSays = 'OK';
      let message = '';
      try {
        validateRequest(meta, inputs, undefined);
      } catch (err) {
        coreSays = (err as { code: string }).code;
        message = (err as Error).message;
      }
      const got = await served.infer(inputs).then(
        () => ({ code: 'OK', message: '' }),
        (err: Error & { code: string }) => ({ code: err.code, message: err.message }),
      );
      // A valid request with 0 rows still runs; a valid one otherwise runs too.
      expect(got.code).toBe(coreSays);
      if (coreSays === 'OK') valid++;
      else invalid++;
      if (coreSays !== 'OK') expect(got.message).toBe(message);
    }),
    { numRuns: 300 },
  );
  expect(valid).toBeGreaterThan(30);
  expect(invalid).toBeGreaterThan(30);
});

test('a request larger than the whole queue is PAYLOAD_TOO_LARGE, not a retryable overload', async () => {
  const p = probe();
  const served = batching({ maxQueue: 8, maxBatchSize: 4 })(p.model);
  expect(await codeOf(served.infer({ x: rowsOf(9) }))).toBe('PAYLOAD_TOO_LARGE');
  expect(await codeOf(served.infer({ x: rowsOf(8) }))).toBe('OK');
});

test('a throwing batch listener breaks neither the batch nor the other listeners', async () => {
  const p = probe();
  let seen = 0;
  const served = batching({
    maxDelayMs: 0,
    onBatch: () => {
      throw new Error('listener bug');
    },
  })(p.model);
  served.events.on('batch', () => {
    seen++;
  });
  const out = await served.infer({ x: rowsOf(1, 3) });
  expect((out.y!.data as Float32Array)[0]).toBe(6);
  expect(seen).toBe(1);
});

test('keeps a typed model typed (and an untyped one untyped)', async () => {
  const typed = fromFunction({
    name: 'typed',
    inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
    outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
    infer: ({ x }) => ({ y: x }),
  });
  const served = batching({ maxDelayMs: 0 })(typed);
  expectTypeOf(served.infer).returns.resolves.toEqualTypeOf<{ y: Tensor<'float32'> }>();
  const out = await served.infer({ x: { type: 'float32', dims: [1, 2], data: new Float32Array([1, 2]) } });
  expect(Array.from(out.y.data)).toEqual([1, 2]);
  // @ts-expect-error a misspelt output fails to compile
  expect(out.z).toBeUndefined();
  expectTypeOf(batching()(model())).toEqualTypeOf<BatchingModel>();
  await served.dispose();
});
