import type { ReleaseReason } from './options.js';

/**
 * The release policy: when a group of queued requests leaves as a batch. A pure function of
 * numbers (the time is an argument; nothing here reads a clock or touches a request), so tests
 * drive it with numbers alone.
 *
 * The rules, in order:
 * 1. Every compute slot busy: nothing is released, whatever its size or age. The next batch goes
 *    on forming while the model computes; no tiny batch is launched to wait behind the others.
 * 2. Full (`maxBatchSize` items) or a preferred size reached: released.
 * 3. Requests that queued while every slot was busy (or in the turn their slot freed) are released
 *    the moment a slot is free: they waited for the model already, and waiting longer would only
 *    leave it idle.
 * 4. A fixed `maxDelayMs`: a group whose oldest request arrived while a slot was free waits until
 *    that request has waited `maxDelayMs` (0: never waits).
 * 5. `'auto'`: released at once while the model is busy back to back (the load signal: the slots
 *    have been taken with gaps under 1 ms, so the next batch forms during this one). With the
 *    model idle, it waits for company only while the expected wait for the next item from another
 *    caller, paid by each queued item, is below the per-call cost that item would save, and never
 *    past `maxLatencyMs` after the oldest arrived.
 * 6. Whatever the rule, a group is released early when waiting longer would make a member miss its
 *    deadline (by the expected compute time plus a margin).
 */

/** Timer decisions tolerate this much early firing (libuv rounds timers to whole ms). */
export const TIMER_SLACK_MS = 0.5;
/** A batch waiting for company leaves this long (plus its expected compute) before a member's deadline. */
export const DEADLINE_MARGIN_MS = 10;

/** The options the policy reads. */
export interface PolicyConfig {
  readonly maxBatch: number;
  /** Ascending. */
  readonly preferred: readonly number[];
  /** A fixed `maxDelayMs`; undefined for `'auto'`. */
  readonly fixedDelay: number | undefined;
  readonly maxLatency: number;
}

/** One group of requests that may share a batch, as numbers. Times on one clock, ms. */
export interface GroupState {
  /** Items (rows) queued. */
  items: number;
  /** When the oldest queued request arrived. */
  oldestAt: number;
  /** When the newest arrived. */
  lastArrivalAt: number;
  /** The earliest member deadline; Infinity when none. */
  earliestDeadline: number;
  /** The oldest request queued while every compute slot was busy (or in the turn its slot freed). */
  oldestQueuedBusy: boolean;
}

/** The model's side, as numbers. */
export interface LoadState {
  /** Compute slots free now. */
  freeSlots: number;
  /** The model has been busy back to back until now (the estimator's load signal). */
  backToBack: boolean;
  /** Expected gap between items arriving from other callers, ms (Infinity: none expected). */
  gap: number;
  /** Expected fixed cost of a model call, ms. */
  costFixed: number;
  /** Expected cost per item, ms. */
  costPerItem: number;
}

/**
 * What to do with a group now: a release reason (release it now), or the time before which nothing
 * changes by time alone (Infinity: wait until a slot frees or a request arrives).
 *
 * @example
 * ```ts
 * const cfg = { maxBatch: 64, preferred: [], fixedDelay: 2, maxLatency: 10 };
 * const load = { freeSlots: 1, backToBack: false, gap: Infinity, costFixed: 0.1, costPerItem: 0.01 };
 * decide(cfg, { items: 3, oldestAt: 100, lastArrivalAt: 100.5, earliestDeadline: Infinity, oldestQueuedBusy: false }, load, 101);
 * // 102: the oldest has waited 1 of its 2 ms
 * ```
 */
export function decide(
  cfg: PolicyConfig,
  g: GroupState,
  load: LoadState,
  now: number,
): ReleaseReason | number {
  if (load.freeSlots <= 0) return Number.POSITIVE_INFINITY;
  if (g.items >= cfg.maxBatch) return 'full';
  const preferred = cfg.preferred;
  if (preferred.length > 0 && (g.items >= preferred[preferred.length - 1]! || preferred.includes(g.items))) {
    return 'preferred';
  }
  const until = waitUntil(cfg, g, load);
  if (until < 0) return 'idle';
  if (now + TIMER_SLACK_MS >= until) return 'timer';
  if (g.earliestDeadline !== Number.POSITIVE_INFINITY) {
    const latest = g.earliestDeadline - DEADLINE_MARGIN_MS - expected(load, g.items);
    if (now + TIMER_SLACK_MS >= latest) return 'deadline';
    if (latest < until) return latest;
  }
  return until;
}

/** Until when a group with a free slot waits for company; -1 to release it now. */
export function waitUntil(cfg: PolicyConfig, g: GroupState, load: LoadState): number {
  if (g.oldestQueuedBusy) return -1;
  if (cfg.fixedDelay !== undefined) return cfg.fixedDelay === 0 ? -1 : g.oldestAt + cfg.fixedDelay;
  if (load.backToBack) return -1;
  const gap = load.gap;
  if (g.items * gap >= load.costFixed) return -1;
  return Math.min(g.oldestAt + cfg.maxLatency, g.lastArrivalAt + 2 * gap);
}

/** The wait `'auto'` aims for now for a lone item, ms (for stats). */
export function autoDelay(cfg: PolicyConfig, load: LoadState): number {
  if (load.backToBack) return 0;
  return load.gap < load.costFixed ? Math.min(cfg.maxLatency, 2 * load.gap) : 0;
}

function expected(load: LoadState, items: number): number {
  return load.costFixed + load.costPerItem * items;
}
