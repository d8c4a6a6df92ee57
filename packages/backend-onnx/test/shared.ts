import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { type Model, type Tensor, tensor, tensorsEqual } from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmaxRows, fixture, type Loader, rejectsWith } from './helpers.js';

/** Values of every type, with the edges of each range. */
export const SAMPLES: Record<string, Tensor> = {
  float32: tensor(
    'float32',
    new Float32Array([1.5, -2, Number.NaN, Number.POSITIVE_INFINITY, -0, 3.4e38]),
    [2, 3],
  ),
  float64: tensor('float64', new Float64Array([1e300, -0, Number.NaN, 2 ** -1074, -1, 0.1]), [2, 3]),
  float16: tensor('float16', new Uint16Array([0x3c00, 0x7e00, 0x8000, 0x0001, 0x7bff, 0xfc00]), [2, 3]),
  int8: tensor('int8', new Int8Array([-128, 127, 0, 1, -1, 5]), [2, 3]),
  int16: tensor('int16', new Int16Array([-32768, 32767, 0, 1, -1, 5]), [2, 3]),
  int32: tensor('int32', new Int32Array([-(2 ** 31), 2 ** 31 - 1, 0, 1, -1, 5]), [2, 3]),
  int64: tensor(
    'int64',
    new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n, 1n, -1n, 2n ** 53n + 1n]),
    [2, 3],
  ),
  uint8: tensor('uint8', new Uint8Array([0, 255, 1, 2, 3, 4]), [2, 3]),
  uint16: tensor('uint16', new Uint16Array([0, 65535, 1, 2, 3, 4]), [2, 3]),
  uint32: tensor('uint32', new Uint32Array([0, 2 ** 32 - 1, 1, 2, 3, 4]), [2, 3]),
  uint64: tensor('uint64', new BigUint64Array([0n, 2n ** 64n - 1n, 1n, 2n, 3n, 2n ** 53n + 1n]), [2, 3]),
  bool: tensor('bool', new Uint8Array([0, 1, 1, 0, 0, 1]), [2, 3]),
  string: tensor('string', ['a', 'héllo wörld', '', '日本語', ' spaces ', 'x'.repeat(1000)], [2, 3]),
};

function identityInputs(): Record<string, Tensor> {
  const inputs: Record<string, Tensor> = {};
  for (const [type, t] of Object.entries(SAMPLES)) inputs[`x_${type}`] = t;
  return inputs;
}

