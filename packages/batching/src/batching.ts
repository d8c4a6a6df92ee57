import { EventEmitter } from 'node:events';
import {
  cancelledFrom,
  cloneTensor,
  concat,
  deadlineExceeded,
  expiredError,
  type InferContext,
  type InferOptions,
  internal,
  type Model,
  type ModelMetadata,
  mergeOptions,
  parametersKey,
  payloadTooLarge,
  ServeError,
  SharedSignal,
  sliceRows,
  type Tensor,
  type TensorInfo,
  type Tensors,
  TYPED_ARRAY,
  toServeError,
  unavailable,
  validateRequest,
  wrap,
} from '@mlserve/core';
import {
  type BatchEvent,
  type BatchingOptions,
  type BatchingStats,
  type OutputTrim,
  type ReleaseReason,
  validateOptions,
} from './options.js';
import { concatPadded, sliceTrimmed } from './tensors.js';

/** Events of a batching layer: one `batch` per batch run (never one per request). */
export interface BatchingEvents {
  batch: [BatchEvent];
}

/**
 * The model {@link batching} returns: a Model plus its `events`.
 *
 * @example
 * ```ts
 * const served: BatchingModel = batching({ maxBatchSize: 64 })(model);
 * served.events.on('batch', (b) => console.log(b.size, b.reason));
 * ```
 */
export interface BatchingModel extends Model {
  /** Emits `batch` after every batch, with its size, release reason, queue wait and compute time. */
  readonly events: EventEmitter<BatchingEvents>;
}

const QUEUED = 0;
const RUNNING = 1;
const DONE = 2;

/** Timer decisions tolerate this much early firing (libuv rounds timers to whole ms). */
const TIMER_SLACK_MS = 0.5;
/** A batch waiting for company leaves this long (plus its expected compute) before a member's deadline. */
const DEADLINE_MARGIN_MS = 10;
/** Weight of each new batch in the latency estimates. */
const ALPHA = 0.1;
/**
 * Decay of the arrival-rate sums per observation window (a batch's execution, or a wait for
 * company): the estimate follows roughly the last 1 / (1 - decay) windows.
 */
const RATE_DECAY = 0.9;

/** Rows `start` to `end` as a copy (core's sliceRows without the checks: the bounds are ours). */
function rowsOf(t: Tensor, start: number, end: number): Tensor {
  const per = t.data.length / t.dims[0]!;
  const dims = t.dims.slice();
  dims[0] = end - start;
  return { type: t.type, dims, data: (t.data as Float32Array).slice(start * per, end * per) } as Tensor;
}

/** One request (or one chunk of an oversized one) waiting in or running through the batcher. */
class Entry {
  state = QUEUED;
  shared: SharedSignal | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;
  resolve!: (out: Tensors) => void;
  reject!: (err: unknown) => void;
  constructor(
    readonly inputs: Tensors,
    readonly options: InferOptions | undefined,
    readonly rows: number,
    readonly group: Group,
    readonly enqueuedAt: number,
    /** The deadline on the performance.now() scale; Infinity when none. */
    readonly deadlineAt: number,
    readonly priority: number,
    readonly seq: number,
  ) {}
}

/** Requests that may share a batch: equal parameters, equal unbatched inputs, (bucketing) equal shapes. */
class Group {
  entries: Entry[] = [];
  items = 0;
  /** Entries with a priority other than 0 (FIFO is exact when there are none). */
  prioritized = 0;
  earliestDeadline = Number.POSITIVE_INFINITY;
  lastArrival = 0;
  constructor(readonly key: string) {}
}

interface VariableInput {
  name: string;
  dims: number[];
  pad: number | bigint | undefined;
}

