import { EventEmitter } from 'node:events';
import {
  cancelledFrom,
  concat,
  deadlineExceeded,
  expiredError,
  type InferContext,
  type InferOptions,
  isValidated,
  type Model,
  markValidated,
  mergeOptions,
  payloadTooLarge,
  ServeError,
  SharedSignal,
  sliceRows,
  type Tensors,
  type TensorTypes,
  toServeError,
  unavailable,
  validateRequest,
  wrap,
} from '@mlserve/core';
import { Estimator } from './estimator.js';
import { checkRows, mergeInputs, share } from './execute.js';
import type { BatchEvent, BatchingOptions, BatchingStats, ReleaseReason } from './options.js';
import { validateOptions } from './options.js';
import { groupKey, makePlan, type Plan, quickValid } from './plan.js';
import { autoDelay, decide, type GroupState, type LoadState, type PolicyConfig } from './policy.js';
import { DONE, Entry, type Group, QUEUED, Queue, RUNNING } from './queue.js';

/**
 * The clock for queue bookkeeping (arrival times, release decisions, expiry): performance.now()
 * read at most once per run of microtasks. The callers a batch answers send their next requests
 * from the microtasks its answers start (64 enqueues for a batch of 64), and one clock read each
 * was 7% of a batched small model's main thread. The reading is dropped by a microtask queued
 * behind those callers, so it is never carried into a later turn of the event loop (a timer, an
 * immediate, I/O): it is stale by at most the synchronous work of the same microtask run.
 * Compute times are measured with performance.now() itself.
 */
let turnNow = -1;
const forgetNow = (): void => {
  turnNow = -1;
};
function clock(): number {
  if (turnNow < 0) {
    turnNow = performance.now();
    queueMicrotask(forgetNow);
  }
  return turnNow;
}

/** The entry whose promise is being made: one shared executor instead of a closure per request. */
let pending: Entry | undefined;
function settleInto(resolve: (out: Tensors) => void, reject: (err: unknown) => void): void {
  pending!.resolve = resolve;
  pending!.reject = reject;
  pending = undefined;
}

/** Events of a batching layer: one `batch` per batch run (never one per request). */
export interface BatchingEvents {
  batch: [BatchEvent];
}

/**
 * The model {@link batching} returns: a Model plus its `events`, with the inner model's signature.
 *
 * @example
 * ```ts
 * const served: BatchingModel = batching({ maxBatchSize: 64 })(model);
 * served.events.on('batch', (b) => console.log(b.size, b.reason));
 * ```
 */
export interface BatchingModel<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes>
  extends Model<I, O> {
  /** Emits `batch` after every batch, with its size, release reason, queue wait and compute time. */
  readonly events: EventEmitter<BatchingEvents>;
}

/**
 * Dynamic batching: concurrent requests to the inner model are merged along dim 0 into one call
 * and the outputs are split back, each caller getting exactly its rows (and only the outputs it
 * asked for). Requests are validated before they queue, so one bad request never fails its
 * neighbours; requests whose deadline passes or whose signal aborts leave the queue at once and never
 * reach the model. While every compute slot is busy the next batch forms; the moment one frees, what
 * waits is released. One timer per queue; no per-request timer, no per-request event.
 *
 * @example
 * ```ts
 * import { pipeline } from '@mlserve/core';
 * import { batching } from '@mlserve/batching';
 *
 * const served = pipeline(model, batching({ maxBatchSize: 64, maxDelayMs: 'auto', maxLatencyMs: 5 }));
 * served.events.on('batch', (b) => console.log(b.size, b.reason, b.computeMs));
 * const { scores } = await served.infer({ features }); // merged with whatever else is in flight
 * ```
 */
export function batching(
  options: BatchingOptions = {},
): <I extends TensorTypes, O extends TensorTypes>(inner: Model<I, O>) => BatchingModel<I, O> {
  validateOptions(options);
  // The batcher is signature-blind (it merges and splits whatever tensors pass): the layer keeps
  // the inner model's signature.
  return <I extends TensorTypes, O extends TensorTypes>(inner: Model<I, O>) =>
    new Batcher(inner as Model, options).model as unknown as BatchingModel<I, O>;
}