/** The behaviour both entries must share, run against each. */
export function sharedSuite(entry: string, load: Loader): void {
  describe(`${entry}: MNIST CNN`, () => {
    let model: Model;
    beforeAll(async () => {
      model = await load(modelPath('mnist-cnn.onnx'), { intraOpNumThreads: 1 });
    });
    afterAll(() => model.dispose());

    it('reads metadata from the session', () => {
      const meta = model.metadata();
      expect(meta.name).toBe('mnist-cnn');
      expect(meta.version).toBe('1');
      expect(meta.platform).toBe('onnxruntime_onnx');
      expect(meta.backend).toBe(entry === 'node' ? 'onnxruntime-node/cpu' : 'onnxruntime-web/wasm');
      expect(meta.inputs).toEqual([
        {
          name: 'image',
          type: 'float32',
          dims: [-1, 1, 28, 28],
          dimNames: ['batch', null, null, null],
          batched: true,
        },
      ]);
      expect(meta.outputs).toEqual([
        { name: 'logits', type: 'float32', dims: [-1, 10], dimNames: ['batch', null], batched: true },
      ]);
      expect(meta.maxBatchSize).toBe(2 ** 31 - 1);
      expect(meta.concurrency).toBe(1);
      expect(meta.extra?.executionProvider).toBe(entry === 'node' ? 'cpu' : 'wasm');
    });

    it('classifies the 200 held-out digits at 95% or better, batches of 32 and of 1 giving the same rows', async () => {
      const holdout = mnistHoldout();
      const predictions: number[] = [];
      const batchedRows: Float32Array[] = [];
      for (let start = 0; start < holdout.count; start += 32) {
        const n = Math.min(32, holdout.count - start);
        const image = tensor('float32', holdout.images.slice(start * 784, (start + n) * 784), [n, 1, 28, 28]);
        const { logits } = await model.infer({ image });
        expect(logits!.dims).toEqual([n, 10]);
        const data = logits!.data as Float32Array;
        predictions.push(...argmaxRows(data, 10));
        for (let r = 0; r < n; r++) batchedRows.push(data.slice(r * 10, (r + 1) * 10));
      }
      const correct = predictions.filter((p, i) => p === holdout.labels[i]).length;
      expect(correct / holdout.count).toBeGreaterThanOrEqual(0.95);
      for (const i of [0, 1, 31, 32, 100, 199]) {
        const { logits } = await model.infer({ image: tensor('float32', holdout.image(i), [1, 1, 28, 28]) });
        const row = logits!.data as Float32Array;
        for (let c = 0; c < 10; c++) expect(row[c]).toBeCloseTo(batchedRows[i]![c]!, 4);
      }
    });

    it('answers concurrent requests each with its own rows', async () => {
      const holdout = mnistHoldout();
      const one = async (i: number) =>
        (await model.infer({ image: tensor('float32', holdout.image(i), [1, 1, 28, 28]) })).logits!
          .data as Float32Array;
      const sequential: Float32Array[] = [];
      for (let i = 0; i < 16; i++) sequential.push(await one(i));
      const concurrent = await Promise.all(Array.from({ length: 16 }, (_, i) => one(i)));
      for (let i = 0; i < 16; i++) expect(Array.from(concurrent[i]!)).toEqual(Array.from(sequential[i]!));
    });

    it('hands out metadata copies', () => {
      const meta = model.metadata();
      meta.inputs[0]!.dims[1] = 3;
      meta.inputs.pop();
      expect(model.metadata().inputs[0]!.dims).toEqual([-1, 1, 28, 28]);
    });

    it('returns outputs the caller owns', async () => {
      const image = tensor('float32', mnistHoldout().image(0), [1, 1, 28, 28]);
      const a = await model.infer({ image });
      const b = await model.infer({ image });
      const data = a.logits!.data as Float32Array;
      expect(data.byteOffset).toBe(0);
      expect(data.buffer.byteLength).toBe(data.byteLength);
      data.fill(0);
      expect((b.logits!.data as Float32Array).some((v) => v !== 0)).toBe(true);
      expect(image.data).toEqual(mnistHoldout().image(0));
    });

    it('accepts the model as bytes, ArrayBuffer and URL', async () => {
      const bytes = readFileSync(modelPath('mnist-cnn.onnx'));
      const image = tensor('float32', mnistHoldout().image(3), [1, 1, 28, 28]);
      const expected = (await model.infer({ image })).logits!;
      const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      for (const [source, name] of [
        [new Uint8Array(bytes), 'from-bytes'],
        [ab, 'from-arraybuffer'],
        [pathToFileURL(modelPath('mnist-cnn.onnx')), undefined],
      ] as const) {
        const other = await load(source, { name, version: '7', intraOpNumThreads: 1 });
        expect(other.name).toBe(name ?? 'mnist-cnn');
        expect(other.version).toBe('7');
        const out = (await other.infer({ image })).logits!;
        expect(tensorsEqual(out, expected)).toBe(true);
        await other.dispose();
      }
    });

    it('rejects wrong inputs with INVALID_ARGUMENT before onnxruntime sees them', async () => {
      const ok = new Float32Array(784);
      await rejectsWith(
        model.infer({ image: tensor('float64', new Float64Array(784), [1, 1, 28, 28]) }),
        'INVALID_ARGUMENT',
        /input "image": expected float32\[-1,1,28,28\], got float64\[1,1,28,28\]/,
      );
      await rejectsWith(
        model.infer({ image: tensor('float32', ok, [1, 28, 28]) }),
        'INVALID_ARGUMENT',
        /expected float32/,
      );
      await rejectsWith(
        model.infer({ image: tensor('float32', ok, [1, 1, 28, 28]), extra: tensor('float32', [1]) }),
        'INVALID_ARGUMENT',
        /unknown input "extra"/,
      );
      await rejectsWith(model.infer({}), 'INVALID_ARGUMENT', /missing input "image"/);
      await rejectsWith(
        model.infer({ image: { type: 'float32', dims: [2, 1, 28, 28], data: ok } }),
        'INVALID_ARGUMENT',
        /needs 1568 elements/,
      );
      await rejectsWith(
        model.infer({ image: { type: 'float32', dims: [1, 1, 28, 28], data: [1, 2] as never } }),
        'INVALID_ARGUMENT',
      );
      await rejectsWith(model.infer(null as never), 'INVALID_ARGUMENT');
      await rejectsWith(
        model.infer({ image: tensor('float32', ok, [1, 1, 28, 28]) }, { outputs: ['probabilities'] }),
        'INVALID_ARGUMENT',
        /unknown output "probabilities"/,
      );
      // Still serving after all that.
      const { logits } = await model.infer({ image: tensor('float32', ok, [1, 1, 28, 28]) });
      expect(logits!.dims).toEqual([1, 10]);
    });

    it('does not run a request that is cancelled or past its deadline', async () => {
      const image = tensor('float32', new Float32Array(784), [1, 1, 28, 28]);
      const before = (model.stats!().onnx as { runs: number }).runs;
      await rejectsWith(model.infer({ image }, { signal: AbortSignal.abort() }), 'CANCELLED');
      await rejectsWith(model.infer({ image }, { deadline: Date.now() - 1 }), 'DEADLINE_EXCEEDED');
      expect((model.stats!().onnx as { runs: number }).runs).toBe(before);
    });

    it('rejects at once a request aborted while onnxruntime computes, and drops its result', async () => {
      const image = tensor('float32', mnistHoldout().images.slice(0, 784 * 64), [64, 1, 28, 28]);
      const controller = new AbortController();
      const pending = model.infer({ image }, { signal: controller.signal });
      expect((model.stats!().onnx as { inFlight: number }).inFlight).toBe(1);
      controller.abort();
      await rejectsWith(pending, 'CANCELLED');
      // Rejected before onnxruntime finished: the run is still counted in flight.
      expect((model.stats!().onnx as { inFlight: number }).inFlight).toBe(1);
      // The model stays usable, and the run that was let go is counted until onnxruntime finishes it.
      const { logits } = await model.infer({ image });
      expect(logits!.dims).toEqual([64, 10]);
      expect((model.stats!().onnx as { inFlight: number }).inFlight).toBe(0);
    });

    it('annotates the request context', async () => {
      const context: Record<string, unknown> = {};
      await model.infer({ image: tensor('float32', new Float32Array(784), [1, 1, 28, 28]) }, { context });
      expect(context.backend).toBe(model.metadata().backend);
      expect(context.computeMs).toBeGreaterThan(0);
    });

    it('warms up with a request of zeros', async () => {
      const before = (model.stats!().onnx as { runs: number }).runs;
      await model.warmup!();
      expect((model.stats!().onnx as { runs: number }).runs).toBe(before + 1);
    });
  });

  describe(`${entry}: tiny-text (int64 inputs of different lengths)`, () => {
    let model: Model;
    beforeAll(async () => {
      model = await load(modelPath('tiny-text.onnx'), {
        intraOpNumThreads: 1,
        padValues: { input_ids: 0, attention_mask: 0n },
      });
    });
    afterAll(() => model.dispose());

    it('declares both inputs dynamic along batch and sequence, with their pad values', () => {
      const { inputs } = model.metadata();
      expect(inputs.map((i) => [i.name, i.type, i.dims, i.dimNames, i.padValue])).toEqual([
        ['input_ids', 'int64', [-1, -1], ['batch', 'sequence'], 0n],
        ['attention_mask', 'int64', [-1, -1], ['batch', 'sequence'], 0n],
      ]);
    });

    it('runs sequences of different lengths, padding with mask 0 leaving logits unchanged', async () => {
      const run = async (ids: bigint[][], mask: bigint[][]) => {
        const rows = ids.length;
        const len = ids[0]!.length;
        const { logits } = await model.infer({
          input_ids: tensor('int64', ids.flat(), [rows, len]),
          attention_mask: tensor('int64', mask.flat(), [rows, len]),
        });
        expect(logits!.dims).toEqual([rows, 3]);
        return logits!.data as Float32Array;
      };
      const short = await run([[5n, 17n, 42n]], [[1n, 1n, 1n]]);
      const long = await run([[5n, 17n, 42n, 99n, 7n, 8n, 1n]], [[1n, 1n, 1n, 1n, 1n, 1n, 1n]]);
      expect(Array.from(short)).not.toEqual(Array.from(long));
      const padded = await run(
        [
          [5n, 17n, 42n, 0n, 0n, 0n, 0n],
          [5n, 17n, 42n, 99n, 7n, 8n, 1n],
        ],
        [
          [1n, 1n, 1n, 0n, 0n, 0n, 0n],
          [1n, 1n, 1n, 1n, 1n, 1n, 1n],
        ],
      );
      for (let c = 0; c < 3; c++) {
        expect(Math.abs(padded[c]! - short[c]!)).toBeLessThan(1e-5);
        expect(Math.abs(padded[3 + c]! - long[c]!)).toBeLessThan(1e-5);
      }
    });

    it('rejects int32 ids and mismatched batch sizes', async () => {
      await rejectsWith(
        model.infer({
          input_ids: tensor('int32', [1, 2], [1, 2]),
          attention_mask: tensor('int64', [1n, 1n], [1, 2]),
        }),
        'INVALID_ARGUMENT',
        /input "input_ids": expected int64/,
      );
      await rejectsWith(
        model.infer({
          input_ids: tensor('int64', [1n, 2n], [1, 2]),
          attention_mask: tensor('int64', [1n, 1n, 1n, 1n], [2, 2]),
        }),
        'INVALID_ARGUMENT',
        /batch size/,
      );
    });
  });

  describe(`${entry}: every tensor type round-trips without loss`, () => {
    let identity: Model;
    let cast: Model;
    beforeAll(async () => {
      identity = await load(fixture('identity-all-types.onnx'), { intraOpNumThreads: 1 });
      cast = await load(fixture('cast-fan-out.onnx'), { intraOpNumThreads: 1 });
    });
    afterAll(async () => {
      await identity.dispose();
      await cast.dispose();
    });

    it('declares all thirteen types', () => {
      const types = identity.metadata().inputs.map((i) => i.type);
      expect(types.sort()).toEqual(Object.keys(SAMPLES).sort());
    });

    it('returns each input as it went in, as the core array class', async () => {
      const out = await identity.infer(identityInputs());
      for (const [type, sent] of Object.entries(SAMPLES)) {
        const got = out[`y_${type}`]!;
        expect(got.type, type).toBe(type);
        expect(got.dims, type).toEqual([2, 3]);
        if (type !== 'string')
          expect((got.data as object).constructor, type).toBe((sent.data as object).constructor);
        expect(tensorsEqual(got, sent), type).toBe(true);
        expect(got.data, type).not.toBe(sent.data);
      }
    });

    it('takes raw-byte strings as UTF-8 and fetches only the outputs asked for', async () => {
      const inputs = identityInputs();
      inputs.x_string = {
        type: 'string',
        dims: [2, 3],
        data: ['a', 'b', 'c', 'd', 'e', 'f'].map((s) => new TextEncoder().encode(s)),
      };
      const out = await identity.infer(inputs, { outputs: ['y_string', 'y_int64'] });
      expect(Object.keys(out).sort()).toEqual(['y_int64', 'y_string']);
      expect(out.y_string!.data).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    });

    it('rejects strings onnxruntime would cut short or cannot hold', async () => {
      const nul = identityInputs();
      nul.x_string = tensor('string', ['a', 'b\u0000c', '', '', '', ''], [2, 3]);
      await rejectsWith(identity.infer(nul), 'INVALID_ARGUMENT', /x_string.*element 1 contains a NUL/);
      const bad = identityInputs();
      bad.x_string = {
        type: 'string',
        dims: [2, 3],
        data: [0, 1, 2, 3, 4, 5].map(() => new Uint8Array([0xff, 0xfe])),
      };
      await rejectsWith(identity.infer(bad), 'INVALID_ARGUMENT', /not valid UTF-8/);
    });

    it('runs an empty batch', async () => {
      const inputs: Record<string, Tensor> = {};
      for (const [type, t] of Object.entries(SAMPLES)) {
        inputs[`x_${type}`] = {
          type: t.type,
          dims: [0, 3],
          data: (t.data as Float32Array).slice(0, 0),
        } as Tensor;
      }
      const out = await identity.infer(inputs);
      expect(out.y_float16!.dims).toEqual([0, 3]);
      expect(out.y_string!.data).toEqual([]);
    });

    it('computes outputs of every numeric type (Cast)', async () => {
      const out = await cast.infer({ x: tensor('float32', [1.5, -2, 0, 1], [1, 4]) });
      expect(out.as_float16!.data).toEqual(new Uint16Array([0x3e00, 0xc000, 0, 0x3c00]));
      expect(out.as_int64!.data).toEqual(new BigInt64Array([1n, -2n, 0n, 1n]));
      // (float -2 to uint64 is implementation-defined, so only the other elements are checked)
      const u64 = out.as_uint64!.data as BigUint64Array;
      expect([u64[0], u64[2], u64[3]]).toEqual([1n, 0n, 1n]);
      expect(out.as_bool!.data).toEqual(new Uint8Array([1, 1, 0, 1]));
      expect(out.as_float64!.data).toEqual(new Float64Array([1.5, -2, 0, 1]));
      expect(Object.keys(out)).toHaveLength(12);
    });
  });

  describe(`${entry}: signatures and failures`, () => {
    it('reads unbatched inputs, unnamed dynamic dims and leaves non-tensor outputs out', async () => {
      const model = await load(fixture('mixed.onnx'), { intraOpNumThreads: 1 });
      const meta = model.metadata();
      expect(meta.inputs.map((i) => [i.name, i.dims, i.batched])).toEqual([
        ['features', [-1, 3], true],
        ['scale', [1], false],
        ['tokens', [-1, -1], true],
      ]);
      expect(meta.inputs[2]!.dimNames).toEqual(['batch', null]);
      expect(meta.maxBatchSize).toBe(0);
      expect(meta.outputs.map((o) => o.name)).toEqual(['scaled', 'total', 'tokens_out']);
      expect(meta.extra?.skippedOutputs).toEqual([
        { name: 'pair', reason: 'not a tensor (a sequence, map or optional)' },
      ]);
      const out = await model.infer({
        features: tensor('float32', [1, 2, 3, 4, 5, 6], [2, 3]),
        scale: tensor('float32', [2], [1]),
        tokens: tensor('int64', [1n, 2n, 3n, 4n, 5n, 6n], [2, 3]),
      });
      expect(Array.from(out.total!.data as Float32Array)).toEqual([6, 15]);
      expect(Array.from(out.scaled!.data as Float32Array)).toEqual([2, 4, 6, 8, 10, 12]);
      await rejectsWith(
        model.infer(
          {
            features: tensor('float32', [1, 2, 3], [1, 3]),
            scale: tensor('float32', [2], [1]),
            tokens: tensor('int64', [1n], [1, 1]),
          },
          { outputs: ['pair'] },
        ),
        'INVALID_ARGUMENT',
      );
      await model.dispose();
    });

    it('a static model is not batched', async () => {
      const model = await load(fixture('static-shape.onnx'), { intraOpNumThreads: 1 });
      const meta = model.metadata();
      expect(meta.inputs[0]).toMatchObject({ dims: [2, 2], batched: false });
      expect(meta.maxBatchSize).toBe(0);
      await rejectsWith(
        model.infer({ x: tensor('float32', [1, 2, 3], [3, 1]) }),
        'INVALID_ARGUMENT',
        /expected float32\[2,2\]/,
      );
      const { y } = await model.infer({ x: tensor('float32', [1, -2, 3, 0], [2, 2]) });
      expect(Array.from(y!.data as Float32Array)).toEqual([-1, 2, -3, -0]);
      await model.dispose();
    });

    it('turns an error only onnxruntime can see into a clean INVALID_ARGUMENT', async () => {
      const model = await load(fixture('add-dynamic.onnx'), { intraOpNumThreads: 1 });
      const err = await rejectsWith(
        model.infer({
          a: tensor('float32', [1, 2, 3, 4, 5, 6], [2, 3]),
          b: tensor('float32', [1, 2, 3, 4], [2, 2]),
        }),
        'INVALID_ARGUMENT',
        /model "add-dynamic": onnxruntime rejected the request: .*broadcast/,
      );
      expect(err.message).not.toMatch(/onnxruntime_src|\.h:\d+|was false/);
      expect(err.cause).toBeInstanceOf(Error);
      expect((model.stats!().onnx as { failed: number }).failed).toBe(1);
      const { c } = await model.infer({
        a: tensor('float32', [1, 2, 3, 4, 5, 6], [2, 3]),
        b: tensor('float32', [10, 20], [2, 1]),
      });
      expect(Array.from(c!.data as Float32Array)).toEqual([11, 12, 13, 24, 25, 26]);
      await model.dispose();
    });

    it('fails to load with NOT_FOUND or INVALID_ARGUMENT, and checks its options', async () => {
      await rejectsWith(load(fixture('no-such-model.onnx')), 'NOT_FOUND');
      await rejectsWith(
        load(new Uint8Array([1, 2, 3, 4]), { name: 'junk' }),
        'INVALID_ARGUMENT',
        /model "junk" is not a model onnxruntime can load/,
      );
      await expect(load(new Uint8Array([1]))).rejects.toThrow(/options.name must be a non-empty string/);
      await expect(load(fixture('mixed.onnx'), { intraOpNumThreads: 0 })).rejects.toThrow(
        'options.intraOpNumThreads must be a positive integer',
      );
      await expect(load(fixture('mixed.onnx'), { executionProviders: [] })).rejects.toThrow(
        /executionProviders must be a non-empty array/,
      );
      await expect(load(fixture('mixed.onnx'), { padValues: { nope: 0 } })).rejects.toThrow(
        /padValues names "nope"/,
      );
      await expect(load(fixture('mixed.onnx'), { padValues: { tokens: 0.5 } })).rejects.toThrow(
        /padValues.tokens must be a bigint or integer/,
      );
    });

    it('dispose is idempotent, waits for runs in flight, and later infers are UNAVAILABLE', async () => {
      const model = await load(modelPath('mnist-cnn.onnx'), { intraOpNumThreads: 1 });
      const image = tensor('float32', new Float32Array(784 * 8), [8, 1, 28, 28]);
      const inFlight = model.infer({ image });
      const first = model.dispose();
      const second = model.dispose();
      expect(second).toBe(first);
      expect(model.isReady!()).toBe(false);
      const { logits } = await inFlight;
      expect(logits!.dims).toEqual([8, 10]);
      await first;
      await rejectsWith(model.infer({ image }), 'UNAVAILABLE', /disposed/);
      await model.dispose();
    });
  });
}
