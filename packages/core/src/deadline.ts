import { cancelled, deadlineExceeded, type ServeError } from './errors.js';
import type { InferOptions } from './types.js';

/**
 * The error a request that can no longer run gets, or undefined when it may still run:
 * CANCELLED when its signal aborted, DEADLINE_EXCEEDED when its deadline has passed.
 */
export function expiredError(options: InferOptions | undefined, now?: number): ServeError | undefined {
  if (!options) return undefined;
  if (options.signal?.aborted) return cancelledFrom(options.signal);
  // The clock is read only when there is a deadline: this runs in several layers per request.
  if (options.deadline !== undefined && (now ?? Date.now()) >= options.deadline) {
    return deadlineExceeded('the request deadline passed before it ran');
  }
  return undefined;
}

/** Throws when the request was aborted or its deadline has passed. */
export function throwIfExpired(options: InferOptions | undefined, now?: number): void {
  const err = expiredError(options, now);
  if (err) throw err;
}

/** The ServeError for an aborted signal (its reason if that already is one). */
export function cancelledFrom(signal: AbortSignal): ServeError {
  const reason = signal.reason as unknown;
  if (reason && typeof reason === 'object' && (reason as { name?: string }).name === 'ServeError') {
    return reason as ServeError;
  }
  if (reason instanceof Error && reason.name === 'TimeoutError') {
    return deadlineExceeded('the request deadline passed', { cause: reason });
  }
  return cancelled('the request was cancelled', { cause: reason });
}

/** Milliseconds left before the deadline (Infinity when there is none). */
export function remainingMs(options: InferOptions | undefined, now?: number): number {
  return options?.deadline === undefined ? Number.POSITIVE_INFINITY : options.deadline - (now ?? Date.now());
}

/**
 * Settles with `promise`, or rejects at once with CANCELLED or DEADLINE_EXCEEDED when the request's
 * signal aborts or its deadline passes first. The work behind `promise` is not stopped; its result
 * is dropped. Costs one timer only when a deadline is set.
 *
 * @example
 * ```ts
 * const outputs = await raceExpiry(session.run(feeds), options);
 * ```
 */
export function raceExpiry<T>(promise: Promise<T>, options: InferOptions | undefined): Promise<T> {
  const signal = options?.signal;
  const deadline = options?.deadline;
  if (!signal && deadline === undefined) return promise;
  const early = expiredError(options);
  if (early) {
    promise.catch(() => {});
    return Promise.reject(early);
  }
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const onAbort = () => {
      cleanup();
      reject(cancelledFrom(signal!));
    };
    const cleanup = () => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    if (deadline !== undefined) {
      timer = setTimeout(
        () => {
          cleanup();
          reject(deadlineExceeded('the request deadline passed'));
        },
        Math.max(0, deadline - Date.now()),
      );
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        cleanup();
        resolve(v);
      },
      (e) => {
        cleanup();
        reject(e);
      },
    );
  });
}
