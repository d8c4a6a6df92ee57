import type { DataType, ParameterValue, SequenceInfo } from '@mlserve/core';

// The typed-model vocabulary is core's (one definition): re-exported for client users.
export type { Signature, TensorTypes, TypedTensors } from '@mlserve/core';

/** How failed calls are retried. Only answers that mean "not run, try later" are retried. */
export interface RetryOptions {
  /** Retries after the first attempt (default 3; 0 turns retries off). */
  retries?: number;
  /** The first backoff step, ms (default 50); each next step doubles, with full jitter. */
  minDelayMs?: number;
  /** The largest backoff step, ms (default 2000). */
  maxDelayMs?: number;
  /**
   * The longest `Retry-After` the client waits for, ms (default 30 000): a server asking for more
   * (or for more than the call's deadline leaves) gets its error passed to the caller at once.
   */
  maxRetryAfterMs?: number;
}

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** `http://host:port` (a path prefix is kept) for HTTP; `host:port` (or `grpc://host:port`) for gRPC. */
  url: string;
  /** Which V2 transport (default `'http'`). gRPC needs Node and `@grpc/grpc-js`. */
  transport?: 'http' | 'grpc';
  /** Headers (HTTP) or metadata (gRPC) sent with every call: `authorization`, tracing headers. */
  headers?: Record<string, string>;
  /** The deadline of every call that sets none, ms (default: none). */
  timeoutMs?: number;
  /** Retry policy, or `false` for none. */
  retry?: RetryOptions | false;
  /**
   * Tensors in the binary extension (raw little-endian bytes after a JSON header) instead of JSON
   * arrays: `'auto'` (default) uses it when the server lists `binary_tensor_data` in `GET /v2`
   * (asked once per client), `true` always, `false` never. gRPC always sends raw contents.
   */
  binary?: boolean | 'auto';
  /**
   * HTTP compression: `'gzip'` compresses request bodies of at least `compressThreshold` bytes and
   * asks for compressed responses (default `'none'`: on a LAN compression costs more CPU than it saves).
   */
  compression?: 'gzip' | 'none';
  /** Smallest request body compressed when `compression` is `'gzip'`, bytes (default 1024). */
  compressThreshold?: number;
  /** Node HTTP: at most this many connections to the server (default 32), reused across calls. */
  connections?: number;
}

/** Options of one inference call. */
export interface InferCallOptions<K extends string = string> {
  /** The model version (default: the server's choice, usually the latest). */
  version?: string;
  /** The outputs wanted (default all). */
  outputs?: readonly K[];
  /** Overrides the client's `binary` for this call. */
  binary?: boolean;
  /** This call's deadline, ms: sent as the V2 `timeout` parameter (µs) and `x-request-timeout-ms`. */
  timeoutMs?: number;
  /** The request id (echoed by the server). */
  id?: string;
  /** Scheduling priority (`priority` parameter). */
  priority?: number;
  /** Request parameters passed to the model. */
  parameters?: Record<string, ParameterValue>;
  /** Aborts the call (rejects with CANCELLED). */
  signal?: AbortSignal;
  /** Extra HTTP headers (gRPC metadata) for this call. */
  headers?: Record<string, string>;
  /**
   * The classification extension: top-k classes instead of raw scores, for every output named in
   * `outputs` (a number) or per output (`{ logits: 3 }`). Each such output comes back as a BYTES
   * tensor of `score:index[:label]` strings; {@link parseClassification} reads them.
   */
  classification?: number | Partial<Record<K, number>>;
  /** Stateful models: the sequence this request belongs to (never retried). */
  sequence?: SequenceInfo;
  /** `false` turns retries off for this call. */
  retry?: boolean;
}

/** Options of the health and metadata calls. */
export interface CallOptions {
  /** The model version (model calls only). */
  version?: string;
  timeoutMs?: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** `GET /v2` (ServerMetadata). */
export interface ServerMetadata {
  name: string;
  version: string;
  extensions: string[];
}

/** One input or output in a model's metadata. */
export interface TensorSpec {
  name: string;
  /** The V2 datatype as the server sent it (`FP32`, `BYTES`, ...). */
  datatype: string;
  /** The core type, when the datatype has one (BF16 has none). */
  type: DataType | undefined;
  /** -1 marks a dynamic dim. */
  shape: number[];
}

/** `GET /v2/models/{name}` (ModelMetadata). */
export interface RemoteModelMetadata {
  name: string;
  versions: string[];
  platform: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}
