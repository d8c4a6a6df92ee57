/**
 * The contract every mlserve package builds on: tensors, models, middleware.
 */

/** Element types, named as onnxruntime-common names them. */
export type DataType =
  | 'float32'
  | 'float64'
  | 'float16'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool'
  | 'string';

/** The array that holds each type's elements (onnxruntime-common's choices). */
export interface TensorDataMap {
  float32: Float32Array;
  float64: Float64Array;
  /** IEEE half floats as raw bits. */
  float16: Uint16Array;
  int8: Int8Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  uint8: Uint8Array;
  uint16: Uint16Array;
  uint32: Uint32Array;
  uint64: BigUint64Array;
  /** 0 or 1 per element. */
  bool: Uint8Array;
  /** Text, or raw bytes per element (an encoded image, say). */
  string: string[] | Uint8Array[];
}

/** Any tensor's data. */
export type TensorData = TensorDataMap[DataType];

/** The numeric typed arrays (every type but string). */
export type NumericTensorData = Exclude<TensorData, string[] | Uint8Array[]>;

/**
 * A tensor: the same shape as onnxruntime-common's `Tensor`, so an ORT tensor already is one.
 * `data` is row-major; `data.length` equals the product of `dims`.
 */
export interface Tensor<T extends DataType = DataType> {
  readonly type: T;
  readonly dims: readonly number[];
  readonly data: TensorDataMap[T];
}

/** Named tensors: a request's inputs or a response's outputs. */
export type Tensors = Record<string, Tensor>;

/**
 * Tensor names to their element types: a model's inputs or outputs as TypeScript sees them
 * (`{ image: 'float32' }`). The default, `Record<string, DataType>`, is the untyped case.
 */
export type TensorTypes = Record<string, DataType>;

/**
 * Named tensors whose types follow a {@link TensorTypes} record: `TypedTensors<{ logits: 'float32' }>`
 * is `{ logits: Tensor<'float32'> }`. `TypedTensors<TensorTypes>` is {@link Tensors}.
 */
export type TypedTensors<T extends TensorTypes> = { [K in keyof T]: Tensor<T[K]> };

/**
 * What a model takes and gives, by name and element type: the declared signature that types a
 * model (`loadOnnxModel(path, { signature })`, `graph({ signature })`, `client.model(name, { signature })`).
 * Where a signature is given at run time it is checked against the model's metadata once, at load.
 *
 * @example
 * ```ts
 * import type { Signature } from '@mlserve/core';
 *
 * const mnist: Signature<{ image: 'float32' }, { logits: 'float32' }> = {
 *   inputs: { image: 'float32' },
 *   outputs: { logits: 'float32' },
 * };
 * console.log(Object.keys(mnist.outputs)); // [ 'logits' ]
 * ```
 */
export interface Signature<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes> {
  inputs: I;
  outputs: O;
}

/** What a model says about one input or output. */
export interface TensorInfo {
  name: string;
  type: DataType;
  /** -1 marks a dynamic dim. */
  dims: number[];
  /** Symbolic names of dims where the model has them (`batch`, `sequence`), else null. */
  dimNames?: (string | null)[];
  /** Whether dim 0 is the batch dim, so requests may be merged along it. */
  batched: boolean;
  /** Where padding a dynamic dim is allowed, the value to pad with (0 for an attention mask). */
  padValue?: number | bigint;
}

/** What a model says about itself: the source of validation, batching and the protocols' metadata. */
export interface ModelMetadata {
  name: string;
  version: string;
  /** The model format, in KServe's words: `onnxruntime_onnx`, `tensorflow_graphdef`, `mlserve_function`. */
  platform: string;
  /** What runs it: `onnxruntime-node/cpu`, `tfjs/wasm`, `worker-pool(onnx)`. */
  backend?: string;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  /** The most rows one call may carry along dim 0; 0 when the model is not batched. */
  maxBatchSize: number;
  /** How many calls the model can usefully run at once (1 for a session, a pool's thread count). */
  concurrency: number;
  /** Anything else a backend wants to report (active execution provider, labels file, ...). */
  extra?: Record<string, unknown>;
}

/** A request parameter's value (KServe V2 parameters are strings, numbers or booleans). */
export type ParameterValue = string | number | boolean;

/**
 * A per-request record that each layer annotates, so metrics, logs, traces and the drift monitor
 * read one source. Layers only add keys; none removes another's.
 */
export interface InferContext {
  /** When the request entered the outermost layer (performance.now()). */
  startedAt?: number;
  /** Time spent waiting in queues (batcher, concurrency limit), ms. */
  queueMs?: number;
  /** Time the backend computed, ms (for a batched request: its batch's compute time). */
  computeMs?: number;
  /** Rows in the batch that carried this request. */
  batchSize?: number;
  /** Answered from the response cache. */
  cacheHit?: boolean;
  /** Shared another identical request's inference. */
  coalesced?: boolean;
  /** Which worker ran it. */
  worker?: number;
  /** Which backend/provider ran it. */
  backend?: string;
  [key: string]: unknown;
}

