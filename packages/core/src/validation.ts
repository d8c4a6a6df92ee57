import { invalidArgument } from './errors.js';
import { wrap } from './pipeline.js';
import { assertTensor, formatSignature } from './tensor.js';
import type { InferOptions, Middleware, ModelMetadata, Tensors } from './types.js';

/** Options of {@link validation}. */
export interface ValidationOptions {
  /** Reject inputs the model does not declare (default true). */
  rejectUnknownInputs?: boolean;
  /** Largest batch (dim 0) a request may carry; default: no limit beyond the model's. */
  maxBatchSize?: number;
}

/**
 * Checks every request against the model's metadata before it goes further: input names (none
 * missing, none unknown), types, ranks, fixed dims, structurally valid tensors, and requested
 * output names. Failures are INVALID_ARGUMENT with a message a person can act on:
 * `input "image": expected float32[-1,1,28,28], got float64[1,28,28]`.
 *
 * @example
 * ```ts
 * const served = pipeline(model, validation(), batching());
 * ```
 */
export function validation({ rejectUnknownInputs = true, maxBatchSize }: ValidationOptions = {}): Middleware {
  return (inner) => {
    const check = (inputs: Tensors, options: InferOptions | undefined, meta: ModelMetadata) =>
      validateRequest(meta, inputs, options, { rejectUnknownInputs, maxBatchSize });
    let cached: ModelMetadata | undefined;
    return wrap(inner, {
      layer: 'validation',
      infer: function validationInfer(inputs, options) {
        cached ??= inner.metadata();
        check(inputs, options, cached);
        return inner.infer(inputs, options);
      },
    });
  };
}

/**
 * Validates a request against metadata; throws INVALID_ARGUMENT on the first problem.
 * Exported for adapters and batchers that validate before queueing.
 */
export function validateRequest(
  meta: ModelMetadata,
  inputs: Tensors,
  options: InferOptions | undefined,
  { rejectUnknownInputs = true, maxBatchSize }: ValidationOptions = {},
): void {
  if (typeof inputs !== 'object' || inputs === null)
    throw invalidArgument('inputs must be an object of tensors');
  const declared = new Set<string>();
  let batch: number | undefined;
  for (const info of meta.inputs) {
    declared.add(info.name);
    if (!Object.hasOwn(inputs, info.name)) {
      throw invalidArgument(
        `missing input "${info.name}": expected ${formatSignature(info.type, info.dims)}`,
      );
    }
    const t = inputs[info.name];
    assertTensor(t, `input "${info.name}"`);
    // Messages are built only on failure: this runs on every request.
    const mismatch = (suffix = '') =>
      invalidArgument(
        `input "${info.name}": expected ${formatSignature(info.type, info.dims)}, got ${formatSignature(t.type, t.dims)}${suffix}`,
      );
    if (t.type !== info.type || t.dims.length !== info.dims.length) throw mismatch();
    for (let d = 0; d < info.dims.length; d++) {
      const want = info.dims[d]!;
      if (want >= 0 && t.dims[d] !== want) throw mismatch(` (dim ${d} must be ${want})`);
    }
    if (info.batched) {
      const rows = t.dims[0]!;
      if (batch === undefined) batch = rows;
      else if (rows !== batch) {
        throw invalidArgument(
          `input "${info.name}": batch size ${rows} differs from the other inputs' ${batch}`,
        );
      }
    }
  }
  if (rejectUnknownInputs) {
    for (const name of Object.keys(inputs)) {
      if (!declared.has(name)) {
        const known = meta.inputs.map((i) => `"${i.name}"`).join(', ');
        throw invalidArgument(`unknown input "${name}" for model "${meta.name}" (inputs: ${known})`);
      }
    }
  }
  const limit = maxBatchSize ?? undefined;
  if (limit !== undefined && batch !== undefined && batch > limit) {
    throw invalidArgument(`batch size ${batch} is over the limit of ${limit}`);
  }
  if (options?.outputs) {
    const outs = new Set(meta.outputs.map((o) => o.name));
    const seen = new Set<string>();
    for (const name of options.outputs) {
      if (!outs.has(name)) {
        const known = meta.outputs.map((o) => `"${o.name}"`).join(', ');
        throw invalidArgument(`unknown output "${name}" for model "${meta.name}" (outputs: ${known})`);
      }
      if (seen.has(name)) throw invalidArgument(`output "${name}" is requested twice`);
      seen.add(name);
    }
  }
}
