import type { Model, TensorTypes } from '@mlserve/core';
import * as ort from 'onnxruntime-web';
import type { OrtModule } from './ort.js';
import {
  loadWithRuntime,
  type OnnxModelOptions,
  type OnnxModelSource,
  withSignature,
} from './session-model.js';
import { webRuntime } from './web-runtime.js';

const runtime = webRuntime(
  ort as unknown as OrtModule & { env: { versions: Record<string, string | undefined> } },
);

/**
 * Loads an ONNX model on onnxruntime-web (WebAssembly by default, `webgpu` or `webnn` where the
 * runtime has them) and returns it as a {@link Model}: the same API as the Node entry, for the same
 * model and pipeline code in a browser. It also runs in Node (a file path works there).
 *
 * `source` is a URL (fetched by onnxruntime-web), a path in Node, or the model's bytes. Configure
 * the WebAssembly runtime itself through onnxruntime-web's global `ort.env.wasm` (threads, paths).
 *
 * @example
 * ```ts
 * import { loadOnnxModel } from '@mlserve/backend-onnx/web';
 *
 * const model = await loadOnnxModel('/models/mnist-cnn.onnx', { name: 'mnist' });
 * const { logits } = await model.infer({ image: { type: 'float32', dims: [1, 1, 28, 28], data: pixels } });
 * ```
 */
export async function loadOnnxModel<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes>(
  source: OnnxModelSource,
  options?: OnnxModelOptions<I, O>,
): Promise<Model<I, O>> {
  return withSignature(await loadWithRuntime(runtime, source, options), options?.signature);
}
