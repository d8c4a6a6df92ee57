import { describe, expect, expectTypeOf, it } from 'vitest';
import { concurrencyLimit } from '../src/concurrency.js';
import { fromFunction, type TensorSpec } from '../src/function-model.js';
import { graph } from '../src/graph.js';
import { compose, pipeline, wrap } from '../src/pipeline.js';
import { checkSignature } from '../src/signature.js';
import { tensor } from '../src/tensor.js';
import { timeout } from '../src/timeout.js';
import type {
  GenericMiddleware,
  InferOptions,
  Middleware,
  Model,
  Tensor,
  Tensors,
  TensorTypes,
  TypedTensors,
} from '../src/types.js';
import { validation } from '../src/validation.js';

const classifier = () =>
  fromFunction({
    name: 'classifier',
    inputs: [{ name: 'image', type: 'float32', dims: [-1, 2] }],
    outputs: [
      { name: 'logits', type: 'float32', dims: [-1, 2] },
      { name: 'label', type: 'int64', dims: [-1] },
    ],
    infer: ({ image }) => {
      expectTypeOf(image).toEqualTypeOf<Tensor<'float32'>>();
      const rows = image.dims[0] ?? 0;
      const label = new BigInt64Array(rows);
      for (let r = 0; r < rows; r++) label[r] = image.data[r * 2 + 1]! > image.data[r * 2]! ? 1n : 0n;
      return { logits: image, label: { type: 'int64', dims: [rows], data: label } };
    },
  });

type Sig = [{ image: 'float32' }, { logits: 'float32'; label: 'int64' }];
const image = tensor('float32', [0.2, 0.8], [1, 2]);

describe('typed models', () => {
  it('fromFunction types the model by the specs written in the call', async () => {
    const m = classifier();
    expectTypeOf(m).toEqualTypeOf<Model<Sig[0], Sig[1]>>();
    const out = await m.infer({ image });
    expectTypeOf(out).toEqualTypeOf<{ logits: Tensor<'float32'>; label: Tensor<'int64'> }>();
    expectTypeOf(out.logits.data).toEqualTypeOf<Float32Array>();
    expectTypeOf(out.label.data).toEqualTypeOf<BigInt64Array>();
    expect(out.label.data[0]).toBe(1n);
    // @ts-expect-error a misspelt output fails to compile
    expect(out.logitz).toBeUndefined();
    // @ts-expect-error a misspelt input fails to compile
    await expect(pipeline(m, validation()).infer({ imag: image })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
    // @ts-expect-error an input of the wrong element type fails to compile
    await m.infer({ image: tensor('int64', [1n, 2n], [1, 2]) }).catch(() => {});
  });

  it('naming outputs in the call types the result with only those', async () => {
    const out = await classifier().infer({ image }, { outputs: ['label'] });
    expectTypeOf(out).toEqualTypeOf<{ label: Tensor<'int64'> }>();
    expect(Object.keys(out)).toEqual(['label']);
    // @ts-expect-error not asked for, so not there
    expect(out.logits).toBeUndefined();
  });

  it('stays typed through pipeline() and core middleware', async () => {
    const served = pipeline(
      classifier(),
      timeout({ defaultMs: 1000 }),
      validation(),
      concurrencyLimit({ maxConcurrent: 2 }),
    );
    expectTypeOf(served).toEqualTypeOf<Model<Sig[0], Sig[1]>>();
    const out = await served.infer({ image });
    expectTypeOf(out.logits).toEqualTypeOf<Tensor<'float32'>>();
    expect(Array.from(out.logits.data)).toEqual([0.20000000298023224, 0.800000011920929]);
    const nested = pipeline(served, compose(timeout(), validation()));
    expectTypeOf(nested).toEqualTypeOf<Model<Sig[0], Sig[1]>>();
  });

  it('a user layer written with wrap() keeps the signature', async () => {
    const seen: string[] = [];
    const logging: GenericMiddleware = (inner) =>
      wrap(inner, {
        layer: 'logging',
        infer: (inputs, options) => {
          seen.push(inner.name);
          return inner.infer(inputs, options);
        },
      });
    const served = pipeline(classifier(), logging);
    expectTypeOf(served).toEqualTypeOf<Model<Sig[0], Sig[1]>>();
    expect((await served.infer({ image })).label.data[0]).toBe(1n);
    expect(seen).toEqual(['classifier']);
  });

  it('an untyped layer makes the pipeline an untyped Model, and still runs', async () => {
    const untypedLayer: Middleware = (inner: Model): Model => wrap(inner, { layer: 'untyped' });
    const served = pipeline(classifier(), untypedLayer, timeout());
    expectTypeOf(served).toEqualTypeOf<Model>();
    const out = await served.infer({ image });
    expectTypeOf(out).toEqualTypeOf<Tensors>();
    expect(out.label?.type).toBe('int64');
  });

  it('graph() is typed by its declared signature, checked when it is built', async () => {
    const double = fromFunction({
      name: 'double',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
      infer: ({ x }) => ({ y: { type: 'float32', dims: x.dims, data: x.data.map((v) => v * 2) } }),
    });
    const g = graph({
      name: 'g',
      steps: [{ model: double, outputs: { y: 'image' } }, { model: classifier() }],
      signature: { inputs: { x: 'float32' }, outputs: { label: 'int64', logits: 'float32' } },
    });
    expectTypeOf(g).toEqualTypeOf<Model<{ x: 'float32' }, { label: 'int64'; logits: 'float32' }>>();
    const out = await g.infer({ x: tensor('float32', [1, 3], [1, 2]) });
    expect(Array.from(out.logits.data)).toEqual([2, 6]);
    expect(() =>
      graph({
        name: 'bad',
        steps: [{ model: double }],
        signature: { inputs: { x: 'float32' }, outputs: { y: 'int64' } },
      }),
    ).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        message: 'model "bad" output "y" is float32, the signature says int64',
      }),
    );
    expectTypeOf(graph({ name: 'u', steps: [{ model: double }] })).toEqualTypeOf<Model>();
  });

  it('checkSignature names the first difference', () => {
    const meta = classifier().metadata();
    expect(() =>
      checkSignature(meta, { inputs: { image: 'float32' }, outputs: { logits: 'float32', label: 'int64' } }),
    ).not.toThrow();
    expect(() => checkSignature(meta, { inputs: {}, outputs: {} })).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        message: 'model "classifier" has input "image" (float32), which the signature does not declare',
      }),
    );
    expect(() => checkSignature(meta, { inputs: { image: 'float32', extra: 'int32' }, outputs: {} })).toThrow(
      expect.objectContaining({
        code: 'INVALID_ARGUMENT',
        message: 'model "classifier" has no input "extra" (it has image)',
      }),
    );
  });
});

