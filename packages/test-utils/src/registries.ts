import { fromFunction, ModelRegistry } from '@mlserve/core';

/** A registry with one identity model, `echo` (float32 x [-1, -1] -> y), that counts its calls. */
export function echoRegistry(): { registry: ModelRegistry; calls: { n: number } } {
  const calls = { n: 0 };
  const registry = new ModelRegistry();
  registry.add(
    fromFunction({
      name: 'echo',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, -1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, -1] }],
      infer: ({ x }) => {
        calls.n++;
        return { y: x! };
      },
    }),
  );
  return { registry, calls };
}