/**
 * Dynamic batching: concurrent requests to the inner model are merged along dim 0 into one call
 * and the outputs are split back, each caller getting exactly its rows (and only the outputs it
 * asked for). Requests are validated before they queue, so one bad request never fails its
 * neighbours; requests whose deadline passes or whose signal aborts leave the queue at once and never
 * reach the model. One timer per queue; no per-request timer, no per-request event.
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
export function batching(options: BatchingOptions = {}): (inner: Model) => BatchingModel {
  validateOptions(options);
  return (inner) => new Batcher(inner, options).model;
}

class Batcher {
  readonly model: BatchingModel;
  readonly events = new EventEmitter<BatchingEvents>();
  readonly #inner: Model;
  readonly #meta: ModelMetadata;
  readonly #passthrough: boolean;
  readonly #maxBatch: number;
  readonly #maxConcurrent: number;
  readonly #maxQueue: number;
  readonly #rejectStatus: 429 | 503;
  readonly #fixedDelay: number | undefined;
  readonly #maxLatency: number;
  readonly #agingMs: number;
  readonly #preferred: number[];
  readonly #preferredSet: Set<number>;
  readonly #onBatch: ((e: BatchEvent) => void) | undefined;
  readonly #batchedInputs: TensorInfo[];
  readonly #unbatchedInputs: TensorInfo[];
  readonly #firstBatched: string;
  readonly #variable: VariableInput[];
  readonly #bucket: boolean;
  /** Padded dims that share a name (`sequence` of input_ids and attention_mask): equal per request. */
  readonly #ties: { a: string; da: number; b: string; db: number }[] = [];
  readonly #trims: Map<string, readonly OutputTrim[]>;
  readonly #unbatchedOutputs: Set<string>;
  readonly #ctors: (abstract new (
    ...args: never[]
  ) => unknown)[];

  readonly #groups = new Map<string, Group>();
  #queuedItems = 0;
  #queuedRequests = 0;
  #inFlight = 0;
  #seq = 0;
  #closed = false;
  #earliestDeadline = Number.POSITIVE_INFINITY;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #immediate: ReturnType<typeof setImmediate> | undefined;
  readonly #running = new Set<Promise<void>>();
  /** Running requests that have a deadline: the timer also rejects them when it passes. */
  readonly #runningDeadlines = new Set<Entry>();

  // Estimates: batch compute time ~ a + b * items (weighted least squares on recent batches).
  #sn = 0;
  #st = 0;
  #snn = 0;
  #snt = 0;
  #fitted = false;
  #costFixed = 0;
  #costPerItem = 0;
  // Arrival rate of *other* callers' items: items that arrived while a batch ran or while the
  // queue waited for company, over the time those windows lasted (decayed sums). Time when the
  // batcher is idle is not counted: a caller blocked on its own request cannot arrive then, so a
  // closed-loop caller's re-submission right after its answer would look like a stream.
  #arrivals = 0;
  #rateItems = 0;
  #rateMs = 0;
  // Requests per batch, moving average: about 1 while callers come one at a time.
  #avgRequests = 1;

  // Counters.
  #batches = 0;
  #items = 0;
  #requests = 0;
  #releases: Record<ReleaseReason, number> = { full: 0, preferred: 0, timer: 0, deadline: 0, idle: 0 };
  #rejected = { queueFull: 0, deadline: 0, cancelled: 0, invalid: 0, failed: 0 };
  #avgQueueMs = 0;
  #avgComputeMs = 0;

  constructor(inner: Model, options: BatchingOptions) {
    this.#inner = inner;
    const meta = inner.metadata();
    this.#meta = meta;
    this.#batchedInputs = meta.inputs.filter((i) => i.batched);
    this.#unbatchedInputs = meta.inputs.filter((i) => !i.batched);
    this.#firstBatched = this.#batchedInputs[0]?.name ?? '';
    this.#passthrough = meta.maxBatchSize <= 0 || this.#batchedInputs.length === 0;
    this.#maxBatch = Math.max(
      1,
      Math.min(options.maxBatchSize ?? 64, meta.maxBatchSize > 0 ? meta.maxBatchSize : 1),
    );
    this.#maxConcurrent = options.maxConcurrentBatches ?? Math.max(1, Math.floor(meta.concurrency) || 1);
    this.#maxQueue = options.maxQueueSize ?? 4096;
    this.#rejectStatus = options.rejectStatus ?? 429;
    const delay = options.maxDelayMs ?? 'auto';
    this.#fixedDelay = delay === 'auto' ? undefined : delay;
    this.#maxLatency = options.maxLatencyMs ?? 10;
    this.#agingMs = options.priorityAgingMs ?? 100;
    this.#preferred = [...new Set(options.preferredBatchSizes ?? [])]
      .filter((p) => p <= this.#maxBatch)
      .sort((a, b) => a - b);
    this.#preferredSet = new Set(this.#preferred);
    this.#onBatch = options.onBatch;
    this.#ctors = meta.inputs.map((i) => (i.type === 'string' ? Array : TYPED_ARRAY[i.type]));
    this.#unbatchedOutputs = new Set(meta.outputs.filter((o) => !o.batched).map((o) => o.name));

    // Variable-length inputs: dynamic dims after the batch dim.
    this.#variable = [];
    for (const info of this.#batchedInputs) {
      const dims: number[] = [];
      for (let d = 1; d < info.dims.length; d++) if (info.dims[d]! < 0) dims.push(d);
      if (dims.length > 0) {
        const pad = options.padValues?.[info.name] ?? info.padValue;
        this.#variable.push({ name: info.name, dims, pad: info.type === 'string' ? undefined : pad });
      }
    }
    const padsKnown = this.#variable.every((v) => v.pad !== undefined);
    const mode = options.variableLength ?? (padsKnown ? 'pad' : 'bucket');
    if (mode === 'pad' && !padsKnown) {
      const missing = this.#variable.find((v) => v.pad === undefined)!;
      throw new TypeError(
        `options.variableLength 'pad' needs a pad value for input "${missing.name}" (options.padValues or the model's padValue)`,
      );
    }
    this.#bucket = mode === 'bucket' && this.#variable.length > 0;
    if (!this.#bucket) {
      const named: { input: string; dim: number; name: string }[] = [];
      for (const v of this.#variable) {
        const info = meta.inputs.find((i) => i.name === v.name)!;
        for (const d of v.dims) {
          const name = info.dimNames?.[d];
          if (name) named.push({ input: v.name, dim: d, name });
        }
      }
      for (let i = 0; i < named.length; i++) {
        for (let k = i + 1; k < named.length; k++) {
          const x = named[i]!;
          const y = named[k]!;
          if (x.name === y.name) this.#ties.push({ a: x.input, da: x.dim, b: y.input, db: y.dim });
        }
      }
    }
    this.#trims = new Map();
    if (mode === 'pad' && this.#variable.length > 0) {
      if (options.trimOutputs) {
        for (const [name, list] of Object.entries(options.trimOutputs)) this.#trims.set(name, list);
      } else {
        for (const out of meta.outputs) {
          const list: OutputTrim[] = [];
          out.dimNames?.forEach((dimName, dim) => {
            if (dim === 0 || !dimName) return;
            for (const v of this.#variable) {
              const info = meta.inputs.find((i) => i.name === v.name)!;
              const inputDim = v.dims.find((d) => info.dimNames?.[d] === dimName);
              if (inputDim !== undefined) {
                list.push({ dim, input: v.name, inputDim });
                return;
              }
            }
          });
          if (list.length > 0) this.#trims.set(out.name, list);
        }
      }
    }

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
    return {
      queueSize: this.#queuedItems,
      queuedRequests: this.#queuedRequests,
      inFlight: this.#inFlight,
      batches: this.#batches,
      items: this.#items,
      requests: this.#requests,
      averageBatchSize: this.#batches === 0 ? 0 : this.#items / this.#batches,
      releases: { ...this.#releases },
      rejected: { ...this.#rejected },
      queueMs: this.#avgQueueMs,
      computeMs: this.#avgComputeMs,
      delayMs: this.#fixedDelay ?? this.#autoDelayNow(),
      maxBatchSize: this.#maxBatch,
      maxConcurrentBatches: this.#maxConcurrent,
    };
  }

  infer(inputs: Tensors, options?: InferOptions): Promise<Tensors> {
    try {
      if (this.#closed) throw unavailable(`model "${this.#meta.name}" is shutting down`);
      if (options?.outputs || !this.#quickValid(inputs)) {
        try {
          validateRequest(this.#meta, inputs, options);
        } catch (err) {
          this.#rejected.invalid++;
          throw err;
        }
      }
      if (this.#passthrough) return this.#inner.infer(inputs, options);
      const expired =
        options && (options.signal || options.deadline !== undefined) ? expiredError(options) : undefined;
      if (expired) {
        if (expired.code === 'CANCELLED') this.#rejected.cancelled++;
        else this.#rejected.deadline++;
        throw expired;
      }
      const rows = inputs[this.#firstBatched]!.dims[0]!;
      if (rows === 0) return this.#inner.infer(inputs, options);
      if (rows > this.#maxQueue) {
        this.#rejected.queueFull++;
        throw payloadTooLarge(
          `a request of ${rows} rows is larger than the queue (maxQueueSize ${this.#maxQueue})`,
        );
      }
      if (this.#queuedItems + rows > this.#maxQueue) throw this.#queueFull(rows);
      if (options?.deadline !== undefined && this.#fitted) {
        const left = options.deadline - Date.now();
        if (left < this.#expected(Math.min(rows, this.#maxBatch))) {
          this.#rejected.deadline++;
          throw deadlineExceeded(
            `the request cannot finish before its deadline (${Math.max(0, Math.round(left))} ms left, a batch takes about ${this.#expected(rows).toFixed(1)} ms); it was not started`,
          );
        }
      }
      if (rows > this.#maxBatch) return this.#split(inputs, options, rows);
      // Idle fast path ('auto' only): the model is idle, nothing is queued and recent batches held
      // one request each, so no company is expected. The request goes straight to the model as a
      // batch of its own, without queueing, copying or the hop to the next turn of the event loop.
      if (
        this.#fixedDelay === undefined &&
        this.#inFlight === 0 &&
        this.#queuedRequests === 0 &&
        this.#avgRequests < 1.5 &&
        this.#expectedGap() * rows >= this.#costFixed
      ) {
        const run = this.#direct(inputs, options, rows);
        const done = run.then(
          () => {},
          () => {},
        );
        this.#running.add(done);
        done.finally(() => this.#running.delete(done));
        return run;
      }
      return this.#enqueue(inputs, options, rows);
    } catch (err) {
      return Promise.reject(toServeError(err));
    }
  }

  /**
   * The common case of core's validateRequest without building any message: every declared input
   * present with the right type, rank, fixed dims and data length, nothing unknown. When it says
   * no, validateRequest runs and throws the exact error.
   */
  #quickValid(inputs: Tensors): boolean {
    if (typeof inputs !== 'object' || inputs === null) return false;
    const specs = this.#meta.inputs;
    let rows = -1;
    for (let i = 0; i < specs.length; i++) {
      const info = specs[i]!;
      const t = inputs[info.name];
      if (typeof t !== 'object' || t === null || t.type !== info.type) return false;
      const dims = t.dims;
      if (!Array.isArray(dims) || dims.length !== info.dims.length) return false;
      let n = 1;
      for (let d = 0; d < dims.length; d++) {
        const v = dims[d];
        if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) return false;
        const want = info.dims[d]!;
        if (want >= 0 && v !== want) return false;
        n *= v;
      }
      if (info.batched) {
        if (rows < 0) rows = dims[0]!;
        else if (rows !== dims[0]) return false;
      }
      const data = t.data as unknown as { length: number };
      if (info.type === 'string' || !(data instanceof this.#ctors[i]!) || data.length !== n) return false;
    }
    let count = 0;
    for (const k in inputs) {
      if (!Object.hasOwn(inputs, k)) return false;
      count++;
    }
    return count === specs.length;
  }

  #queueFull(rows: number): ServeError {
    this.#rejected.queueFull++;
    const batchesAhead = Math.ceil((this.#queuedItems + rows) / this.#maxBatch);
    const perBatch = this.#fitted ? this.#costFixed + this.#costPerItem * this.#maxBatch : 1;
    const retryAfterMs = Math.max(1, Math.ceil((batchesAhead * perBatch) / this.#maxConcurrent));
    return new ServeError(
      'RESOURCE_EXHAUSTED',
      `model "${this.#meta.name}" is overloaded: ${this.#queuedItems} items queued (limit ${this.#maxQueue})`,
      {
        status: this.#rejectStatus,
        retryAfterMs,
        details: { queueSize: this.#queuedItems, maxQueueSize: this.#maxQueue },
      },
    );
  }

  /** A request larger than a batch runs as several chunks whose outputs are joined back. */
  async #split(inputs: Tensors, options: InferOptions | undefined, rows: number): Promise<Tensors> {
    const parts: Promise<Tensors>[] = [];
    for (let start = 0; start < rows; start += this.#maxBatch) {
      const end = Math.min(rows, start + this.#maxBatch);
      const chunk: Tensors = {};
      for (const [name, t] of Object.entries(inputs)) {
        chunk[name] = this.#unbatchedInputs.some((i) => i.name === name) ? t : sliceRows(t, start, end);
      }
      parts.push(this.#enqueue(chunk, options, end - start));
    }
    const results = await Promise.all(parts);
    const out: Tensors = {};
    for (const name of Object.keys(results[0]!)) {
      out[name] = this.#unbatchedOutputs.has(name)
        ? results[0]![name]!
        : concat(results.map((r) => r[name]!));
    }
    return out;
  }

  #groupKey(inputs: Tensors, options: InferOptions | undefined): string {
    let key = options?.parameters ? parametersKey(options.parameters) : '';
    for (const info of this.#unbatchedInputs) {
      const t = inputs[info.name]!;
      key += `|${info.name}:${t.dims.join(',')}:${Array.prototype.join.call(t.data, ',')}`;
    }
    if (this.#bucket) {
      for (const v of this.#variable) key += `|${inputs[v.name]!.dims.join(',')}`;
    } else {
      // A request whose padded dims disagree with each other (ids of 5 tokens, a mask of 4) is not
      // padded into other requests' batch: if the model fails on it, it fails only with its like.
      for (const t of this.#ties) {
        if (inputs[t.a]!.dims[t.da] !== inputs[t.b]!.dims[t.db]) {
          for (const v of this.#variable) key += `|!${inputs[v.name]!.dims.join(',')}`;
          break;
        }
      }
    }
    return key;
  }

  #enqueue(inputs: Tensors, options: InferOptions | undefined, rows: number): Promise<Tensors> {
    const now = performance.now();
    const key = this.#groupKey(inputs, options);
    let group = this.#groups.get(key);
    if (!group) {
      group = new Group(key);
      this.#groups.set(key, group);
    }
    const deadlineAt =
      options?.deadline === undefined ? Number.POSITIVE_INFINITY : options.deadline - performance.timeOrigin;
    const priority = options?.priority ?? 0;
    const entry = new Entry(inputs, options, rows, group, now, deadlineAt, priority, this.#seq++);
    const promise = new Promise<Tensors>((resolve, reject) => {
      entry.resolve = resolve;
      entry.reject = reject;
    });
    const signal = options?.signal;
    if (signal) {
      entry.onAbort = () => this.#abort(entry, signal);
      signal.addEventListener('abort', entry.onAbort, { once: true });
    }
    group.entries.push(entry);
    group.items += rows;
    group.lastArrival = now;
    if (priority !== 0) group.prioritized++;
    if (deadlineAt < group.earliestDeadline) group.earliestDeadline = deadlineAt;
    if (deadlineAt < this.#earliestDeadline) this.#earliestDeadline = deadlineAt;
    this.#queuedItems += rows;
    this.#queuedRequests++;
    this.#arrivals += rows;
    this.#immediate ??= setImmediate(this.#pump);
    return promise;
  }

  /** Takes an entry out of its group's queue (it was aborted or expired). */
  #unqueue(entry: Entry): void {
    const g = entry.group;
    const i = g.entries.indexOf(entry);
    if (i >= 0) g.entries.splice(i, 1);
    this.#forget(g, entry);
    if (g.entries.length === 0) this.#groups.delete(g.key);
    else if (entry.deadlineAt === g.earliestDeadline) {
      let min = Number.POSITIVE_INFINITY;
      for (const e of g.entries) if (e.deadlineAt < min) min = e.deadlineAt;
      g.earliestDeadline = min;
    }
  }

  #forget(g: Group, entry: Entry): void {
    g.items -= entry.rows;
    if (entry.priority !== 0) g.prioritized--;
    this.#queuedItems -= entry.rows;
    this.#queuedRequests--;
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
    if (!wasRunning) this.#unqueue(entry);
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

  /** Rejects every queued request whose deadline has passed. */
  #sweep(now: number): void {
    let earliest = Number.POSITIVE_INFINITY;
    for (const g of this.#groups.values()) {
      if (g.earliestDeadline > now) {
        if (g.earliestDeadline < earliest) earliest = g.earliestDeadline;
        continue;
      }
      let min = Number.POSITIVE_INFINITY;
      const keep: Entry[] = [];
      for (const e of g.entries) {
        if (e.deadlineAt <= now) {
          this.#forget(g, e);
          this.#detach(e);
          this.#rejected.deadline++;
          e.reject(deadlineExceeded('the request deadline passed while it was queued for a batch'));
        } else {
          keep.push(e);
          if (e.deadlineAt < min) min = e.deadlineAt;
        }
      }
      g.entries = keep;
      g.earliestDeadline = min;
      if (keep.length === 0) this.#groups.delete(g.key);
      if (min < earliest) earliest = min;
    }
    this.#earliestDeadline = earliest;
  }

  readonly #pump = (): void => {
    this.#immediate = undefined;
    if (this.#closed) return;
    const now = performance.now();
    if (now >= this.#earliestDeadline) this.#sweep(now);
    if (this.#runningDeadlines.size > 0) this.#expireRunning(now);
    while (this.#inFlight < this.#maxConcurrent && this.#queuedRequests > 0) {
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

  /** Expected compute time of a batch of `items`, ms (0 before anything was measured). */
  #expected(items: number): number {
    return this.#fitted ? this.#costFixed + this.#costPerItem * items : 0;
  }

  /** Records an observation window: `items` arrived in `ms` while the batcher was busy or waiting. */
  #observe(items: number, ms: number): void {
    if (!(ms > 0)) return;
    this.#rateItems = this.#rateItems * RATE_DECAY + items;
    this.#rateMs = this.#rateMs * RATE_DECAY + ms;
  }

  /**
   * Expected gap between arriving items from other callers, ms; Infinity when none are expected
   * (nothing measured yet, or nothing arrived in the recent windows: a lone sequential caller).
   */
  #expectedGap(): number {
    if (!this.#fitted || this.#rateItems < 0.5) return Number.POSITIVE_INFINITY;
    return this.#rateMs / this.#rateItems;
  }

  /** The auto policy's current wait for a group of one item, for stats. */
  #autoDelayNow(): number {
    const gap = this.#expectedGap();
    return gap < this.#costFixed ? Math.min(this.#maxLatency, 2 * gap) : 0;
  }

  /**
   * Until when the group should wait for company (performance.now() scale); -1 to release now.
   * Fixed delay: oldest + maxDelayMs. Auto: wait while the expected gap to the next arrival from
   * another caller, paid by each of the n queued items, is below the per-call overhead that
   * arrival would save; never when no other caller has been seen arriving lately.
   */
  #waitUntil(g: Group): number {
    const oldest = g.entries[0]!.enqueuedAt;
    if (this.#fixedDelay !== undefined) return this.#fixedDelay === 0 ? -1 : oldest + this.#fixedDelay;
    const gap = this.#expectedGap();
    if (g.items * gap >= this.#costFixed) return -1;
    return Math.min(oldest + this.#maxLatency, g.lastArrival + 2 * gap);
  }

  #reason(g: Group, now: number): ReleaseReason | undefined {
    if (g.items >= this.#maxBatch) return 'full';
    if (this.#preferred.length > 0) {
      if (this.#preferredSet.has(g.items) || g.items >= this.#preferred[this.#preferred.length - 1]!) {
        return 'preferred';
      }
    }
    const until = this.#waitUntil(g);
    if (until < 0) return 'idle';
    if (now + TIMER_SLACK_MS >= until) return 'timer';
    if (g.earliestDeadline !== Number.POSITIVE_INFINITY) {
      if (now + this.#expected(g.items) + TIMER_SLACK_MS >= g.earliestDeadline - DEADLINE_MARGIN_MS)
        return 'deadline';
    }
    return undefined;
  }

  /** When the group becomes ready by time alone (timer or deadline). */
  #readyAt(g: Group): number {
    const until = this.#waitUntil(g);
    let at = Math.max(until, 0);
    if (g.earliestDeadline !== Number.POSITIVE_INFINITY) {
      const d = g.earliestDeadline - DEADLINE_MARGIN_MS - this.#expected(g.items);
      if (d < at) at = d;
    }
    return at;
  }

  /** Arms the single timer for the next moment something is due (a release or an expiry). */
  #arm(now: number): void {
    let at = this.#earliestDeadline;
    for (const e of this.#runningDeadlines) if (e.deadlineAt < at) at = e.deadlineAt;
    if (this.#inFlight < this.#maxConcurrent) {
      for (const g of this.#groups.values()) {
        const r = this.#readyAt(g);
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
    if (this.#timer && this.#timerAt <= at + TIMER_SLACK_MS) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(this.#onTimer, Math.max(1, Math.ceil(at - now)));
  }

  /** Finds the most urgent group that is ready and launches one batch from it; false when none is ready. */
  #launchReady(now: number): boolean {
    let best: Group | undefined;
    let bestReason: ReleaseReason | undefined;
    let bestScore = Number.NEGATIVE_INFINITY;
    for (const g of this.#groups.values()) {
      const reason = this.#reason(g, now);
      if (!reason) continue;
      const score = this.#score(g, now);
      if (score > bestScore) {
        best = g;
        bestReason = reason;
        bestScore = score;
      }
    }
    if (!best || !bestReason) return false;
    this.#launch(best, bestReason, now);
    return true;
  }

  /** Effective priority: priority plus one level per `priorityAgingMs` waited. */
  #effective(e: Entry, now: number): number {
    return e.priority + (now - e.enqueuedAt) / this.#agingMs;
  }

  #score(g: Group, now: number): number {
    if (g.prioritized === 0) return this.#effective(g.entries[0]!, now);
    let max = Number.NEGATIVE_INFINITY;
    for (const e of g.entries) {
      const s = this.#effective(e, now);
      if (s > max) max = s;
    }
    return max;
  }

  #launch(g: Group, reason: ReleaseReason, now: number): void {
    let limit = this.#maxBatch;
    if (reason === 'preferred') {
      for (const p of this.#preferred) if (p <= g.items) limit = p;
    }
    let taken: Entry[];
    if (g.prioritized === 0) {
      let k = 0;
      let items = 0;
      for (const e of g.entries) {
        if (items + e.rows > limit && k > 0) break;
        items += e.rows;
        k++;
      }
      taken = g.entries.splice(0, k);
    } else {
      const order = g.entries.slice().sort((a, b) => {
        const d = this.#effective(b, now) - this.#effective(a, now);
        return d !== 0 ? d : a.seq - b.seq;
      });
      const picked = new Set<Entry>();
      let items = 0;
      for (const e of order) {
        if (items + e.rows > limit) {
          if (picked.size > 0) continue;
        }
        picked.add(e);
        items += e.rows;
        if (items >= limit) break;
      }
      taken = order.filter((e) => picked.has(e));
      g.entries = g.entries.filter((e) => !picked.has(e));
    }
    let recompute = false;
    for (const e of taken) {
      this.#forget(g, e);
      if (e.deadlineAt === g.earliestDeadline) recompute = true;
    }
    if (g.entries.length === 0) this.#groups.delete(g.key);
    else if (recompute) {
      let min = Number.POSITIVE_INFINITY;
      for (const e of g.entries) if (e.deadlineAt < min) min = e.deadlineAt;
      g.earliestDeadline = min;
    }

    // A request that cannot finish before its deadline is not started.
    let items = 0;
    for (const e of taken) items += e.rows;
    const expected = this.#expected(items);
    let batch = taken;
    if (g.earliestDeadline !== Number.POSITIVE_INFINITY || taken.some((e) => e.deadlineAt !== Infinity)) {
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
    if (reason === 'timer' && this.#fixedDelay === undefined) {
      this.#observe(items - taken[0]!.rows, now - taken[0]!.enqueuedAt);
    }
    const run = this.#run(batch, reason, now);
    this.#running.add(run);
    run.finally(() => this.#running.delete(run));
  }

  /**
   * A lone request run as a batch of one, straight on the inner model with the caller's own
   * options (its signal and deadline reach the model as they are); same bookkeeping as #run.
   */
  async #direct(inputs: Tensors, options: InferOptions | undefined, rows: number): Promise<Tensors> {
    this.#inFlight++;
    this.#arrivals += rows;
    const arrivedBefore = this.#arrivals;
    const t0 = performance.now();
    let computeMs = 0;
    let error: ServeError | undefined;
    try {
      const out = await this.#inner.infer(inputs, options);
      for (const name in out) {
        const t = out[name]!;
        if (!this.#unbatchedOutputs.has(name) && t.dims[0] !== rows) {
          throw internal(`output "${name}" has ${t.dims[0] ?? 'no'} rows for a batch of ${rows}`);
        }
      }
      return out;
    } catch (err) {
      error = toServeError(err);
      if (error.code === 'CANCELLED') this.#rejected.cancelled++;
      else if (error.code === 'DEADLINE_EXCEEDED') this.#rejected.deadline++;
      else this.#rejected.failed++;
      throw error;
    } finally {
      computeMs = performance.now() - t0;
      this.#learn(rows, computeMs);
      this.#observe(this.#arrivals - arrivedBefore, computeMs);
      this.#inFlight--;
      this.#batches++;
      this.#items += rows;
      this.#requests++;
      this.#avgRequests += (1 - this.#avgRequests) * ALPHA;
      this.#releases.idle++;
      this.#avgQueueMs = this.#batches === 1 ? 0 : this.#avgQueueMs * (1 - ALPHA);
      this.#avgComputeMs =
        this.#batches === 1 ? computeMs : this.#avgComputeMs * (1 - ALPHA) + computeMs * ALPHA;
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
          queueSize: this.#queuedItems,
        };
        if (error) event.error = error;
        try {
          this.#onBatch?.(event);
        } catch {}
        try {
          this.events.emit('batch', event);
        } catch {}
      }
      if (this.#queuedRequests > 0) this.#kick();
    }
  }

  async #run(batch: Entry[], reason: ReleaseReason, formedAt: number): Promise<void> {
    this.#inFlight++;
    const shared = new SharedSignal();
    let items = 0;
    let waitSum = 0;
    let waitMax = 0;
    const list: (InferOptions | undefined)[] = new Array(batch.length);
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i]!;
      shared.join();
      e.shared = shared;
      e.state = RUNNING;
      if (e.deadlineAt !== Number.POSITIVE_INFINITY) this.#runningDeadlines.add(e);
      items += e.rows;
      const waited = formedAt - e.enqueuedAt;
      waitSum += waited;
      if (waited > waitMax) waitMax = waited;
      list[i] = e.options;
      const ctx = e.options?.context;
      if (ctx) ctx.queueMs = (ctx.queueMs ?? 0) + waited;
    }
    const queueSize = this.#queuedItems;
    let padded: Record<string, number> | undefined;
    let computeMs = 0;
    let error: Error | undefined;
    try {
      const inputs: Tensors = {};
      for (const info of this.#batchedInputs) {
        const parts: Tensor[] = new Array(batch.length);
        for (let i = 0; i < batch.length; i++) parts[i] = batch[i]!.inputs[info.name]!;
        const v =
          this.#variable.length > 0 && !this.#bucket
            ? this.#variable.find((x) => x.name === info.name)
            : undefined;
        if (v) {
          const t = concatPadded(parts, v.pad);
          inputs[info.name] = t;
          for (const d of v.dims) {
            for (const p of parts) {
              if (p.dims[d] !== t.dims[d]) {
                padded ??= {};
                padded[`${info.name}[${d}]`] = t.dims[d]!;
                break;
              }
            }
          }
        } else inputs[info.name] = concat(parts);
      }
      for (const info of this.#unbatchedInputs) inputs[info.name] = batch[0]!.inputs[info.name]!;
      const merged = mergeOptions(list);
      const context: InferContext = {};
      const innerOptions: InferOptions = { signal: shared.signal, priority: merged.priority, context };
      if (merged.deadline !== undefined) innerOptions.deadline = merged.deadline;
      if (merged.outputs) innerOptions.outputs = merged.outputs;
      if (merged.parameters) innerOptions.parameters = merged.parameters;
      const t0 = performance.now();
      const arrivedBefore = this.#arrivals;
      let out: Tensors;
      try {
        out = await this.#inner.infer(inputs, innerOptions);
      } finally {
        computeMs = performance.now() - t0;
        this.#learn(items, computeMs);
        // Counted before the callers get their answers: their next requests are not company.
        this.#observe(this.#arrivals - arrivedBefore, computeMs);
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
      this.#inFlight--;
      this.#batches++;
      this.#items += items;
      this.#requests += batch.length;
      this.#avgRequests += (batch.length - this.#avgRequests) * ALPHA;
      const meanWait = waitSum / batch.length;
      this.#avgQueueMs = this.#batches === 1 ? meanWait : this.#avgQueueMs * (1 - ALPHA) + meanWait * ALPHA;
      this.#avgComputeMs =
        this.#batches === 1 ? computeMs : this.#avgComputeMs * (1 - ALPHA) + computeMs * ALPHA;
      if (this.#onBatch || this.events.listenerCount('batch') > 0) {
        const event: BatchEvent = {
          size: items,
          requests: batch.length,
          reason,
          queueMs: meanWait,
          maxQueueMs: waitMax,
          computeMs,
          queueSize,
        };
        if (padded) event.padded = padded;
        if (error) event.error = error;
        // A listener's failure must not break the batcher (nor keep the other listeners from the event).
        try {
          this.#onBatch?.(event);
        } catch {}
        try {
          this.events.emit('batch', event);
        } catch {}
      }
      if (this.#queuedRequests > 0) this.#kick();
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
    const names = Object.keys(out);
    for (const name of names) {
      const t = out[name]!;
      if (!this.#unbatchedOutputs.has(name) && t.dims[0] !== items) {
        throw internal(`output "${name}" has ${t.dims[0] ?? 'no'} rows for a batch of ${items}`);
      }
    }
    const now = Date.now();
    let row = 0;
    for (const e of batch) {
      const start = row;
      row += e.rows;
      if (e.state !== RUNNING) continue;
      const result: Tensors = {};
      const wanted = e.options?.outputs ?? names;
      for (const name of wanted) {
        const t = out[name];
        if (!t) continue;
        if (this.#unbatchedOutputs.has(name)) {
          result[name] = batch.length === 1 ? t : cloneTensor(t);
          continue;
        }
        const trims = padded ? this.#trims.get(name) : undefined;
        if (trims) {
          const limits: number[] = [];
          for (const tr of trims) limits[tr.dim] = e.inputs[tr.input]?.dims[tr.inputDim] ?? t.dims[tr.dim]!;
          result[name] = sliceTrimmed(t, start, row, limits);
        } else result[name] = batch.length === 1 ? t : rowsOf(t, start, row);
      }
      this.#detach(e);
      if (e.options?.deadline !== undefined && now > e.options.deadline) {
        this.#rejected.deadline++;
        e.reject(deadlineExceeded('the request deadline passed while its batch ran'));
        continue;
      }
      const c = e.options?.context;
      if (c) {
        c.batchSize = items;
        c.computeMs = computeMs;
        for (const k of Object.keys(ctx)) if (c[k] === undefined) c[k] = ctx[k];
      }
      e.resolve(result);
    }
  }

  /** Updates the latency model: a + b * items, by least squares over recent batches. */
  #learn(items: number, ms: number): void {
    const w = this.#fitted ? ALPHA : 1;
    this.#sn += (items - this.#sn) * w;
    this.#st += (ms - this.#st) * w;
    this.#snn += (items * items - this.#snn) * w;
    this.#snt += (items * ms - this.#snt) * w;
    this.#fitted = true;
    const varN = this.#snn - this.#sn * this.#sn;
    let b = 0;
    if (varN > 1e-6 * (this.#snn + 1)) b = Math.max(0, (this.#snt - this.#sn * this.#st) / varN);
    let a = this.#st - b * this.#sn;
    if (a < 0) a = 0;
    if (a > this.#st) a = this.#st;
    this.#costFixed = a;
    this.#costPerItem = b;
  }

  async #dispose(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#timer = undefined;
    this.#immediate = undefined;
    const err = unavailable(`model "${this.#meta.name}" is shutting down`);
    for (const g of this.#groups.values()) {
      for (const e of g.entries) {
        this.#detach(e);
        e.reject(err);
      }
    }
    this.#groups.clear();
    this.#queuedItems = 0;
    this.#queuedRequests = 0;
    await Promise.allSettled([...this.#running]);
  }
}
