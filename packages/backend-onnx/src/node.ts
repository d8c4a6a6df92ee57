import type { Model } from '@mlserve/core';
import { nodeRuntime } from './node-runtime.js';
import { loadWithRuntime, type OnnxModelOptions, type OnnxModelSource } from './session-model.js';

/**
 * Loads an ONNX model on onnxruntime-node and returns it as a {@link Model}: metadata from the
 * session (dynamic dims as -1, `batched` where dim 0 is dynamic), inputs validated before they
 * reach onnxruntime, only the requested outputs fetched, every failure a `ServeError`.
 *
 * `source` is a file path, a `file:` or `http(s):` URL, or the model's bytes. Load failures reject
 * with NOT_FOUND (no such file), INVALID_ARGUMENT (not a model), or UNAVAILABLE (a requested
 * execution provider cannot load, unless `fallbackToCpu` is set).
 *
 * @example
 * ```ts
 * import { loadOnnxModel } from '@mlserve/backend-onnx';
 * import { tensor } from '@mlserve/core';
 *
 * const model = await loadOnnxModel('models/mnist-cnn.onnx', { name: 'mnist', intraOpNumThreads: 1 });
 * const { logits } = await model.infer({ image: tensor('float32', new Float32Array(784), [1, 1, 28, 28]) });
 * await model.dispose();
 * ```
 */
export async function loadOnnxModel(source: OnnxModelSource, options?: OnnxModelOptions): Promise<Model> {
  return loadWithRuntime(await nodeRuntime(), source, options);
}