class Batcher {
  readonly model: BatchingModel;
  readonly events = new EventEmitter<BatchingEvents>();
  readonly #inner: Model;
  readonly #plan: Plan;
  readonly #policy: PolicyConfig;
  readonly #onBatch: ((e: BatchEvent) => void) | undefined;
  readonly #queue: Queue;
  readonly #est = new Estimator();
  /** The policy's view of the model, refreshed before each decision (one object, reused). */
  readonly #load: LoadState = {
    freeSlots: 0,
    backToBack: false,
    gap: Number.POSITIVE_INFINITY,
    costFixed: 0,
    costPerItem: 0,
  };
  /** A would-be group of one request, for the idle fast path's question to the policy. */
  readonly #lone: GroupState = {
    items: 0,
    oldestAt: 0,
    lastArrivalAt: 0,
    earliestDeadline: Number.POSITIVE_INFINITY,
    oldestQueuedBusy: false,
  };

  #inFlight = 0;
  #seq = 0;
  #closed = false;
  /**
   * A batch ended in this turn of the event loop (kept for fixed delays only): requests its callers
   * send right away queued while the model was busy, so they are not held for `maxDelayMs`.
   */
  #turnFreed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #immediate: ReturnType<typeof setImmediate> | undefined;
  /** Inner calls not yet settled (batches and direct runs), and who waits for them to drain. */
  #running = 0;
  #drained: (() => void) | undefined;
  /** Running requests that have a deadline: the timer also rejects them when it passes. */
  readonly #runningDeadlines = new Set<Entry>();

  // Counters.
  #batches = 0;
  #items = 0;
  #requests = 0;
  #releases: Record<ReleaseReason, number> = { full: 0, preferred: 0, timer: 0, deadline: 0, idle: 0 };
  #rejected = { queueFull: 0, deadline: 0, cancelled: 0, invalid: 0, failed: 0 };
  #avgQueueMs = 0;
  #avgComputeMs = 0;
  /** Successful inner calls by batch size (rows): how many, and their compute time in total, ms. */
  readonly #bySize = new Map<number, { count: number; computeMs: number }>();

  constructor(inner: Model, options: BatchingOptions) {
    this.#inner = inner;
    const plan = makePlan(inner.metadata(), options);
    this.#plan = plan;
    this.#policy = {
      maxBatch: plan.maxBatch,
      preferred: plan.preferred,
      fixedDelay: plan.fixedDelay,
      maxLatency: plan.maxLatency,
    };
    this.#queue = new Queue(plan.agingMs);
    this.#onBatch = options.onBatch;
    const model = wrap(inner, {
      layer: 'batching',
      infer: (inputs, opts) => this.infer(inputs, opts),
      dispose: () => this.#dispose(),
      isReady: () => !this.#closed,
      stats: () => this.stats(),
    }) as Model & { events: EventEmitter<BatchingEvents> };
    model.events = this.events;
    this.model = model;
  }

  stats(): BatchingStats {
    const now = performance.now();
    return {
      queueSize: this.#queue.items,
      queuedRequests: this.#queue.requests,
      inFlight: this.#inFlight,
      batches: this.#batches,
      items: this.#items,
      requests: this.#requests,
      averageBatchSize: this.#batches === 0 ? 0 : this.#items / this.#batches,
      releases: { ...this.#releases },
      rejected: { ...this.#rejected },
      queueMs: this.#avgQueueMs,
      computeMs: this.#avgComputeMs,
      delayMs: this.#plan.fixedDelay ?? autoDelay(this.#policy, this.#loadAt(now)),
      busyMs: this.#est.busyMs(now),
      maxBatchSize: this.#plan.maxBatch,
      maxConcurrentBatches: this.#plan.maxConcurrent,
      batchSizes: [...this.#bySize]
        .sort((a, b) => a[0] - b[0])
        .map(([size, s]) => ({ size, count: s.count, computeMs: s.computeMs })),
    };
  }

  /** Counts one successful inner call of `rows` rows. */
  #countSize(rows: number, computeMs: number): void {
    const s = this.#bySize.get(rows);
    if (s === undefined) this.#bySize.set(rows, { count: 1, computeMs });
    else {
      s.count++;
      s.computeMs += computeMs;
    }
  }

  infer(inputs: Tensors, options?: InferOptions): Promise<Tensors> {
    const plan = this.#plan;
    try {
      if (this.#closed) throw unavailable(`model "${plan.meta.name}" is shutting down`);
      // A request an outer layer validated for this model (core's validation(), the protocol
      // adapters) is trusted; any other gets the quick check, then core's exact one if needed.
      if (!isValidated(inputs, plan.meta, options) && (options?.outputs || !quickValid(plan, inputs))) {
        try {
          validateRequest(plan.meta, inputs, options);
        } catch (err) {
          this.#rejected.invalid++;
          throw err;
        }
      }
      if (plan.passthrough) return this.#inner.infer(inputs, options);
      if (options !== undefined && (options.signal || options.deadline !== undefined)) {
        const expired = expiredError(options);
        if (expired) {
          if (expired.code === 'CANCELLED') this.#rejected.cancelled++;
          else this.#rejected.deadline++;
          throw expired;
        }
      }
      const rows = inputs[plan.firstBatched]!.dims[0]!;
      if (rows === 0) return this.#inner.infer(inputs, options);
      if (rows > plan.maxQueue) {
        this.#rejected.queueFull++;
        throw payloadTooLarge(
          `a request of ${rows} rows is larger than the queue (maxQueue ${plan.maxQueue})`,
        );
      }
      if (this.#queue.items + rows > plan.maxQueue) throw this.#queueFull(rows);
      const est = this.#est;
      if (options?.deadline !== undefined && est.fitted) {
        const left = options.deadline - Date.now();
        if (left < est.expected(Math.min(rows, plan.maxBatch))) {
          this.#rejected.deadline++;
          throw deadlineExceeded(
            `the request cannot finish before its deadline (${Math.max(0, Math.round(left))} ms left, a batch takes about ${est.expected(rows).toFixed(1)} ms); it was not started`,
          );
        }
      }
      // Idle fast path ('auto' only): a slot is free, nothing is queued, recent batches held one
      // request each (no company is expected) and the policy would release a batch of this one
      // request at once. It goes straight to the model with its own options, without queueing,
      // copying or the hop to the next turn of the event loop.
      if (
        plan.fixedDelay === undefined &&
        this.#queue.requests === 0 &&
        this.#inFlight < plan.maxConcurrent &&
        est.avgRequests < 1.5 &&
        rows <= plan.maxBatch
      ) {
        const now = performance.now();
        const lone = this.#lone;
        lone.items = rows;
        lone.oldestAt = now;
        lone.lastArrivalAt = now;
        if (typeof decide(this.#policy, lone, this.#loadAt(now), now) === 'string') {
          return this.#direct(inputs, options, rows, now);
        }
      }
      const key = groupKey(plan, inputs, options);
      if (rows > plan.maxBatch && key !== undefined) return this.#split(inputs, options, rows, key);
      return this.#enqueue(inputs, options, rows, key);
    } catch (err) {
      return Promise.reject(toServeError(err));
    }
  }

  /** The policy's view of the model now. */
  #loadAt(now: number): LoadState {
    const load = this.#load;
    const est = this.#est;
    load.freeSlots = this.#plan.maxConcurrent - this.#inFlight;
    load.backToBack = est.backToBack(now);
    load.gap = est.gap();
    load.costFixed = est.costFixed;
    load.costPerItem = est.costPerItem;
    return load;
  }

  #queueFull(rows: number): ServeError {
    const plan = this.#plan;
    const queued = this.#queue.items;
    this.#rejected.queueFull++;
    const batchesAhead = Math.ceil((queued + rows) / plan.maxBatch);
    const perBatch = this.#est.fitted ? this.#est.expected(plan.maxBatch) : 1;
    const retryAfterMs = Math.max(1, Math.ceil((batchesAhead * perBatch) / plan.maxConcurrent));
    return new ServeError(
      'RESOURCE_EXHAUSTED',
      `model "${plan.meta.name}" is overloaded: ${queued} items queued (limit ${plan.maxQueue})`,
      {
        status: plan.rejectStatus,
        retryAfterMs,
        details: { queueSize: queued, maxQueueSize: plan.maxQueue },
      },
    );
  }

  /** A request larger than a batch runs as several chunks whose outputs are joined back. */
  async #split(
    inputs: Tensors,
    options: InferOptions | undefined,
    rows: number,
    key: string,
  ): Promise<Tensors> {
    const plan = this.#plan;
    const parts: Promise<Tensors>[] = [];
    for (let start = 0; start < rows; start += plan.maxBatch) {
      const end = Math.min(rows, start + plan.maxBatch);
      const chunk: Tensors = {};
      for (const [name, t] of Object.entries(inputs)) {
        chunk[name] = plan.unbatchedInputNames.has(name) ? t : sliceRows(t, start, end);
      }
      parts.push(this.#enqueue(chunk, options, end - start, key));
    }
    const results = await Promise.all(parts);
    const out: Tensors = {};
    for (const name of Object.keys(results[0]!)) {
      out[name] = plan.unbatchedOutputs.has(name) ? results[0]![name]! : concat(results.map((r) => r[name]!));
    }
    return out;
  }

  #enqueue(
    inputs: Tensors,
    options: InferOptions | undefined,
    rows: number,
    key: string | undefined,
  ): Promise<Tensors> {
    const now = clock();
    const queue = this.#queue;
    const group = queue.group(key);
    let deadlineAt = Number.POSITIVE_INFINITY;
    let priority = 0;
    if (options !== undefined) {
      if (options.deadline !== undefined) deadlineAt = options.deadline - performance.timeOrigin;
      priority = options.priority ?? 0;
    }
    const busy = this.#inFlight >= this.#plan.maxConcurrent || this.#turnFreed;
    const entry = new Entry(inputs, options, rows, group, now, deadlineAt, priority, this.#seq++, busy);
    pending = entry;
    const promise = new Promise<Tensors>(settleInto);
    const signal = options?.signal;
    if (signal) {
      entry.onAbort = () => this.#abort(entry, signal);
      signal.addEventListener('abort', entry.onAbort, { once: true });
    }
    queue.push(entry);
    this.#est.arrivals += rows;
    this.#immediate ??= setImmediate(this.#pump);
    return promise;
  }

  #detach(entry: Entry): void {
    if (entry.state === RUNNING && entry.deadlineAt !== Number.POSITIVE_INFINITY)
      this.#runningDeadlines.delete(entry);
    if (entry.onAbort) entry.options!.signal!.removeEventListener('abort', entry.onAbort);
    entry.onAbort = undefined;
    entry.state = DONE;
  }

  #abort(entry: Entry, signal: AbortSignal): void {
    if (entry.state === DONE) return;
    const wasRunning = entry.state === RUNNING;
    if (entry.state === QUEUED) this.#queue.remove(entry);
    else this.#runningDeadlines.delete(entry);
    entry.onAbort = undefined;
    entry.state = DONE;
    this.#rejected.cancelled++;
    entry.reject(cancelledFrom(signal));
    // A running batch keeps going for the others; its signal aborts only when every waiter left.
    if (wasRunning) entry.shared?.leave();
    else this.#kick();
  }

  #kick(): void {
    if (!this.#closed) this.#immediate ??= setImmediate(this.#pump);
  }

  readonly #expire = (e: Entry): void => {
    this.#detach(e);
    this.#rejected.deadline++;
    e.reject(deadlineExceeded('the request deadline passed while it was queued for a batch'));
  };

  readonly #pump = (): void => {
    this.#immediate = undefined;
    this.#turnFreed = false;
    if (this.#closed) return;
    const now = clock();
    const queue = this.#queue;
    if (now >= queue.earliestDeadline) queue.sweep(now, this.#expire);
    if (this.#runningDeadlines.size > 0) this.#expireRunning(now);
    while (this.#inFlight < this.#plan.maxConcurrent && queue.requests > 0) {
      if (!this.#launchReady(now)) break;
    }
    this.#arm(now);
  };

  /**
   * A running request whose own deadline passes is rejected at once and leaves its batch (whose
   * deadline is the latest of its members'), like one that aborted.
   */
  #expireRunning(now: number): void {
    for (const e of this.#runningDeadlines) {
      if (e.deadlineAt > now) continue;
      this.#detach(e);
      this.#rejected.deadline++;
      e.reject(deadlineExceeded('the request deadline passed while its batch ran'));
      e.shared?.leave();
    }
  }

  readonly #onTimer = (): void => {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    this.#pump();
  };

  /** Arms the single timer for the next moment something is due (a release or an expiry). */
  #arm(now: number): void {
    let at = this.#queue.earliestDeadline;
    for (const e of this.#runningDeadlines) if (e.deadlineAt < at) at = e.deadlineAt;
    if (this.#inFlight < this.#plan.maxConcurrent) {
      const load = this.#loadAt(now);
      for (const g of this.#queue.groups.values()) {
        const d = decide(this.#policy, g, load, now);
        const r = typeof d === 'number' ? d : now;
        if (r < at) at = r;
      }
    }
    if (at === Number.POSITIVE_INFINITY) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      return;
    }
    if (at <= now) {
      // Due now but not ready by a hair (timer rounding): look again in a millisecond.
      at = now + 1;
    }
    if (this.#timer && this.#timerAt <= at + 0.5) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(this.#onTimer, Math.max(1, Math.ceil(at - now)));
  }

  /** Finds the most urgent group that is ready and launches one batch from it; false when none is ready. */
  #launchReady(now: number): boolean {
    const queue = this.#queue;
    const load = this.#loadAt(now);
    let best: Group | undefined;
    let bestReason: ReleaseReason | undefined;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (const g of queue.groups.values()) {
      const d = decide(this.#policy, g, load, now);
      if (typeof d === 'number') continue;
      if (queue.groups.size === 1) {
        best = g;
        bestReason = d;
        break;
      }
      const score = queue.score(g, now);
      if (score > bestScore) {
        best = g;
        bestReason = d;
        bestScore = score;
      }
    }
    if (!best || !bestReason) return false;
    this.#launch(best, bestReason, now);
    return true;
  }

  #launch(g: Group, reason: ReleaseReason, now: number): void {
    let limit = this.#plan.maxBatch;
    if (reason === 'preferred') {
      for (const p of this.#plan.preferred) if (p <= g.items) limit = p;
    }
    const taken = this.#queue.take(g, limit, now);
    let items = 0;
    let withDeadline = false;
    for (const e of taken) {
      items += e.rows;
      if (e.deadlineAt !== Number.POSITIVE_INFINITY) withDeadline = true;
    }
    // A request that cannot finish before its deadline is not started.
    let batch = taken;
    if (withDeadline) {
      const expected = this.#est.expected(items);
      batch = [];
      for (const e of taken) {
        if (e.deadlineAt !== Number.POSITIVE_INFINITY && now + expected > e.deadlineAt) {
          this.#detach(e);
          this.#rejected.deadline++;
          e.reject(deadlineExceeded('the request cannot finish before its deadline; it was not started'));
        } else batch.push(e);
      }
      if (batch.length === 0) return;
    }
    this.#releases[reason]++;
    // A wait for company is an observation window too: who joined after the oldest, in how long.
    if (reason === 'timer' && this.#plan.fixedDelay === undefined) {
      this.#est.observe(items - taken[0]!.rows, now - taken[0]!.enqueuedAt);
    }
    this.#running++;
    this.#run(batch, reason, now).finally(this.#settle);
  }

  readonly #settle = (): void => {
    if (--this.#running === 0 && this.#drained) this.#drained();
  };

  /** A slot is taken: the estimator hears when the last free one goes. */
  #take(now: number): void {
    if (++this.#inFlight >= this.#plan.maxConcurrent) this.#est.saturate(now);
  }

  /** A slot frees. */
  #free(now: number): void {
    if (this.#inFlight-- >= this.#plan.maxConcurrent) this.#est.unsaturate(now);
    if (this.#plan.fixedDelay !== undefined && this.#plan.fixedDelay > 0) {
      this.#turnFreed = true;
      this.#kick();
    } else if (this.#queue.requests > 0) this.#kick();
  }

  /**
   * A lone request run as a batch of one, straight on the inner model with the caller's own
   * options (its signal and deadline reach the model as they are); same bookkeeping as #run.
   */
  async #direct(
    inputs: Tensors,
    options: InferOptions | undefined,
    rows: number,
    t0: number,
  ): Promise<Tensors> {
    const est = this.#est;
    this.#take(t0);
    this.#running++;
    est.arrivals += rows;
    const arrivedBefore = est.arrivals;
    let computeMs = 0;
    let error: ServeError | undefined;
    try {
      const out = await this.#inner.infer(inputs, options);
      checkRows(this.#plan, out, rows);
      return out;
    } catch (err) {
      error = toServeError(err);
      if (error.code === 'CANCELLED') this.#rejected.cancelled++;
      else if (error.code === 'DEADLINE_EXCEEDED') this.#rejected.deadline++;
      else this.#rejected.failed++;
      throw error;
    } finally {
      const t1 = performance.now();
      computeMs = t1 - t0;
      est.learn(rows, computeMs);
      est.observe(est.arrivals - arrivedBefore, computeMs);
      est.countBatch(1);
      this.#batches++;
      this.#items += rows;
      if (!error) this.#countSize(rows, computeMs);
      this.#requests++;
      this.#releases.idle++;
      this.#avgQueueMs = this.#batches === 1 ? 0 : this.#avgQueueMs * 0.9;
      this.#avgComputeMs = this.#batches === 1 ? computeMs : this.#avgComputeMs * 0.9 + computeMs * 0.1;
      const ctx = options?.context;
      if (ctx) {
        ctx.queueMs = ctx.queueMs ?? 0;
        ctx.batchSize = rows;
        ctx.computeMs = computeMs;
      }
      if (this.#onBatch || this.events.listenerCount('batch') > 0) {
        const event: BatchEvent = {
          size: rows,
          requests: 1,
          reason: 'idle',
          queueMs: 0,
          maxQueueMs: 0,
          computeMs,
          queueSize: this.#queue.items,
        };
        if (error) event.error = error;
        this.#emit(event);
      }
      this.#free(t1);
      this.#settle();
    }
  }

  #emit(event: BatchEvent): void {
    // A listener's failure must not break the batcher (nor keep the other listeners from the event).
    try {
      this.#onBatch?.(event);
    } catch {}
    try {
      this.events.emit('batch', event);
    } catch {}
  }

  async #run(batch: Entry[], reason: ReleaseReason, formedAt: number): Promise<void> {
    const plan = this.#plan;
    const est = this.#est;
    this.#take(formedAt);
    const n = batch.length;
    // The inner call gets a signal only when a member can leave (its own signal or deadline).
    let shared: SharedSignal | undefined;
    let items = 0;
    let waitSum = 0;
    let waitMax = 0;
    let plain = true;
    for (let i = 0; i < n; i++) {
      const e = batch[i]!;
      e.state = RUNNING;
      items += e.rows;
      const waited = formedAt - e.enqueuedAt;
      waitSum += waited;
      if (waited > waitMax) waitMax = waited;
      const o = e.options;
      if (o === undefined) continue;
      plain = false;
      if (o.signal || e.deadlineAt !== Number.POSITIVE_INFINITY) {
        shared ??= new SharedSignal();
        if (e.deadlineAt !== Number.POSITIVE_INFINITY) this.#runningDeadlines.add(e);
      }
      const ctx = o.context;
      if (ctx) ctx.queueMs = (ctx.queueMs ?? 0) + waited;
    }
    if (shared) {
      for (let i = 0; i < n; i++) {
        const e = batch[i]!;
        shared.join();
        e.shared = shared;
      }
    }
    const queueSize = this.#queue.items;
    let padded: Record<string, number> | undefined;
    let computeMs = 0;
    let error: Error | undefined;
    try {
      const merged = mergeInputs(plan, batch);
      padded = merged.padded;
      const context: InferContext = {};
      const innerOptions: InferOptions = { context };
      if (!plain) {
        const list: (InferOptions | undefined)[] = new Array(n);
        for (let i = 0; i < n; i++) list[i] = batch[i]!.options;
        const m = mergeOptions(list);
        if (m.priority !== 0) innerOptions.priority = m.priority;
        if (m.deadline !== undefined) innerOptions.deadline = m.deadline;
        if (m.outputs) innerOptions.outputs = m.outputs;
        if (m.parameters) innerOptions.parameters = m.parameters;
        if (n === 1) {
          // Alone in its batch (a sequence request always is): what only it carries goes through.
          const own = batch[0]!.options!;
          if (own.sequence !== undefined) innerOptions.sequence = own.sequence;
          if (own.id !== undefined) innerOptions.id = own.id;
        }
      }
      if (shared) innerOptions.signal = shared.signal;
      // Every member was validated before it queued, and rows joined along dim 0 stay valid: the
      // layers below need not check the batch again.
      if (items <= plan.maxBatch) markValidated(merged.inputs, plan.meta, innerOptions);
      const t0 = performance.now();
      const arrivedBefore = est.arrivals;
      let out: Tensors;
      try {
        out = await this.#inner.infer(merged.inputs, innerOptions);
      } finally {
        computeMs = performance.now() - t0;
        est.learn(items, computeMs);
        // Counted before the callers get their answers: their next requests are not company.
        est.observe(est.arrivals - arrivedBefore, computeMs);
      }
      this.#deliver(batch, out, items, padded !== undefined, computeMs, context);
    } catch (err) {
      const e = toServeError(err);
      error = e;
      for (const entry of batch) {
        if (entry.state !== RUNNING) continue;
        this.#detach(entry);
        this.#rejected.failed++;
        entry.reject(e);
      }
    } finally {
      this.#batches++;
      this.#items += items;
      if (!error) this.#countSize(items, computeMs);
      this.#requests += n;
      est.countBatch(n);
      const meanWait = waitSum / n;
      this.#avgQueueMs = this.#batches === 1 ? meanWait : this.#avgQueueMs * 0.9 + meanWait * 0.1;
      this.#avgComputeMs = this.#batches === 1 ? computeMs : this.#avgComputeMs * 0.9 + computeMs * 0.1;
      if (this.#onBatch || this.events.listenerCount('batch') > 0) {
        const event: BatchEvent = {
          size: items,
          requests: n,
          reason,
          queueMs: meanWait,
          maxQueueMs: waitMax,
          computeMs,
          queueSize,
        };
        if (padded) event.padded = padded;
        if (error) event.error = error;
        this.#emit(event);
      }
      this.#free(performance.now());
    }
  }

  #deliver(
    batch: Entry[],
    out: Tensors,
    items: number,
    padded: boolean,
    computeMs: number,
    ctx: InferContext,
  ): void {
    const plan = this.#plan;
    checkRows(plan, out, items);
    const names = Object.keys(out);
    const alone = batch.length === 1;
    let now = 0;
    let row = 0;
    for (const e of batch) {
      const start = row;
      row += e.rows;
      if (e.state !== RUNNING) continue;
      const result = share(plan, out, names, e, start, row, alone, padded);
      const o = e.options;
      if (o === undefined) {
        e.state = DONE;
        e.resolve(result);
        continue;
      }
      this.#detach(e);
      if (o.deadline !== undefined) {
        now ||= Date.now();
        if (now > o.deadline) {
          this.#rejected.deadline++;
          e.reject(deadlineExceeded('the request deadline passed while its batch ran'));
          continue;
        }
      }
      const c = o.context;
      if (c) {
        c.batchSize = items;
        c.computeMs = computeMs;
        for (const k in ctx) if (c[k] === undefined) c[k] = ctx[k];
      }
      e.resolve(result);
    }
  }

  async #dispose(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    const err = unavailable(`model "${this.#plan.meta.name}" is shutting down`);
    this.#queue.clear((e) => {
      this.#detach(e);
      e.reject(err);
    });
    if (this.#running > 0) await new Promise<void>((r) => (this.#drained = r));
  }
}
