import type { Model, TensorTypes } from '@mlserve/core';
import { nodeRuntime } from './node-runtime.js';
import {
  loadWithRuntime,
  type OnnxModelOptions,
  type OnnxModelSource,
  withSignature,
} from './session-model.js';

/**
 * Loads an ONNX model on onnxruntime-node and returns it as a {@link Model}: metadata from the
 * session (dynamic dims as -1, `batched` where dim 0 is dynamic), inputs validated before they
 * reach onnxruntime, only the requested outputs fetched, every failure a `ServeError`.
 *
 * `source` is a file path, a `file:` or `http(s):` URL, or the model's bytes. Load failures reject
 * with NOT_FOUND (no such file), INVALID_ARGUMENT (not a model), or UNAVAILABLE (a requested
 * execution provider cannot load, unless `fallbackToCpu` is set).
 *
 * With `signature`, the model is typed: `infer` takes and returns exactly the declared tensors
 * (`out.logits.data` is a `Float32Array`; `out.logitz` fails to compile), checked against the
 * session at load (INVALID_ARGUMENT on a difference). Without it the model is an untyped `Model`.
 *
 * @example
 * ```ts
 * import { loadOnnxModel } from '@mlserve/backend-onnx';
 * import { tensor } from '@mlserve/core';
 *
 * const model = await loadOnnxModel('models/mnist-cnn.onnx', {
 *   name: 'mnist',
 *   intraOpNumThreads: 1,
 *   signature: { inputs: { image: 'float32' }, outputs: { logits: 'float32' } },
 * });
 * const { logits } = await model.infer({ image: tensor('float32', new Float32Array(784), [1, 1, 28, 28]) });
 * logits.data; // Float32Array
 * await model.dispose();
 * ```
 */
export async function loadOnnxModel<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes>(
  source: OnnxModelSource,
  options?: OnnxModelOptions<I, O>,
): Promise<Model<I, O>> {
  return withSignature(await loadWithRuntime(await nodeRuntime(), source, options), options?.signature);
}
