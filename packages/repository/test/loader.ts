/**
 * The tests' loader: @mlserve/backend-onnx (real onnxruntime-node sessions), one intra-op thread,
 * wrapped to record loads and disposals and, when asked, to load slowly.
 */
import { loadOnnxModel } from '@mlserve/backend-onnx';
import type { Model } from '@mlserve/core';

export interface LoaderLog {
  loads: string[];
  disposed: string[];
}

export function onnxLoader(log: LoaderLog = { loads: [], disposed: [] }, delayMs = 0) {
  return async (source: string, options: Record<string, unknown>): Promise<Model> => {
    log.loads.push(`${options.name}/${options.version}`);
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    const model = await loadOnnxModel(source, { ...options, intraOpNumThreads: 1 });
    const dispose = model.dispose.bind(model);
    let disposed = false;
    model.dispose = async () => {
      if (!disposed) log.disposed.push(`${model.name}/${model.version}`);
      disposed = true;
      await dispose();
    };
    return model;
  };
}
