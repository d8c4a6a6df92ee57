import { fromFunction, type Model, type TensorSpec, type Tensors } from '@mlserve/core';
import * as ort from 'onnxruntime-node';

/**
 * A small local stand-in for @mlserve/backend-onnx: wraps a real onnxruntime-node session into a
 * core Model with a declared signature. One intra-op thread, so results do not depend on how many
 * threads a run happened to get.
 */
export async function loadOrt(
  path: string,
  inputs: TensorSpec[],
  outputs: TensorSpec[],
  threads = 1,
): Promise<Model & { session: ort.InferenceSession }> {
  const session = await ort.InferenceSession.create(path, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
  });
  const model = fromFunction({
    name: path.split('/').pop()!.replace('.onnx', ''),
    inputs,
    outputs,
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime-node/cpu',
    infer: async (feeds: Tensors, opts) => {
      const ortFeeds: Record<string, ort.Tensor> = {};
      for (const [name, t] of Object.entries(feeds)) {
        ortFeeds[name] = new ort.Tensor(t.type as 'float32', t.data as Float32Array, t.dims);
      }
      const res = opts.outputs ? await session.run(ortFeeds, [...opts.outputs]) : await session.run(ortFeeds);
      const out: Tensors = {};
      for (const [name, t] of Object.entries(res)) {
        out[name] = { type: t.type as 'float32', dims: [...t.dims], data: t.data as Float32Array };
      }
      return out;
    },
    dispose: () => session.release(),
  });
  return Object.assign(model, { session });
}
