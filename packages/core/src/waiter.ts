import { cancelledFrom, remainingMs } from './deadline.js';
import { deadlineExceeded, type ServeError } from './errors.js';
import type { InferOptions } from './types.js';

/** A request waiting in a queue for its turn (a slot, a thread), as {@link enqueueWaiter} takes it. */
export interface QueuedWaiter {
  /** The request's options: its `priority` places it, its `signal` and `deadline` take it out. */
  readonly options: InferOptions | undefined;
  /** Set by {@link enqueueWaiter}: removes the abort listener and the deadline timer. Call it when the waiter leaves the queue. */
  cleanup: () => void;
}

/**
 * Puts a waiting request into `queue` (higher `options.priority` first, first come first served
 * within a priority) and arms it: when its signal aborts or its deadline passes while it waits,
 * `leave` is called with CANCELLED or DEADLINE_EXCEEDED (it takes the waiter out and rejects).
 * The queue's owner calls `waiter.cleanup()` when it takes the waiter out itself. Core's
 * concurrency limit and the worker pools' compute budget queue their requests through this.
 *
 * @example
 * ```ts
 * import { enqueueWaiter, type ServeError, type QueuedWaiter } from '@mlserve/core';
 *
 * const queue: (QueuedWaiter & { go: () => void })[] = [];
 * const turn = new Promise<void>((resolve, reject) => {
 *   const waiter = { options: { priority: 1, deadline: Date.now() + 1000 }, cleanup: () => {}, go: resolve };
 *   enqueueWaiter(queue, waiter, (err: ServeError) => {
 *     queue.splice(queue.indexOf(waiter), 1);
 *     waiter.cleanup();
 *     reject(err);
 *   });
 * });
 * const next = queue.shift()!; // a slot frees: admit the first waiter
 * next.cleanup();
 * next.go();
 * await turn;
 * ```
 */
export function enqueueWaiter<W extends QueuedWaiter>(
  queue: W[],
  waiter: W,
  leave: (err: ServeError) => void,
): void {
  const options = waiter.options;
  const signal = options?.signal;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onAbort = () => leave(cancelledFrom(signal!));
  signal?.addEventListener('abort', onAbort, { once: true });
  const left = remainingMs(options);
  if (Number.isFinite(left)) {
    timer = setTimeout(
      () => leave(deadlineExceeded('the request deadline passed while it was queued')),
      Math.max(0, left),
    );
  }
  waiter.cleanup = () => {
    if (timer) clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };
  // Higher priority first; FIFO within a priority.
  const p = options?.priority ?? 0;
  let at = queue.length;
  while (at > 0 && (queue[at - 1]!.options?.priority ?? 0) < p) at--;
  queue.splice(at, 0, waiter);
}
