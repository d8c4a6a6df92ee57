import { expiredError } from './deadline.js';
import { renamedOption } from './deprecated.js';
import { ServeError, unavailable } from './errors.js';
import { preserveSignature, wrap } from './pipeline.js';
import type { GenericMiddleware, InferOptions, Model, Tensors } from './types.js';
import { enqueueWaiter, type QueuedWaiter } from './waiter.js';

/** Options of {@link concurrencyLimit}. */
export interface ConcurrencyLimitOptions {
  /** Requests in flight to the inner model at once. */
  maxConcurrent: number;
  /** Requests that may wait for a slot (default 0: shed at once when all slots are busy). */
  maxQueue?: number;
  /** HTTP status of the RESOURCE_EXHAUSTED rejection: 429 (default) or 503. */
  rejectStatus?: 429 | 503;
  /** @deprecated use `rejectStatus` */
  status?: 429 | 503;
}

interface Waiter extends QueuedWaiter {
  resolve: () => void;
  reject: (err: ServeError) => void;
  enqueuedAt: number;
}

/** Counters of a {@link concurrencyLimit} layer, under `stats().concurrency`. */
export interface ConcurrencyStats {
  inFlight: number;
  queued: number;
  admitted: number;
  rejected: number;
}

/**
 * Load shedding for pipelines without a batcher: at most `maxConcurrent` requests in flight, at
 * most `maxQueue` waiting (FIFO, higher `priority` first); beyond that a request is rejected at once
 * with RESOURCE_EXHAUSTED and a retry-after hint from the measured latency. Aborted or expired
 * requests leave the queue at once.
 *
 * @example
 * ```ts
 * const served = pipeline(model, concurrencyLimit({ maxConcurrent: 4, maxQueue: 64 }));
 * ```
 */
export function concurrencyLimit(options: ConcurrencyLimitOptions): GenericMiddleware {
  const { maxConcurrent, maxQueue = 0 } = options;
  const status = renamedOption(options, 'rejectStatus', 'status', 'concurrencyLimit') ?? 429;
  if (!Number.isSafeInteger(maxConcurrent) || maxConcurrent < 1) {
    throw new TypeError('concurrencyLimit: options.maxConcurrent must be a positive integer');
  }
  if (!Number.isSafeInteger(maxQueue) || maxQueue < 0) {
    throw new TypeError('concurrencyLimit: options.maxQueue must be a non-negative integer');
  }
  return preserveSignature((inner: Model) => {
    let inFlight = 0;
    let admitted = 0;
    let rejected = 0;
    let avgMs = 0;
    let closed = false;
    const queue: Waiter[] = [];

    const release = () => {
      inFlight--;
      while (queue.length > 0 && inFlight < maxConcurrent) {
        const next = queue.shift()!;
        next.cleanup();
        const err = expiredError(next.options);
        if (err) {
          next.reject(err);
          continue;
        }
        inFlight++;
        if (next.options?.context)
          next.options.context.queueMs =
            (next.options.context.queueMs ?? 0) + (performance.now() - next.enqueuedAt);
        next.resolve();
      }
    };

    const acquire = (options: InferOptions | undefined): Promise<void> | undefined => {
      if (inFlight < maxConcurrent && queue.length === 0) {
        inFlight++;
        return undefined;
      }
      if (queue.length >= maxQueue) {
        rejected++;
        const retryAfterMs = Math.max(1, Math.ceil((avgMs * (queue.length + 1)) / maxConcurrent));
        return Promise.reject(
          new ServeError(
            'RESOURCE_EXHAUSTED',
            `model "${inner.name}" is at capacity (${maxConcurrent} running, ${queue.length} queued)`,
            {
              status,
              retryAfterMs,
            },
          ),
        );
      }
      return new Promise<void>((resolve, reject) => {
        const waiter: Waiter = { resolve, reject, options, cleanup: () => {}, enqueuedAt: performance.now() };
        enqueueWaiter(queue, waiter, (err: ServeError) => {
          const i = queue.indexOf(waiter);
          if (i >= 0) queue.splice(i, 1);
          waiter.cleanup();
          reject(err);
        });
      });
    };

    return wrap(inner, {
      layer: 'concurrency',
      infer: async function concurrencyLimitInfer(inputs: Tensors, options?: InferOptions) {
        if (closed) throw unavailable(`model "${inner.name}" is shutting down`);
        const err = expiredError(options);
        if (err) throw err;
        const wait = acquire(options);
        if (wait) await wait;
        admitted++;
        const t0 = performance.now();
        try {
          return await inner.infer(inputs, options);
        } finally {
          const ms = performance.now() - t0;
          avgMs = avgMs === 0 ? ms : avgMs * 0.9 + ms * 0.1;
          release();
        }
      },
      dispose() {
        closed = true;
        for (const w of queue.splice(0)) {
          w.cleanup();
          w.reject(unavailable(`model "${inner.name}" is shutting down`));
        }
      },
      stats: (): ConcurrencyStats => ({ inFlight, queued: queue.length, admitted, rejected }),
    });
  });
}
