import { invalidArgument } from './errors.js';
import { preserveSignature, wrap } from './pipeline.js';
import { assertTensor, formatSignature, TYPED_ARRAY } from './tensor.js';
import type { GenericMiddleware, InferOptions, Model, ModelMetadata, Tensors } from './types.js';

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
 * The check is compiled once ({@link compileValidator}) and a request an outer layer already
 * validated for this model (see {@link isValidated}: the protocol adapters of `@mlserve/http` and
 * `@mlserve/grpc` do) is not checked again; only this layer's own `maxBatchSize` is.
 *
 * @example
 * ```ts
 * const served = pipeline(model, validation(), batching());
 * ```
 */
export function validation({
  rejectUnknownInputs = true,
  maxBatchSize,
}: ValidationOptions = {}): GenericMiddleware {
  return preserveSignature((inner: Model) => {
    let check: RequestValidator | undefined;
    return wrap(inner, {
      layer: 'validation',
      infer: function validationInfer(inputs, options) {
        check ??= compileValidator(inner.metadata(), { rejectUnknownInputs, maxBatchSize });
        check(inputs, options);
        return inner.infer(inputs, options);
      },
    });
  });
}

/**
 * The marks: a small ring of the latest (inputs record, model name, version, outputs array), newest
 * first. A mark is read right after it is made (the layer below, the batcher, the backend), so a
 * few slots serve every request; one that was pushed out, or cleared, only means the request is
 * checked again. A WeakMap entry per request cost about 0.4 us (and GC work on its table) of a
 * 6.6 us full pipeline. The ring holds its records strongly, so it is emptied every second while
 * marks are made (and once after the last): no request is kept alive through it for longer.
 */
const RING = 16;
const ringInputs: (object | undefined)[] = new Array(RING).fill(undefined);
const ringName: (string | undefined)[] = new Array(RING).fill(undefined);
const ringVersion: (string | undefined)[] = new Array(RING).fill(undefined);
const ringOutputs: (readonly string[] | undefined)[] = new Array(RING).fill(undefined);
let ringAt = 0;
let ringTimer: ReturnType<typeof setTimeout> | undefined;
const CLEAR_AFTER_MS = 1000;

function clearRing(): void {
  ringTimer = undefined;
  ringInputs.fill(undefined);
  ringOutputs.fill(undefined);
}

/** The model a mark is for: its name and version (a `Model` or its `ModelMetadata`). */
export interface ModelIdentity {
  readonly name: string;
  readonly version: string;
}

/**
 * Records that `inputs` (and `options.outputs`, the same array) passed validation against the
 * metadata of `model`, so inner layers of that model trust it instead of checking again
 * ({@link isValidated}). {@link compileValidator}'s validators mark what they pass; a layer marks
 * a record it builds itself only when that record is valid by construction (a batcher merging
 * validated requests along dim 0, say). The contract every layer already keeps makes this sound:
 * `infer` never mutates its inputs.
 *
 * @example
 * ```ts
 * const merged = concatRows(parts); // every part validated for this model
 * markValidated(merged, meta);
 * ```
 */
export function markValidated(inputs: Tensors, model: ModelIdentity, options?: InferOptions): void {
  const i = ringAt;
  ringAt = (i + 1) & (RING - 1);
  ringInputs[i] = inputs;
  ringName[i] = model.name;
  ringVersion[i] = model.version;
  ringOutputs[i] = options?.outputs;
  if (ringTimer === undefined) {
    ringTimer = setTimeout(clearRing, CLEAR_AFTER_MS);
    (ringTimer as { unref?: () => void }).unref?.();
  }
}

/**
 * Whether `inputs` were validated for this model (same name and version) with this very
 * `options.outputs` array (by identity: a layer that changes the outputs asked for gets them
 * checked again). A fast path for layers that would otherwise check the request again: a mark is
 * meant for the layers right below, and lasts until 16 newer marks or at most about a second,
 * after which the request is simply checked again.
 *
 * @example
 * ```ts
 * if (!isValidated(inputs, this.meta, options)) validateRequest(this.meta, inputs, options);
 * ```
 */
export function isValidated(inputs: Tensors, model: ModelIdentity, options?: InferOptions): boolean {
  const outputs = options?.outputs;
  for (let k = 0, i = ringAt; k < RING; k++) {
    i = (i - 1) & (RING - 1);
    if (
      ringInputs[i] === inputs &&
      ringName[i] === model.name &&
      ringVersion[i] === model.version &&
      ringOutputs[i] === outputs
    )
      return true;
  }
  return false;
}

