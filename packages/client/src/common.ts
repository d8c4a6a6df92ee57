/** What every entry (index.ts, browser.ts, grpc.ts) exports besides its own createClient: an explicit list, re-exported whole by each. */
export type { Client, RemoteInferOptions, RemoteModel } from './client.js';
export { fromInferOptions } from './client.js';
export { codeOfStatus, errorFromAnswer, parseRetryAfter } from './errors.js';
export type { RetryPolicy } from './retry.js';
export { backoffMs, retryDelay, retryPolicy } from './retry.js';
export type {
  CallOptions,
  ClientOptions,
  InferCallOptions,
  RemoteModelMetadata,
  RetryOptions,
  ServerMetadata,
  Signature,
  TensorSpec,
  TensorTypes,
  TypedTensors,
} from './types.js';
export type { ClassScore } from './v2.js';
export { parseClassification, parseModelMetadata, parseServerMetadata, readInferResponse } from './v2.js';
