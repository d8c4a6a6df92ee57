import { availableParallelism } from 'node:os';
import {
  enqueueWaiter,
  expiredError,
  type InferOptions,
  type QueuedWaiter,
  type ServeError,
} from '@mlserve/core';

/**
 * The process-wide compute budget every worker pool shares.
 *
 * The rule: at any moment, the compute threads busy across all pools of the process (each running
 * request counts its pool's `intraOpThreads`) never exceed the budget, which defaults to
 * `os.availableParallelism()`. Idle worker threads cost memory, not CPU, so each pool may start
 * its own threads; a request waits (in one FIFO queue shared by all pools, higher `priority`
 * first) until both its pool has a free thread and the budget has room for it.
 * @internal
 */
export interface ComputeGate {
  total: number;
  inUse: number;
  queue: Waiter[];
  /** The most compute threads ever in use at once (for tests and stats). */
  peak: number;
}

/** One pool's view of the gate. @internal */
export interface PoolSlot {
  /** Worker threads of this pool. */
  threads: number;
  /** Compute threads one request of this pool uses. */
  cost: number;
  running: number;
  queued: number;
}

/** @internal */
export interface Waiter extends QueuedWaiter {
  pool: PoolSlot;
  grant: () => void;
  fail: (err: ServeError) => void;
}

const KEY = Symbol.for('@mlserve/workers.computeGate');

/** The gate, shared through globalThis so the ESM and CJS builds in one process share it too. */
export function gate(): ComputeGate {
  const g = globalThis as unknown as Record<symbol, ComputeGate | undefined>;
  let current = g[KEY];
  if (!current) {
    current = { total: availableParallelism(), inUse: 0, queue: [], peak: 0 };
    g[KEY] = current;
  }
  return current;
}

/** What the process-wide compute budget holds now. */
export interface ComputeBudget {
  /** Compute threads all pools together may keep busy. */
  total: number;
  /** Compute threads busy now. */
  inUse: number;
  /** Requests of all pools waiting for a thread. */
  queued: number;
  /** The most compute threads busy at once since the process started (or the last `setComputeBudget`). */
  peak: number;
}

/**
 * Reads the process-wide compute budget shared by every {@link workerPool}.
 *
 * @example
 * ```ts
 * const { total, inUse } = computeBudget(); // total: os.availableParallelism() unless set
 * ```
 */
export function computeBudget(): ComputeBudget {
  const g = gate();
  return { total: g.total, inUse: g.inUse, queued: g.queue.length, peak: g.peak };
}

/**
 * Sets how many compute threads all worker pools of this process may keep busy at once: for a
 * container whose CPU quota is below the cores the machine reports, or to leave cores to other
 * work. Requests running now keep their threads; waiting ones are admitted under the new total.
 *
 * @example
 * ```ts
 * setComputeBudget(4); // a 4-CPU container on a 64-core host
 * ```
 */
export function setComputeBudget(total: number): void {
  if (!Number.isSafeInteger(total) || total < 1) throw new TypeError('total must be a positive integer');
  const g = gate();
  g.total = total;
  g.peak = g.inUse;
  pump(g);
}

function canRun(g: ComputeGate, pool: PoolSlot): boolean {
  return pool.running < pool.threads && g.inUse + Math.min(pool.cost, g.total) <= g.total;
}

function start(g: ComputeGate, pool: PoolSlot): () => void {
  const cost = Math.min(pool.cost, g.total);
  pool.running++;
  g.inUse += cost;
  if (g.inUse > g.peak) g.peak = g.inUse;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    pool.running--;
    g.inUse -= cost;
    pump(g);
  };
}

/** Admits waiters in order; one that waits for budget (not for its own pool) holds back those behind it. */
function pump(g: ComputeGate): void {
  for (let i = 0; i < g.queue.length; ) {
    const w = g.queue[i]!;
    const err = expiredError(w.options);
    if (err) {
      g.queue.splice(i, 1);
      w.pool.queued--;
      w.cleanup();
      w.fail(err);
      continue;
    }
    if (w.pool.running >= w.pool.threads) {
      i++;
      continue;
    }
    if (!canRun(g, w.pool)) break;
    g.queue.splice(i, 1);
    w.pool.queued--;
    w.cleanup();
    w.grant();
  }
}

/**
 * Waits for a thread of `pool` and room in the budget. Resolves to the release function; rejects
 * when the request is aborted or its deadline passes while it waits, or with `overflow()` when
 * the pool's queue is full.
 * @internal
 */
export function acquire(
  pool: PoolSlot,
  options: InferOptions | undefined,
  maxQueue: number,
  overflow: () => ServeError,
): Promise<() => void> {
  const g = gate();
  const early = expiredError(options);
  if (early) return Promise.reject(early);
  // Run at once unless someone waits ahead of us for the budget or for this pool's threads.
  const clear = g.queue.every((w) => w.pool !== pool && w.pool.running >= w.pool.threads);
  if (clear && canRun(g, pool)) return Promise.resolve(start(g, pool));
  if (pool.queued >= maxQueue) return Promise.reject(overflow());
  return new Promise((resolve, reject) => {
    const waiter: Waiter = {
      pool,
      options,
      grant: () => resolve(start(g, pool)),
      fail: reject,
      cleanup: () => {},
    };
    enqueueWaiter(g.queue, waiter, (err: ServeError) => {
      const i = g.queue.indexOf(waiter);
      if (i < 0) return;
      g.queue.splice(i, 1);
      pool.queued--;
      waiter.cleanup();
      reject(err);
      pump(g);
    });
    pool.queued++;
  });
}

/** Rejects every waiter of `pool` (on dispose). @internal */
export function drain(pool: PoolSlot, err: () => ServeError): void {
  const g = gate();
  for (let i = 0; i < g.queue.length; ) {
    const w = g.queue[i]!;
    if (w.pool !== pool) {
      i++;
      continue;
    }
    g.queue.splice(i, 1);
    pool.queued--;
    w.cleanup();
    w.fail(err());
  }
  pump(g);
}
