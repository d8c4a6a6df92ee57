/**
 * A small onnxruntime-node loader for the tests: real sessions, real inference. The repository's
 * default loader is @mlserve/backend-onnx; this one keeps the tests independent of it and lets
 * them count loads and fail on purpose.
 */
import { type DataType, fromFunction, type Model, type Tensors } from '@mlserve/core';
import * as ort from 'onnxruntime-node';

export interface LoaderLog {
  loads: string[];
  disposed: string[];
}

export function ortLoader(log: LoaderLog = { loads: [], disposed: [] }, delayMs = 0) {
  return async (source: string, options: Record<string, unknown>): Promise<Model> => {
    log.loads.push(`${options.name}/${options.version}`);
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    const session = await ort.InferenceSession.create(source, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    const spec = (m: ort.InferenceSession.ValueMetadata) => {
      if (!m.isTensor) throw new Error(`${m.name} is not a tensor`);
      const dims = m.shape.map((d) => (typeof d === 'number' ? d : -1));
      return { name: m.name, type: m.type as DataType, dims };
    };
    const name = String(options.name);
    const version = String(options.version);
    return fromFunction({
      name,
      version,
      platform: 'onnxruntime_onnx',
      backend: 'test-ort/cpu',
      inputs: session.inputMetadata.map(spec),
      outputs: session.outputMetadata.map(spec),
      infer: async (inputs) => {
        const feeds: Record<string, ort.Tensor> = {};
        for (const [k, t] of Object.entries(inputs)) {
          feeds[k] = new ort.Tensor(t.type as ort.Tensor.Type, t.data as Float32Array, t.dims as number[]);
        }
        const out = await session.run(feeds);
        const result: Tensors = {};
        for (const [k, t] of Object.entries(out)) {
          result[k] = { type: t.type as DataType, dims: [...t.dims], data: t.data as Float32Array };
        }
        return result;
      },
      dispose: async () => {
        log.disposed.push(`${name}/${version}`);
        await session.release();
      },
    });
  };
}
