import { fromFunction, type Model, type Tensors } from '@mlserve/core';
import type { FeatureRecord, FeatureStore } from '../src/index.js';

/** A model that echoes what it received, so tests see exactly what the lookup built. */
export function echoModel(): Model & { seen: Tensors[] } {
  const seen: Tensors[] = [];
  const model = fromFunction({
    name: 'echo',
    inputs: [{ name: 'features', type: 'float32', dims: [-1, -1] }],
    outputs: [{ name: 'features', type: 'float32', dims: [-1, -1] }],
    infer: (inputs) => {
      seen.push(inputs);
      return inputs;
    },
  });
  return Object.assign(model, { seen });
}

/** Wraps a real store, counting its calls and optionally delaying or failing them. */
export function instrumented(
  store: FeatureStore,
  behaviour: { delayMs?: number; fail?: boolean } = {},
): FeatureStore & { calls: string[][]; behaviour: { delayMs?: number; fail?: boolean } } {
  const calls: string[][] = [];
  return {
    calls,
    behaviour,
    async getMany(keys: string[], features: string[]): Promise<(FeatureRecord | null)[]> {
      calls.push([...keys]);
      if (behaviour.delayMs) await new Promise((r) => setTimeout(r, behaviour.delayMs));
      if (behaviour.fail) throw new Error('store is down');
      return store.getMany(keys, features);
    },
  };
}
