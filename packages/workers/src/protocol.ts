import type { InferContext, InferOptions, ModelMetadata, Tensors } from '@mlserve/core';
import { type ErrorCode, isServeError, ServeError, STATUS_BY_CODE, toServeError } from '@mlserve/core';

/** What each worker loads: sent to every thread as `workerData`, so it must be structured-cloneable. */
export interface ModelDescription {
  /** `'onnx'` (`loadOnnxModel` of @mlserve/backend-onnx), `'tfjs'` (`loadTfjsModel` of @mlserve/backend-tfjs), or a loader module. */
  backend: 'onnx' | 'tfjs' | { module: string; export?: string };
  /** The model: a path or URL (or bytes) the loader understands. */
  source: string | Uint8Array;
  /** Options for the loader (structured-cloneable: no functions). */
  options?: Record<string, unknown>;
}

/** The third argument a loader module's function receives. */
export interface LoaderContext {
  /** The worker's `threadId`. */
  threadId: number;
  /** Intra-op threads this worker may use (the pool's `intraOpThreads`). */
  intraOpThreads: number;
}

/**
 * The shape of a loader module's export: `(source, options, context) => Promise<Model>`.
 *
 * @example
 * ```ts
 * // my-loader.mjs
 * export default async function load(source, options, { intraOpThreads }) {
 *   return myBackend.load(source, { ...options, threads: intraOpThreads });
 * }
 * ```
 */
export type ModelLoader = (
  source: string | Uint8Array,
  options: Record<string, unknown>,
  context: LoaderContext,
) => Promise<import('@mlserve/core').Model> | import('@mlserve/core').Model;

/** @internal `workerData` of every thread. */
export interface WorkerData {
  description: ModelDescription;
  intraOpThreads: number;
}

/** @internal A ServeError as it crosses the thread boundary. */
export interface WireError {
  code: ErrorCode;
  message: string;
  status: number;
  retryAfterMs?: number;
  details?: Record<string, unknown>;
}

/** @internal */
export interface LoadTask {
  kind: 'load';
  /** Int32Array over a SharedArrayBuffer: how many threads have loaded. */
  barrier: Int32Array;
  parties: number;
  timeoutMs: number;
  /** Run the model's warmup() before arriving at the barrier. */
  warmup?: boolean;
}

/** @internal The options that cross to the worker (no signal: the pool handles aborts). */
export type WireOptions = Pick<
  InferOptions,
  'deadline' | 'outputs' | 'parameters' | 'id' | 'priority' | 'sequence'
>;

/** @internal */
export interface InferTask {
  kind: 'infer';
  inputs: Tensors;
  options: WireOptions;
}

/** @internal */
export type Task = LoadTask | InferTask;

/** @internal */
export type LoadResult =
  | { ok: true; threadId: number; metadata: ModelMetadata }
  | { ok: false; threadId: number; error: WireError };

/** @internal */
export type InferResult =
  | { ok: true; outputs: Tensors; threadId: number; computeMs: number; context: InferContext }
  | { ok: false; threadId: number; error: WireError };

/** @internal Any thrown value, as a ServeError's plain fields. */
export function toWireError(err: unknown): WireError {
  const e = toServeError(err);
  const wire: WireError = { code: e.code, message: e.message, status: e.status };
  if (e.retryAfterMs !== undefined) wire.retryAfterMs = e.retryAfterMs;
  if (e.details !== undefined) {
    try {
      wire.details = structuredClone(e.details);
    } catch {
      // details that cannot be cloned stay behind
    }
  }
  return wire;
}

/** @internal The ServeError a worker threw, rebuilt on this side. */
export function fromWireError(wire: WireError): ServeError {
  if (isServeError(wire)) return wire;
  const code: ErrorCode = wire.code in STATUS_BY_CODE ? wire.code : 'INTERNAL';
  const options: { status: number; retryAfterMs?: number; details?: Record<string, unknown> } = {
    status: typeof wire.status === 'number' ? wire.status : STATUS_BY_CODE[code],
  };
  if (wire.retryAfterMs !== undefined) options.retryAfterMs = wire.retryAfterMs;
  if (wire.details !== undefined) options.details = wire.details;
  return new ServeError(code, String(wire.message), options);
}