describe('the untyped path accepts what it accepted', () => {
  it('Model alone is Record<string, Tensor> in and out', async () => {
    const specs: TensorSpec[] = [{ name: 'x', type: 'float32', dims: [-1] }];
    const m = fromFunction({
      name: 'untyped',
      inputs: specs,
      outputs: [{ name: 'y', type: 'float32', dims: [-1] } as TensorSpec],
      infer: (inputs) => {
        expectTypeOf(inputs).toEqualTypeOf<TypedTensors<TensorTypes>>();
        return { y: inputs.x! };
      },
    });
    expectTypeOf(m).toEqualTypeOf<Model>();
    const out = await m.infer({ x: tensor('float32', [1], [1]) });
    expectTypeOf(out).toEqualTypeOf<Tensors>();
    expectTypeOf(out.anything).toEqualTypeOf<Tensor | undefined>();
    expect(out.y?.dims).toEqual([1]);
  });

  it('hand-written models, layers and typed-into-untyped assignments still compile', async () => {
    // A model written as an object literal with untyped signatures, as before.
    const literal: Model = {
      name: 'lit',
      version: '1',
      metadata: () => ({
        name: 'lit',
        version: '1',
        platform: 'x',
        inputs: [],
        outputs: [],
        maxBatchSize: 0,
        concurrency: 1,
      }),
      async infer(inputs: Tensors, _options?: InferOptions): Promise<Tensors> {
        return inputs;
      },
      async dispose() {},
    };
    // Spreading a model and replacing infer with a contextually typed function.
    const spread: Model = { ...literal, infer: (inputs, options) => literal.infer(inputs, options) };
    const layer: Middleware = (inner) => ({ ...inner, infer: (i, o) => inner.infer(i, o) });
    const typed: Model = classifier();
    const models: Model[] = [typed, spread, pipeline(literal, layer, timeout())];
    const out = await models[1]!.infer({ a: image });
    expect(out.a).toBe(image);
    expect(await typed.infer({ image })).toHaveProperty('label');
    // Generic layers are Middleware too.
    const asMiddleware: Middleware[] = [timeout(), validation(), concurrencyLimit({ maxConcurrent: 1 })];
    expect(asMiddleware).toHaveLength(3);
  });
});
