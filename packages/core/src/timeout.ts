import { cancelledFrom, raceExpiry } from './deadline.js';
import { deadlineExceeded } from './errors.js';
import { preserveSignature, wrap } from './pipeline.js';
import type { GenericMiddleware, InferOptions, Model } from './types.js';

/** Options of {@link timeout}. */
export interface TimeoutOptions {
  /** Deadline given to requests that come without one, ms from arrival. */
  defaultMs?: number;
  /** Requests may not ask for more than this, ms from arrival (their deadline is cut down). */
  maxMs?: number;
}

/**
 * Enforces deadlines and aborts: the request rejects at once with DEADLINE_EXCEEDED or CANCELLED
 * (the inner work's result, if it still comes, is dropped), and the inner layers get a signal
 * that aborts at the deadline so queues drop the request without running it.
 *
 * @example
 * ```ts
 * const served = pipeline(model, timeout({ defaultMs: 2_000, maxMs: 30_000 }), batching());
 * ```
 */
export function timeout({ defaultMs, maxMs }: TimeoutOptions = {}): GenericMiddleware {
  for (const [k, v] of Object.entries({ defaultMs, maxMs })) {
    if (v !== undefined && !(Number.isFinite(v) && v > 0))
      throw new TypeError(`timeout: options.${k} must be a positive number`);
  }
  return preserveSignature((inner: Model) =>
    wrap(inner, {
      layer: 'timeout',
      infer: function timeoutInfer(inputs, options: InferOptions = {}) {
        const now = Date.now();
        let deadline = options.deadline ?? (defaultMs === undefined ? undefined : now + defaultMs);
        if (maxMs !== undefined) deadline = Math.min(deadline ?? Number.POSITIVE_INFINITY, now + maxMs);
        if (options.signal?.aborted) return Promise.reject(cancelledFrom(options.signal));
        if (deadline === undefined) return inner.infer(inputs, options);
        if (deadline <= now)
          return Promise.reject(deadlineExceeded('the request deadline passed before it ran'));
        const timer = new AbortController();
        const handle = setTimeout(
          () => timer.abort(deadlineExceeded('the request deadline passed')),
          deadline - now,
        );
        const signal = options.signal ? AbortSignal.any([options.signal, timer.signal]) : timer.signal;
        const work = inner.infer(inputs, { ...options, deadline, signal });
        // Raced against the signal only: its timer is the one deadline timer, so the inner work is
        // always aborted when the caller is rejected for the deadline (a second timer could fire
        // first and clear this one before it aborted anything).
        return raceExpiry(work, { signal }).finally(() => clearTimeout(handle));
      },
    }),
  );
}
