/**
 * What a batcher learns while it runs, from numbers alone (every method takes the time it is
 * told, on the performance.now() scale; nothing here reads a clock): the batch latency as a fixed
 * cost plus a cost per item, the arrival rate of other callers' items, requests per batch, and the
 * load signal: how long the model has been busy back to back.
 */

/** Weight of each new batch in the latency estimates and the requests-per-batch average. */
export const ALPHA = 0.1;
/**
 * Decay of the arrival-rate sums per observation window (a batch's execution, or a wait for
 * company): the estimate follows roughly the last 1 / (1 - decay) windows.
 */
export const RATE_DECAY = 0.9;
/**
 * Gaps shorter than this between one saturated stretch and the next do not end a busy streak: the
 * time to hand answers back and take the next requests in (an event-loop turn, a response written and
 * the client's next request read) is part of being busy.
 */
export const BACK_TO_BACK_MS = 1;

export class Estimator {
  // Batch compute time ~ a + b * items (weighted least squares on recent batches).
  #sn = 0;
  #st = 0;
  #snn = 0;
  #snt = 0;
  fitted = false;
  /** a: the per-call cost, ms. */
  costFixed = 0;
  /** b: the cost per item, ms. */
  costPerItem = 0;

  // Arrival rate of *other* callers' items: items that arrived while a batch ran or while the
  // queue waited for company, over the time those windows lasted (decayed sums). Time when the
  // batcher is idle is not counted: a caller blocked on its own request cannot arrive then, so a
  // closed-loop caller's re-submission right after its answer would look like a stream.
  #rateItems = 0;
  #rateMs = 0;
  /** Items that ever arrived (a running count; windows read differences of it). */
  arrivals = 0;

  /** Requests per batch, moving average: about 1 while callers come one at a time. */
  avgRequests = 1;

  // The busy streak: since when every compute slot has been taken back to back.
  #saturated = false;
  #streakStart = Number.NaN;
  #lastSaturatedEnd = Number.NEGATIVE_INFINITY;

  /** Expected compute time of a batch of `items`, ms (0 before anything was measured). */
  expected(items: number): number {
    return this.fitted ? this.costFixed + this.costPerItem * items : 0;
  }

  /** Updates the latency model with one batch: `items` took `ms`. */
  learn(items: number, ms: number): void {
    const w = this.fitted ? ALPHA : 1;
    this.#sn += (items - this.#sn) * w;
    this.#st += (ms - this.#st) * w;
    this.#snn += (items * items - this.#snn) * w;
    this.#snt += (items * ms - this.#snt) * w;
    this.fitted = true;
    const varN = this.#snn - this.#sn * this.#sn;
    let b = 0;
    if (varN > 1e-6 * (this.#snn + 1)) b = Math.max(0, (this.#snt - this.#sn * this.#st) / varN);
    let a = this.#st - b * this.#sn;
    if (a < 0) a = 0;
    if (a > this.#st) a = this.#st;
    this.costFixed = a;
    this.costPerItem = b;
  }

  /** Records an observation window: `items` arrived in `ms` while the batcher was busy or waiting. */
  observe(items: number, ms: number): void {
    if (!(ms > 0)) return;
    this.#rateItems = this.#rateItems * RATE_DECAY + items;
    this.#rateMs = this.#rateMs * RATE_DECAY + ms;
  }

  /**
   * Expected gap between arriving items from other callers, ms; Infinity when none are expected
   * (nothing measured yet, or nothing arrived in the recent windows: a lone sequential caller).
   */
  gap(): number {
    if (!this.fitted || this.#rateItems < 0.5) return Number.POSITIVE_INFINITY;
    return this.#rateMs / this.#rateItems;
  }

  /** A batch of `requests` requests finished. */
  countBatch(requests: number): void {
    this.avgRequests += (requests - this.avgRequests) * ALPHA;
  }

  /** Every compute slot is now taken (a batch launched into the last free one). */
  saturate(now: number): void {
    if (this.#saturated) return;
    this.#saturated = true;
    if (!(now - this.#lastSaturatedEnd <= BACK_TO_BACK_MS)) this.#streakStart = now;
  }

  /** A slot freed after every one was taken. */
  unsaturate(now: number): void {
    if (!this.#saturated) return;
    this.#saturated = false;
    this.#lastSaturatedEnd = now;
  }

  /** Whether the model is in a busy streak now (saturated, or was less than {@link BACK_TO_BACK_MS} ago). */
  backToBack(now: number): boolean {
    return this.#saturated || now - this.#lastSaturatedEnd <= BACK_TO_BACK_MS;
  }

  /**
   * The load signal: how long every compute slot has been taken back to back, ms, counting gaps
   * under {@link BACK_TO_BACK_MS} as busy; 0 when the model has had a slot idle for longer.
   */
  busyMs(now: number): number {
    if (this.#saturated) return now - this.#streakStart;
    if (now - this.#lastSaturatedEnd <= BACK_TO_BACK_MS) return this.#lastSaturatedEnd - this.#streakStart;
    return 0;
  }
}
