/**
 * Errors every mlserve layer throws: one base class with a stable string `code` and the HTTP
 * status that goes with it, so adapters map failures without parsing messages.
 */

/** Stable, machine-readable error codes (the gRPC / KServe vocabulary). */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'NOT_FOUND'
  | 'FAILED_PRECONDITION'
  | 'METHOD_NOT_ALLOWED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'PAYLOAD_TOO_LARGE'
  | 'RESOURCE_EXHAUSTED'
  | 'CANCELLED'
  | 'UNAVAILABLE'
  | 'DEADLINE_EXCEEDED'
  | 'UNIMPLEMENTED'
  | 'INTERNAL';

/** The HTTP status each code maps to by default. */
export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = Object.freeze({
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  FAILED_PRECONDITION: 400,
  METHOD_NOT_ALLOWED: 405,
  UNSUPPORTED_MEDIA_TYPE: 415,
  PAYLOAD_TOO_LARGE: 413,
  RESOURCE_EXHAUSTED: 429,
  CANCELLED: 499,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
  UNIMPLEMENTED: 501,
  INTERNAL: 500,
});

/** Options every {@link ServeError} accepts. */
export interface ServeErrorOptions {
  /** Overrides the default HTTP status (for instance 503 instead of 429 for RESOURCE_EXHAUSTED). */
  status?: number;
  /** The underlying error, kept for logs. */
  cause?: unknown;
  /** A hint for clients: how long to wait before retrying, in milliseconds. */
  retryAfterMs?: number;
  /** Extra machine-readable details (never secrets). */
  details?: Record<string, unknown>;
}

/**
 * The one error type mlserve throws. `code` is stable; `status` is the HTTP status.
 *
 * @example
 * ```ts
 * import { ServeError } from '@mlserve/core';
 * throw new ServeError('INVALID_ARGUMENT', 'input "image": expected float32[-1,1,28,28], got float64[1,28,28]');
 * ```
 */
export class ServeError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryAfterMs: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: ServeErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ServeError';
    this.code = code;
    this.status = options.status ?? STATUS_BY_CODE[code];
    this.retryAfterMs = options.retryAfterMs;
    this.details = options.details;
  }

  /** The JSON body HTTP adapters send: `{ error, code }` plus a retry hint when there is one. */
  toJSON(): { error: string; code: ErrorCode; retryAfterMs?: number } {
    const body: { error: string; code: ErrorCode; retryAfterMs?: number } = {
      error: this.message,
      code: this.code,
    };
    if (this.retryAfterMs !== undefined) body.retryAfterMs = this.retryAfterMs;
    return body;
  }
}

/** @internal */
function factory(code: ErrorCode) {
  return (message: string, options?: ServeErrorOptions) => new ServeError(code, message, options);
}

/** Shorthands: `invalidArgument('...')` is `new ServeError('INVALID_ARGUMENT', '...')`. */
export const invalidArgument = factory('INVALID_ARGUMENT');
/** No credential, or a wrong one (401; gRPC UNAUTHENTICATED). */
export const unauthenticated = factory('UNAUTHENTICATED');
/** A valid credential that may not do this (403; gRPC PERMISSION_DENIED). */
export const permissionDenied = factory('PERMISSION_DENIED');
export const notFound = factory('NOT_FOUND');
/** The request is valid but the state it needs is not there (a sequence that is not open; 400; gRPC FAILED_PRECONDITION). */
export const failedPrecondition = factory('FAILED_PRECONDITION');
/** An HTTP method the route does not take (405). */
export const methodNotAllowed = factory('METHOD_NOT_ALLOWED');
/** A Content-Type or Content-Encoding the server does not take (415). */
export const unsupportedMediaType = factory('UNSUPPORTED_MEDIA_TYPE');
export const payloadTooLarge = factory('PAYLOAD_TOO_LARGE');
export const resourceExhausted = factory('RESOURCE_EXHAUSTED');
export const cancelled = factory('CANCELLED');
export const unavailable = factory('UNAVAILABLE');
export const deadlineExceeded = factory('DEADLINE_EXCEEDED');
export const unimplemented = factory('UNIMPLEMENTED');
export const internal = factory('INTERNAL');

/** True when `value` is a {@link ServeError} (also across duplicated copies of this package). */
export function isServeError(value: unknown): value is ServeError {
  if (value instanceof ServeError) return true;
  if (typeof value !== 'object' || value === null) return false;
  const v = value as { name?: unknown; code?: unknown; status?: unknown };
  return (
    v.name === 'ServeError' &&
    typeof v.code === 'string' &&
    v.code in STATUS_BY_CODE &&
    typeof v.status === 'number'
  );
}

/**
 * Turns any thrown value into a {@link ServeError}: ServeErrors pass through; an abort becomes
 * CANCELLED, a timeout DEADLINE_EXCEEDED; anything else INTERNAL with the original as `cause`.
 *
 * @example
 * ```ts
 * try { await model.infer(inputs); } catch (err) { const e = toServeError(err); reply.code(e.status).send(e.toJSON()); }
 * ```
 */
export function toServeError(value: unknown, fallback: ErrorCode = 'INTERNAL'): ServeError {
  if (isServeError(value)) return value;
  if (value instanceof Error) {
    if (value.name === 'AbortError')
      return new ServeError('CANCELLED', 'the request was cancelled', { cause: value });
    if (value.name === 'TimeoutError')
      return new ServeError('DEADLINE_EXCEEDED', 'the request deadline passed', { cause: value });
    return new ServeError(fallback, value.message || String(value), { cause: value });
  }
  return new ServeError(fallback, typeof value === 'string' ? value : 'unknown error', { cause: value });
}
