import { type ErrorCode, ServeError, STATUS_BY_CODE } from '@mlserve/core';

// The first code of each status wins (400 is INVALID_ARGUMENT, not FAILED_PRECONDITION).
const CODE_BY_STATUS = new Map<number, ErrorCode>();
for (const [code, status] of Object.entries(STATUS_BY_CODE))
  if (!CODE_BY_STATUS.has(status)) CODE_BY_STATUS.set(status, code as ErrorCode);

/** True for one of core's error codes. */
export function isErrorCode(v: unknown): v is ErrorCode {
  return typeof v === 'string' && Object.hasOwn(STATUS_BY_CODE, v);
}

/**
 * The code an HTTP status stands for when the body names none (any other 4xx: INVALID_ARGUMENT).
 *
 * @example
 * ```ts
 * codeOfStatus(429); // 'RESOURCE_EXHAUSTED'
 * ```
 */
export function codeOfStatus(status: number): ErrorCode {
  const code = CODE_BY_STATUS.get(status);
  if (code) return code;
  if (status === 408) return 'DEADLINE_EXCEEDED';
  if (status === 502) return 'UNAVAILABLE';
  return status >= 400 && status < 500 ? 'INVALID_ARGUMENT' : 'INTERNAL';
}

/**
 * `Retry-After` as milliseconds: delay-seconds or an HTTP date (RFC 9110 §10.2.3); undefined when
 * absent or unreadable.
 *
 * @example
 * ```ts
 * parseRetryAfter('2'); // 2000
 * parseRetryAfter(new Date(Date.now() + 5000).toUTCString()); // about 5000
 * ```
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value == null) return undefined;
  const v = value.trim();
  if (/^\d{1,9}$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

const decoder = new TextDecoder();

/**
 * A non-2xx HTTP answer as a ServeError: the server's code and message when its body is V2's
 * `{"error": "..."}` (mlserve adds `code` and `retryAfterMs`), else the status's code and the
 * body's start. The status, the request id and the retry hint ride along.
 *
 * @example
 * ```ts
 * const e = errorFromAnswer(404, new TextEncoder().encode('{"error":"unknown model"}'), () => null);
 * e.code; // 'NOT_FOUND'
 * ```
 */
export function errorFromAnswer(
  status: number,
  body: Uint8Array,
  header: (name: string) => string | null,
): ServeError {
  let message: string | undefined;
  let code: ErrorCode | undefined;
  let retryAfterMs: number | undefined;
  const text = decoder.decode(body.subarray(0, 64 * 1024));
  try {
    const json = JSON.parse(text) as { error?: unknown; code?: unknown; retryAfterMs?: unknown };
    if (typeof json.error === 'string') message = json.error;
    if (isErrorCode(json.code)) code = json.code;
    if (typeof json.retryAfterMs === 'number' && json.retryAfterMs >= 0) retryAfterMs = json.retryAfterMs;
  } catch {
    // Not JSON (a proxy's HTML page, say): the text is the message.
  }
  message ??= text.trim().slice(0, 500) || `HTTP ${status}`;
  retryAfterMs ??= parseRetryAfter(header('retry-after'));
  const requestId = header('x-request-id');
  return new ServeError(code ?? codeOfStatus(status), message, {
    status,
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    ...(requestId ? { details: { requestId } } : {}),
  });
}
