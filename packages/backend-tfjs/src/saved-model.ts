import { invalidArgument, notFound, type TensorInfo, unavailable } from '@mlserve/core';
import type * as tf from '@tensorflow/tfjs';
import type { ActiveBackend } from './backends.js';
import { coreType } from './convert.js';

/**
 * The part of tfjs-node's `tf.node` namespace this file uses, written against its documented API
 * (`getMetaGraphsFromSavedModel`, `loadSavedModel`, `TFSavedModel.predict`). Not yet run on a real
 * tfjs-node: tfjs-node cannot be installed where this package is developed.
 */
export interface TfNodeSavedModelApi {
  getMetaGraphsFromSavedModel(path: string): Promise<
    {
      tags: string[];
      signatureDefs: Record<
        string,
        { inputs: Record<string, tf.ModelTensorInfo>; outputs: Record<string, tf.ModelTensorInfo> }
      >;
    }[]
  >;
  loadSavedModel(
    path: string,
    tags?: string[],
    signature?: string,
  ): Promise<{
    predict(inputs: tf.NamedTensorMap): tf.Tensor | tf.Tensor[] | tf.NamedTensorMap;
    dispose(): void;
  }>;
}

/** A loaded SavedModel signature, ready to run. */
export interface SavedModelHandle {
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  run(feeds: tf.Tensor[], outputs: string[]): Promise<tf.Tensor[]>;
  dispose(): void;
}

function toInfo(key: string, t: tf.ModelTensorInfo): TensorInfo {
  const dims = (t.shape ?? [-1]).map((d) => (d === null || d === undefined || d < 0 ? -1 : d));
  return { name: key, type: coreType(t.dtype), dims, batched: dims[0] === -1 };
}

/**
 * Loads one signature of a TensorFlow SavedModel through tfjs-node (`tf.node.loadSavedModel`).
 * Inputs and outputs are named by the signature's keys, as TF Serving names them.
 */
export async function loadSavedModel(
  active: ActiveBackend,
  path: string,
  tags: string[] = ['serve'],
  signature = 'serving_default',
): Promise<SavedModelHandle> {
  const api = (active.module as { node?: TfNodeSavedModelApi } | undefined)?.node;
  if (active.name !== 'tensorflow' || !api?.loadSavedModel) {
    throw unavailable(
      `loading a SavedModel (${path}) needs the tensorflow backend: install @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu (active backend: ${active.name})`,
    );
  }
  if (!Array.isArray(tags) || tags.some((t) => typeof t !== 'string')) {
    throw invalidArgument('loadTfjsModel: options.tags must be an array of strings');
  }
  const metaGraphs = await api.getMetaGraphsFromSavedModel(path);
  const wanted = [...tags].sort().join(',');
  const graph = metaGraphs.find((g) => [...g.tags].sort().join(',') === wanted);
  if (!graph) {
    const have = metaGraphs.map((g) => `[${g.tags.join(',')}]`).join(', ');
    throw notFound(`SavedModel ${path} has no MetaGraph tagged [${tags.join(',')}] (it has ${have})`);
  }
  const def = graph.signatureDefs[signature];
  if (!def) {
    const have = Object.keys(graph.signatureDefs).join(', ');
    throw notFound(`SavedModel ${path} has no signature "${signature}" (signatures: ${have})`);
  }
  const inputs = Object.entries(def.inputs).map(([k, t]) => toInfo(k, t));
  const outputs = Object.entries(def.outputs).map(([k, t]) => toInfo(k, t));
  const model = await api.loadSavedModel(path, tags, signature);
  return {
    inputs,
    outputs,
    async run(feeds, outs) {
      const map: tf.NamedTensorMap = {};
      inputs.forEach((inp, i) => {
        map[inp.name] = feeds[i] as tf.Tensor;
      });
      const result = model.predict(map);
      let byName: tf.NamedTensorMap;
      if (Array.isArray(result)) {
        byName = {};
        outputs.forEach((o, i) => {
          if (result[i]) byName[o.name] = result[i];
        });
      } else if (isTensor(result)) {
        byName = { [outputs[0]?.name ?? 'output']: result };
      } else {
        byName = result;
      }
      const picked: tf.Tensor[] = [];
      for (const o of outs) {
        const t = byName[o];
        if (!t) throw notFound(`SavedModel signature "${signature}" returned no output "${o}"`);
        picked.push(t);
      }
      for (const t of Object.values(byName)) if (!picked.includes(t)) t.dispose();
      return picked;
    },
    dispose: () => model.dispose(),
  };
}

function isTensor(value: unknown): value is tf.Tensor {
  return typeof value === 'object' && value !== null && 'dataId' in value && 'shape' in value;
}
