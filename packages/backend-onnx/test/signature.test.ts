import { loadOnnxModel } from '@mlserve/backend-onnx';
import { loadOnnxModel as loadWeb } from '@mlserve/backend-onnx/web';
import {
  concurrencyLimit,
  type Model,
  pipeline,
  type Tensor,
  type Tensors,
  tensor,
  timeout,
  validation,
} from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { describe, expect, expectTypeOf, it } from 'vitest';

const mnist = modelPath('mnist-cnn.onnx');
const image = () => tensor('float32', mnistHoldout().image(0), [1, 1, 28, 28]);

describe('loadOnnxModel with a declared signature', () => {
  it('types the model (on real onnxruntime-node) and keeps it typed through pipeline()', async () => {
    const model = await loadOnnxModel(mnist, {
      name: 'mnist',
      signature: { inputs: { image: 'float32' }, outputs: { logits: 'float32' } },
    });
    expectTypeOf(model).toEqualTypeOf<Model<{ image: 'float32' }, { logits: 'float32' }>>();
    const served = pipeline(
      model,
      timeout({ defaultMs: 5000 }),
      validation(),
      concurrencyLimit({ maxConcurrent: 1 }),
    );
    expectTypeOf(served).toEqualTypeOf<Model<{ image: 'float32' }, { logits: 'float32' }>>();
    try {
      const out = await served.infer({ image: image() });
      expectTypeOf(out).toEqualTypeOf<{ logits: Tensor<'float32'> }>();
      expectTypeOf(out.logits.data).toEqualTypeOf<Float32Array>();
      expect(out.logits.dims).toEqual([1, 10]);
      const best = out.logits.data.indexOf(Math.max(...out.logits.data));
      expect(best).toBe(mnistHoldout().labels[0]);
      // @ts-expect-error a misspelt output fails to compile
      expect(out.logitz).toBeUndefined();
      // @ts-expect-error a misspelt input fails to compile (and is refused at run time)
      await expect(served.infer({ imag: image() })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    } finally {
      await served.dispose();
    }
  });

  it('explicit type arguments type it too (unchecked: prefer the signature option)', async () => {
    const model = await loadOnnxModel<{ image: 'float32' }, { logits: 'float32' }>(mnist);
    try {
      const { logits } = await model.infer({ image: image() });
      expectTypeOf(logits.data).toEqualTypeOf<Float32Array>();
      expect(logits.data).toBeInstanceOf(Float32Array);
    } finally {
      await model.dispose();
    }
  });

  it('refuses a signature that does not match the session, naming the difference', async () => {
    await expect(
      loadOnnxModel(mnist, { signature: { inputs: { image: 'float32' }, outputs: { logits: 'int64' } } }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'model "mnist-cnn" output "logits" is float32, the signature says int64',
    });
    await expect(
      loadOnnxModel(mnist, { signature: { inputs: { pixels: 'float32' }, outputs: {} } }),
    ).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'model "mnist-cnn" has no input "pixels" (it has image)',
    });
    await expect(loadWeb(mnist, { signature: { inputs: {}, outputs: {} } })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'model "mnist-cnn" has input "image" (float32), which the signature does not declare',
    });
  });

  it('without a signature the model is the untyped Model, as before', async () => {
    const model = await loadOnnxModel(mnist);
    try {
      expectTypeOf(model).toEqualTypeOf<Model>();
      const inputs: Tensors = { image: image() };
      const out = await model.infer(inputs);
      expectTypeOf(out).toEqualTypeOf<Tensors>();
      expect(out.logits?.type).toBe('float32');
    } finally {
      await model.dispose();
    }
  });
});
