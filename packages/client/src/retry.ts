import { ServeError } from '@mlserve/core';
import type { RetryOptions } from './types.js';

/** A retry policy with every default filled in. */
export interface RetryPolicy {
  retries: number;
  minDelayMs: number;
  maxDelayMs: number;
  maxRetryAfterMs: number;
}

/**
 * The policy of `retry: undefined | false | {...}`.
 *
 * @example
 * ```ts
 * retryPolicy({ retries: 5 }); // { retries: 5, minDelayMs: 50, maxDelayMs: 2000, maxRetryAfterMs: 30000 }
 * ```
 */
export function retryPolicy(options: RetryOptions | false | undefined): RetryPolicy {
  const o = options === false ? { retries: 0 } : (options ?? {});
  const policy = {
    retries: o.retries ?? 3,
    minDelayMs: o.minDelayMs ?? 50,
    maxDelayMs: o.maxDelayMs ?? 2000,
    maxRetryAfterMs: o.maxRetryAfterMs ?? 30_000,
  };
  for (const [k, v] of Object.entries(policy)) {
    if (!Number.isFinite(v) || v < 0) throw new TypeError(`retry.${k} must be a non-negative number`);
  }
  return policy;
}

/**
 * Full-jitter exponential backoff: a random wait in [0, min(max, min * 2^attempt)].
 *
 * @example
 * ```ts
 * backoffMs(retryPolicy(undefined), 2); // somewhere in [0, 200]
 * ```
 */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  return Math.random() * Math.min(policy.maxDelayMs, policy.minDelayMs * 2 ** attempt);
}

/**
 * How long to wait before retrying `err`, or undefined to give up: only codes that mean the server
 * did not run the request (RESOURCE_EXHAUSTED, UNAVAILABLE), only while attempts and the deadline
 * last, and never longer than the policy allows for a server's `Retry-After`.
 *
 * @example
 * ```ts
 * retryDelay(retryPolicy(undefined), resourceExhausted('busy', { retryAfterMs: 100 }), 0, 5000); // 100
 * ```
 */
export function retryDelay(
  policy: RetryPolicy,
  err: ServeError,
  attempt: number,
  remainingMs: number,
): number | undefined {
  if (attempt >= policy.retries) return undefined;
  if (err.code !== 'RESOURCE_EXHAUSTED' && err.code !== 'UNAVAILABLE') return undefined;
  const hinted = err.retryAfterMs;
  if (hinted !== undefined && hinted > policy.maxRetryAfterMs) return undefined;
  const wait = hinted ?? backoffMs(policy, attempt);
  return wait < remainingMs ? wait : undefined;
}

/** Waits `ms`, rejecting at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * One call's cancellation: the caller's signal and the deadline folded into one signal, and the
 * matching ServeError (CANCELLED or DEADLINE_EXCEEDED) when it fires.
 */
export class CallScope {
  readonly signal: AbortSignal;
  /** Absolute deadline, epoch ms, or undefined. */
  readonly deadline: number | undefined;
  private readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly outer: AbortSignal | undefined;
  private readonly onOuter = () => this.controller.abort(this.outer?.reason);

  constructor(signal: AbortSignal | undefined, timeoutMs: number | undefined) {
    this.signal = this.controller.signal;
    this.outer = signal;
    if (timeoutMs !== undefined) {
      if (!(timeoutMs >= 0)) throw new TypeError('timeoutMs must be a non-negative number');
      this.deadline = Date.now() + timeoutMs;
      this.timer = setTimeout(
        () => this.controller.abort(new ServeError('DEADLINE_EXCEEDED', `no answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
    }
    if (signal) {
      if (signal.aborted) this.onOuter();
      else signal.addEventListener('abort', this.onOuter, { once: true });
    }
  }

  /** Milliseconds left before the deadline (Infinity without one). */
  remainingMs(): number {
    return this.deadline === undefined ? Number.POSITIVE_INFINITY : this.deadline - Date.now();
  }

  /** The error to throw now that the signal fired. */
  abortError(): ServeError {
    const reason: unknown = this.signal.reason;
    if (reason instanceof ServeError) return reason;
    return new ServeError('CANCELLED', 'the call was cancelled', { cause: reason });
  }

  /**
   * Between attempts: throws `err` when the policy allows no retry of it now (attempts used up, not
   * retryable, or no wait fits before the deadline), else waits the backoff (or the server's
   * retry-after hint); a cancel or the deadline during the wait throws {@link abortError}.
   */
  async backoff(policy: RetryPolicy, err: ServeError, attempt: number): Promise<void> {
    const wait = retryDelay(policy, err, attempt, this.remainingMs());
    if (wait === undefined) throw err;
    try {
      await sleep(wait, this.signal);
    } catch {
      throw this.abortError();
    }
  }

  /** Releases the timer and the listener. */
  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.outer?.removeEventListener('abort', this.onOuter);
  }
}
