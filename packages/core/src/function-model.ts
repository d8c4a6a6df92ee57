import { throwIfExpired } from './deadline.js';
import { deadlineExceeded, invalidArgument, toServeError, unavailable } from './errors.js';
import { pickOutputs } from './merge.js';
import type { DataType, InferOptions, Model, ModelMetadata, TensorInfo, Tensors } from './types.js';

/** A tensor in a declared signature; `batched` defaults to true when dim 0 is -1. */
export interface TensorSpec {
  name: string;
  type: DataType;
  dims: number[];
  batched?: boolean;
  padValue?: number | bigint;
  dimNames?: (string | null)[];
}

/** Options of {@link fromFunction}. */
export interface FunctionModelOptions {
  name: string;
  version?: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  /** The function that computes outputs from inputs. It receives the request's options. */
  infer: (inputs: Tensors, options: InferOptions) => Promise<Tensors> | Tensors;
  /** Rows per call; defaults to unlimited (2^31-1) when every input is batched, else 0. */
  maxBatchSize?: number;
  /** Calls it can run at once (default 1). */
  concurrency?: number;
  platform?: string;
  backend?: string;
  /** Runs once on dispose. */
  dispose?: () => Promise<void> | void;
}

/** Fills `batched` from the dims when it is not given. */
export function toTensorInfo(spec: TensorSpec): TensorInfo {
  const info: TensorInfo = {
    name: spec.name,
    type: spec.type,
    dims: [...spec.dims],
    batched: spec.batched ?? spec.dims[0] === -1,
  };
  if (spec.padValue !== undefined) info.padValue = spec.padValue;
  if (spec.dimNames) info.dimNames = [...spec.dimNames];
  return info;
}

/**
 * A Model from an async function and a declared signature: pre- and post-processing steps,
 * pure-JS models, test doubles. Requests that were aborted or are past their deadline do not run;
 * the outputs are checked against the declared names; thrown errors become ServeErrors.
 *
 * @example
 * ```ts
 * const double = fromFunction({
 *   name: 'double',
 *   inputs: [{ name: 'x', type: 'float32', dims: [-1, 4] }],
 *   outputs: [{ name: 'y', type: 'float32', dims: [-1, 4] }],
 *   infer: ({ x }) => ({ y: { type: 'float32', dims: x!.dims, data: (x!.data as Float32Array).map((v) => v * 2) } }),
 * });
 * ```
 */
export function fromFunction(options: FunctionModelOptions): Model {
  const { name, version = '1', infer, concurrency = 1 } = options;
  if (typeof name !== 'string' || name.length === 0)
    throw new TypeError('options.name must be a non-empty string');
  if (typeof infer !== 'function') throw new TypeError('options.infer must be a function');
  const inputs = options.inputs.map(toTensorInfo);
  const outputs = options.outputs.map(toTensorInfo);
  const allBatched = inputs.length > 0 && inputs.every((i) => i.batched);
  const meta: ModelMetadata = {
    name,
    version,
    platform: options.platform ?? 'mlserve_function',
    backend: options.backend ?? 'javascript',
    inputs,
    outputs,
    maxBatchSize: options.maxBatchSize ?? (allBatched ? 2 ** 31 - 1 : 0),
    concurrency,
  };
  let disposed: Promise<void> | undefined;
  return {
    name,
    version,
    metadata: () => structuredClone(meta),
    async infer(feeds: Tensors, opts: InferOptions = {}): Promise<Tensors> {
      if (disposed) throw unavailable(`model "${name}" is disposed`);
      throwIfExpired(opts);
      let result: Tensors;
      try {
        result = await infer(feeds, opts);
      } catch (err) {
        throw toServeError(err);
      }
      if (opts.deadline !== undefined && Date.now() > opts.deadline) {
        throw deadlineExceeded('the request deadline passed while it ran');
      }
      if (opts.outputs) {
        for (const o of opts.outputs) {
          if (!(o in result)) throw invalidArgument(`unknown output "${o}" for model "${name}"`);
        }
      }
      return pickOutputs(result, opts.outputs);
    },
    dispose() {
      disposed ??= Promise.resolve(options.dispose?.()).then(() => undefined);
      return disposed;
    },
    isReady: () => !disposed,
  };
}