/** Reserved for stateful (sequence) models: which sequence a request belongs to. */
export interface SequenceInfo {
  id: string | number | bigint;
  start?: boolean;
  end?: boolean;
}

/** Options of one inference. Every field is optional. */
export interface InferOptions {
  /** Aborting rejects the request at once with CANCELLED. */
  signal?: AbortSignal;
  /** Absolute deadline, epoch milliseconds (Date.now() scale). */
  deadline?: number;
  /** The outputs wanted; all when absent. */
  outputs?: readonly string[];
  /** Higher is served first where a layer queues. Default 0. */
  priority?: number;
  /** The request id (echoed by the protocols, used for sticky routing and logs). */
  id?: string;
  /** Request parameters; requests with unequal parameters never merge. */
  parameters?: Record<string, ParameterValue>;
  /** The per-request annotation record; layers create it when absent. */
  context?: InferContext;
  /** Reserved for stateful models. */
  sequence?: SequenceInfo;
}

/** {@link InferOptions} whose `outputs` are the names `K` (so the result can be typed by them). */
export type InferOptionsFor<K extends string> = Omit<InferOptions, 'outputs'> & {
  /** The outputs wanted; all when absent. Only these come back (and the result's type says so). */
  outputs?: readonly K[];
};

/**
 * What a model of outputs `O` returns when `K` are asked for: `Pick<TypedTensors<O>, K>` for a typed
 * model, {@link Tensors} for an untyped one.
 */
export type Outputs<O extends TensorTypes, K extends string = string> = string extends keyof O
  ? Tensors
  : Pick<TypedTensors<O>, K & keyof O>;

/**
 * A servable model. Backends return one; middleware wraps one and is one.
 *
 * `I` and `O` name the inputs and outputs with their element types where they are known
 * (`Model<{ image: 'float32' }, { logits: 'float32' }>`): then `infer` takes exactly those inputs,
 * returns `{ logits: Tensor<'float32'> }`, and `out.logitz` fails to compile. The defaults,
 * `Model` alone, are the untyped model: any names, any types (`Record<string, Tensor>`).
 * A typed model is also a `Model`, so everything that takes a `Model` takes it.
 *
 * Buffer ownership: `infer` never keeps or mutates its inputs after it settles, and the tensors it
 * returns belong to the caller (they never keep a larger shared buffer alive).
 *
 * @example
 * ```ts
 * import { fromFunction, tensor } from '@mlserve/core';
 *
 * const double = fromFunction({
 *   name: 'double',
 *   inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
 *   outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
 *   infer: ({ x }) => ({ y: { type: 'float32', dims: x.dims, data: x.data.map((v) => v * 2) } }),
 * }); // Model<{ x: 'float32' }, { y: 'float32' }>
 * const out = await double.infer({ x: tensor('float32', [1, 2], [2]) });
 * console.log(out.y.data); // Float32Array(2) [ 2, 4 ]
 * ```
 */
export interface Model<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes> {
  readonly name: string;
  readonly version: string;
  /** Synchronous: what the model takes and gives. */
  metadata(): ModelMetadata;
  /**
   * Runs one request. Rejects with a {@link ServeError}. With `options.outputs`, only the named
   * outputs come back; on a typed model, naming them in the call (`{ outputs: ['probs'] }`) types
   * the result with only those.
   */
  infer<K extends string = string>(
    inputs: TypedTensors<I>,
    options?: InferOptionsFor<K>,
  ): Promise<Outputs<O, K>>;
  /** Releases resources. Idempotent; later infers reject with UNAVAILABLE. */
  dispose(): Promise<void>;
  /** Whether the model can take requests now (true when absent). */
  isReady?(): boolean;
  /** Runs sample requests so the first real one is fast. */
  warmup?(): Promise<void>;
  /** Counters by layer name: `{ batching: {...}, cache: {...} }`. */
  stats?(): Record<string, unknown>;
  /** The model this one wraps, for layers that need to look inside. */
  readonly inner?: Model;
}

/**
 * A layer: takes a model, returns a model. `Middleware` alone is the untyped layer,
 * `(inner: Model) => Model`, as it always was; `Middleware<I, O>` is one layer for a model of that
 * signature.
 */
export type Middleware<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes> = (
  inner: Model<I, O>,
) => Model<I, O>;

/**
 * A layer that keeps whatever signature its model has: what every mlserve middleware factory
 * returns (`batching()`, `responseCache()`, `metrics()`, `timeout()`, ...), so a typed model stays
 * typed through `pipeline()`. It is also a {@link Middleware}, so it goes wherever one goes.
 *
 * @example
 * ```ts
 * import { type GenericMiddleware, wrap } from '@mlserve/core';
 *
 * const logging: GenericMiddleware = (inner) =>
 *   wrap(inner, {
 *     layer: 'logging',
 *     infer: (inputs, options) => {
 *       console.log('infer', inner.name, options?.id);
 *       return inner.infer(inputs, options);
 *     },
 *   });
 * console.log(typeof logging); // function
 * ```
 */
export type GenericMiddleware = <I extends TensorTypes, O extends TensorTypes>(
  inner: Model<I, O>,
) => Model<I, O>;
