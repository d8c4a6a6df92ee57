export { checkPositiveInteger, isPositiveInteger } from './checks.js';
export { type ConcurrencyLimitOptions, type ConcurrencyStats, concurrencyLimit } from './concurrency.js';
export { cancelledFrom, expiredError, raceExpiry, remainingMs, throwIfExpired } from './deadline.js';
export { DEPRECATED_CODE, renamedOption, warnDeprecated } from './deprecated.js';
export { Emitter } from './emitter.js';
export {
  cancelled,
  deadlineExceeded,
  type ErrorCode,
  failedPrecondition,
  internal,
  invalidArgument,
  isServeError,
  methodNotAllowed,
  notFound,
  payloadTooLarge,
  permissionDenied,
  resourceExhausted,
  ServeError,
  type ServeErrorOptions,
  STATUS_BY_CODE,
  toServeError,
  unauthenticated,
  unavailable,
  unimplemented,
  unsupportedMediaType,
} from './errors.js';
export {
  type FunctionModelOptions,
  fromFunction,
  type SpecTypes,
  type TensorSpec,
} from './function-model.js';
export { type GraphOptions, type GraphStep, graph } from './graph.js';
export { InFlight } from './in-flight.js';
export {
  type MergedOptions,
  mergeOptions,
  NEVER_ABORTED,
  parametersKey,
  pickOutputs,
  SharedCalls,
  SharedSignal,
} from './merge.js';
export { getOrCreateMetric, type MetricLookup } from './metric.js';
export { asBool, asFloat32, asFloat64, asInt32, asInt64, asString, asTensorOf, asUint8 } from './narrow.js';
export { type ImportOptionalOptions, importOptional, isModuleNotFound, notInstalled } from './optional.js';
export { compose, type LayerOverrides, layers, pipeline, preserveSignature, wrap } from './pipeline.js';
export { type ConnectingClient, whenConnected } from './redis.js';
export {
  compareVersions,
  ModelRegistry,
  type RegistryEvents,
  type RolloutStatus,
  type VersionResolver,
  type VersionState,
  type VersionStatus,
} from './registry.js';
export {
  type SequenceOptions,
  type SequenceStateTensor,
  type SequenceStats,
  SequenceStore,
  type SequenceStoreOptions,
  type SequencesOptions,
  type StatefulModelOptions,
  sequences,
  statefulModel,
} from './sequences.js';
export { checkSignature } from './signature.js';
export {
  assertTensor,
  BIGINT_RANGE,
  byteSize,
  bytesPerElement,
  cloneTensor,
  concat,
  DATA_TYPES,
  elementCount,
  float16BitsToNumber,
  float32ToFloat16Bits,
  formatSignature,
  INT_RANGE,
  isDataType,
  sliceRows,
  split,
  type TensorInput,
  TYPED_ARRAY,
  tensor,
  tensorsEqual,
} from './tensor.js';
export { type TimeoutOptions, timeout } from './timeout.js';
export type {
  DataType,
  GenericMiddleware,
  InferContext,
  InferOptions,
  InferOptionsFor,
  Middleware,
  Model,
  ModelMetadata,
  NumericTensorData,
  Outputs,
  ParameterValue,
  SequenceInfo,
  Signature,
  Tensor,
  TensorData,
  TensorDataMap,
  TensorInfo,
  Tensors,
  TensorTypes,
  TypedTensors,
} from './types.js';
export {
  compileValidator,
  isValidated,
  type ModelIdentity,
  markValidated,
  type RequestValidator,
  type ValidationOptions,
  validateRequest,
  validation,
} from './validation.js';
export { enqueueWaiter, type QueuedWaiter } from './waiter.js';
