import { invalidArgument } from './errors.js';
import type { ModelMetadata, Signature, TensorInfo } from './types.js';

/**
 * Checks a declared {@link Signature} against a model's metadata, so a typed model cannot lie about
 * what it takes and gives: every input the model has must be declared and every declared input and
 * output must exist with the declared element type (a signature may leave outputs out). Throws
 * INVALID_ARGUMENT naming the first difference.
 *
 * @example
 * ```ts
 * import { checkSignature, fromFunction } from '@mlserve/core';
 *
 * const id = fromFunction({
 *   name: 'id',
 *   inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
 *   outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
 *   infer: ({ x }) => ({ y: x }),
 * });
 * checkSignature(id.metadata(), { inputs: { x: 'float32' }, outputs: { y: 'float32' } }); // passes
 * try {
 *   checkSignature(id.metadata(), { inputs: { x: 'int64' }, outputs: {} });
 * } catch (err) {
 *   console.log((err as Error).message); // model "id" input "x" is float32, the signature says int64
 * }
 * ```
 */
export function checkSignature(meta: ModelMetadata, signature: Signature): void {
  if (typeof signature !== 'object' || signature === null) {
    throw invalidArgument(`model "${meta.name}": signature must be { inputs, outputs }`);
  }
  check(meta, 'input', meta.inputs, signature.inputs);
  check(meta, 'output', meta.outputs, signature.outputs);
  for (const info of meta.inputs) {
    if (!Object.hasOwn(signature.inputs, info.name)) {
      throw invalidArgument(
        `model "${meta.name}" has input "${info.name}" (${info.type}), which the signature does not declare`,
      );
    }
  }
}

function check(meta: ModelMetadata, side: string, infos: TensorInfo[], declared: unknown): void {
  if (typeof declared !== 'object' || declared === null) {
    throw invalidArgument(`model "${meta.name}": signature.${side}s must be an object of names to types`);
  }
  const byName = new Map(infos.map((i) => [i.name, i]));
  for (const [name, type] of Object.entries(declared)) {
    const info = byName.get(name);
    if (!info) {
      throw invalidArgument(
        `model "${meta.name}" has no ${side} "${name}" (it has ${[...byName.keys()].join(', ') || 'none'})`,
      );
    }
    if (info.type !== type) {
      throw invalidArgument(
        `model "${meta.name}" ${side} "${name}" is ${info.type}, the signature says ${String(type)}`,
      );
    }
  }
}
