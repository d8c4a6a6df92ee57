import { throwIfExpired } from './deadline.js';
import { deadlineExceeded, invalidArgument, toServeError, unavailable } from './errors.js';
import { pickOutputs } from './merge.js';
import type {
  DataType,
  InferOptions,
  Model,
  ModelMetadata,
  TensorInfo,
  Tensors,
  TensorTypes,
  TypedTensors,
} from './types.js';

/** A tensor in a declared signature; `batched` defaults to true when dim 0 is -1. */
export interface TensorSpec<N extends string = string, T extends DataType = DataType> {
  name: N;
  type: T;
  dims: number[];
  batched?: boolean;
  padValue?: number | bigint;
  dimNames?: (string | null)[];
}

/**
 * The {@link TensorTypes} a list of specs declares: `[{ name: 'x', type: 'float32', ... }]` gives
 * `{ x: 'float32' }`; specs whose names are plain `string`s give the untyped `TensorTypes`.
 */
export type SpecTypes<S extends readonly TensorSpec[]> = string extends S[number]['name']
  ? TensorTypes
  : { [Spec in S[number] as Spec['name']]: Spec['type'] };

/**
 * Options of {@link fromFunction}. `IS` and `OS` are the declared input and output specs; the
 * model's signature (and `infer`'s argument and result types) follow from their names and types.
 */
export interface FunctionModelOptions<
  IS extends readonly TensorSpec[] = TensorSpec[],
  OS extends readonly TensorSpec[] = TensorSpec[],
> {
  name: string;
  version?: string;
  inputs: IS;
  outputs: OS;
  /**
   * The function that computes outputs from inputs. It receives the request's options. Its inputs
   * are typed by the declared specs (and stay indexable by any name); it returns the declared
   * outputs, or any `Tensors` record (what an untyped model it calls returns).
   */
  infer: NoInfer<
    (
      inputs: TypedTensors<SpecTypes<IS>> & Tensors,
      options: InferOptions,
    ) => Promise<TypedTensors<SpecTypes<OS>> | Tensors> | TypedTensors<SpecTypes<OS>> | Tensors
  >;
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
 * The model is typed by the specs written in the call: `inputs: [{ name: 'x', type: 'float32', ... }]`
 * makes `infer` take `{ x: Tensor<'float32'> }` (in the function too); specs held in a
 * `TensorSpec[]` variable give an untyped model.
 *
 * @example
 * ```ts
 * const double = fromFunction({
 *   name: 'double',
 *   inputs: [{ name: 'x', type: 'float32', dims: [-1, 4] }],
 *   outputs: [{ name: 'y', type: 'float32', dims: [-1, 4] }],
 *   infer: ({ x }) => ({ y: { type: 'float32', dims: x.dims, data: x.data.map((v) => v * 2) } }),
 * }); // Model<{ x: 'float32' }, { y: 'float32' }>
 * ```
 */
export function fromFunction<
  const IS extends readonly TensorSpec[] = TensorSpec[],
  const OS extends readonly TensorSpec[] = TensorSpec[],
>(options: FunctionModelOptions<IS, OS>): Model<SpecTypes<IS>, SpecTypes<OS>> {
  const { name, version = '1', concurrency = 1 } = options;
  // The runtime is signature-blind: the declared specs type the function, not the checks.
  const infer = options.infer as unknown as (
    inputs: Tensors,
    options: InferOptions,
  ) => Promise<Tensors> | Tensors;
  if (typeof name !== 'string' || name.length === 0)
    throw new TypeError('fromFunction: options.name must be a non-empty string');
  if (typeof infer !== 'function') throw new TypeError('fromFunction: options.infer must be a function');
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
  const model: Model = {
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
  return model as unknown as Model<SpecTypes<IS>, SpecTypes<OS>>;
}