/** A request check compiled for one model version: throws INVALID_ARGUMENT, marks what it passes. */
export type RequestValidator = (inputs: Tensors, options?: InferOptions) => void;

interface InputSpec {
  name: string;
  type: ModelMetadata['inputs'][number]['type'];
  dims: readonly number[];
  batched: boolean;
  ctor: (typeof TYPED_ARRAY)[keyof typeof TYPED_ARRAY] | undefined;
}

/**
 * Compiles the check {@link validateRequest} makes for one model version: names, types, fixed dims
 * and output names are laid out once, so a valid request costs a few comparisons and builds
 * nothing; an invalid one falls back to {@link validateRequest} for its exact message. Requests it
 * passes are marked ({@link markValidated}); requests already marked for this model are only
 * checked against `maxBatchSize`. Compile once per loaded model version (metadata does not change
 * within one).
 *
 * @example
 * ```ts
 * const check = compileValidator(model.metadata());
 * check(inputs, options); // throws INVALID_ARGUMENT, or marks `inputs` as validated
 * ```
 */
export function compileValidator(
  meta: ModelMetadata,
  { rejectUnknownInputs = true, maxBatchSize }: ValidationOptions = {},
): RequestValidator {
  const specs: InputSpec[] = meta.inputs.map((i) => ({
    name: i.name,
    type: i.type,
    dims: [...i.dims],
    batched: i.batched,
    ctor: i.type === 'string' ? undefined : TYPED_ARRAY[i.type],
  }));
  const outputNames = new Set(meta.outputs.map((o) => o.name));
  const identity: ModelIdentity = { name: meta.name, version: meta.version };
  const slow = (inputs: Tensors, options: InferOptions | undefined) => {
    validateRequest(meta, inputs, options, { rejectUnknownInputs, maxBatchSize });
    markValidated(inputs, identity, options);
  };
  // Rows of the batch (dim 0 of the batched inputs), -1 when none is batched; undefined: not quick.
  const quickRows = (inputs: Tensors): number | undefined => {
    if (typeof inputs !== 'object' || inputs === null) return undefined;
    let rows = -1;
    for (let i = 0; i < specs.length; i++) {
      const spec = specs[i]!;
      if (!Object.hasOwn(inputs, spec.name)) return undefined;
      const t = inputs[spec.name];
      if (typeof t !== 'object' || t === null || t.type !== spec.type || spec.ctor === undefined)
        return undefined;
      const dims = t.dims;
      if (!Array.isArray(dims) || dims.length !== spec.dims.length) return undefined;
      let n = 1;
      for (let d = 0; d < dims.length; d++) {
        const v = dims[d];
        if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return undefined;
        const want = spec.dims[d]!;
        if (want >= 0 && v !== want) return undefined;
        n *= v;
      }
      if (spec.batched) {
        if (rows < 0) rows = dims[0]!;
        else if (rows !== dims[0]) return undefined;
      }
      const data = t.data as unknown;
      if (!(data instanceof spec.ctor) || (data as { length: number }).length !== n) return undefined;
    }
    if (rejectUnknownInputs) {
      let keys = 0;
      for (const _ in inputs) keys++;
      if (keys !== specs.length) return undefined;
    }
    return rows;
  };
  const rowsOf = (inputs: Tensors): number => {
    for (const spec of specs) if (spec.batched) return inputs[spec.name]?.dims[0] ?? -1;
    return -1;
  };
  return function validate(inputs, options) {
    if (isValidated(inputs, identity, options)) {
      if (maxBatchSize !== undefined) {
        const rows = rowsOf(inputs);
        if (rows > maxBatchSize)
          throw invalidArgument(`batch size ${rows} is over the limit of ${maxBatchSize}`);
      }
      return;
    }
    const rows = quickRows(inputs);
    if (rows === undefined || (maxBatchSize !== undefined && rows > maxBatchSize))
      return slow(inputs, options);
    const outputs = options?.outputs;
    if (outputs !== undefined) {
      for (let i = 0; i < outputs.length; i++) {
        const name = outputs[i]!;
        if (!outputNames.has(name) || outputs.indexOf(name) !== i) return slow(inputs, options);
      }
    }
    markValidated(inputs, identity, options);
  };
}

/**
 * Validates a request against metadata; throws INVALID_ARGUMENT on the first problem. It checks
 * from scratch every time: on a request path, compile once with {@link compileValidator} instead.
 *
 * @example
 * ```ts
 * validateRequest(model.metadata(), inputs, { outputs: ['logits'] });
 * ```
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
