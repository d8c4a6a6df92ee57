import { checkPositiveInteger, isPositiveInteger } from '@mlserve/core';

/** Why a batch left the queue. */
export type ReleaseReason =
  /** It reached `maxBatchSize` items. */
  | 'full'
  /** It reached one of `preferredBatchSizes`. */
  | 'preferred'
  /** Its oldest request waited `maxDelayMs` (or, with `'auto'`, the adaptive wait ran out). */
  | 'timer'
  /** A request in it would otherwise miss its deadline. */
  | 'deadline'
  /** A batch slot was free and waiting for company was not worth it (`maxDelayMs: 0`, or `'auto'`). */
  | 'idle';

/**
 * Where an output dim follows an input dim that may be padded, so its padding is cut off per request.
 *
 * @example
 * ```ts
 * batching({ trimOutputs: { hidden: [{ dim: 1, input: 'input_ids', inputDim: 1 }] } });
 * ```
 */
export interface OutputTrim {
  /** The output's dim (>= 1). */
  dim: number;
  /** The input whose length that dim follows. */
  input: string;
  /** That input's dim (>= 1). */
  inputDim: number;
}

/**
 * One batch, as the `batch` event and `onBatch` report it (once per batch, never per request).
 *
 * @example
 * ```ts
 * served.events.on('batch', (b) => histogram.observe({ reason: b.reason }, b.size));
 * ```
 */
export interface BatchEvent {
  /** Items (rows along dim 0) in the batch. */
  size: number;
  /** Requests in the batch. */
  requests: number;
  reason: ReleaseReason;
  /** Mean time the batch's requests waited in the queue, ms. */
  queueMs: number;
  /** Longest time one of them waited, ms. */
  maxQueueMs: number;
  /** The inner model's time for the batch, ms. */
  computeMs: number;
  /** Items still queued after this batch was formed. */
  queueSize: number;
  /** The padded length of each padded input dim, when padding happened (`input_ids[1]: 12`). */
  padded?: Record<string, number>;
  /** Set when the inner model failed the batch. */
  error?: Error;
}

/**
 * Counters under `stats().batching`.
 *
 * @example
 * ```ts
 * const { averageBatchSize, queueSize, releases } = served.stats!().batching as BatchingStats;
 * ```
 */
export interface BatchingStats {
  /** Items waiting. */
  queueSize: number;
  /** Requests waiting. */
  queuedRequests: number;
  /** Batches running in the inner model now. */
  inFlight: number;
  /** Batches run (successful or not). */
  batches: number;
  /** Items run. */
  items: number;
  /** Requests run. */
  requests: number;
  /** items / batches (0 before the first batch). */
  averageBatchSize: number;
  /** Batches by release reason. */
  releases: Record<ReleaseReason, number>;
  /** Requests that left without running, by why. */
  rejected: { queueFull: number; deadline: number; cancelled: number; invalid: number; failed: number };
  /** Mean queue wait per request, ms (exponentially weighted). */
  queueMs: number;
  /** Mean batch compute time, ms (exponentially weighted). */
  computeMs: number;
  /** The wait `'auto'` currently aims for, ms (the fixed `maxDelayMs` otherwise). */
  delayMs: number;
  /**
   * The load signal `'auto'` reads: how long every compute slot has been busy back to back (gaps
   * under 1 ms count as busy), ms; 0 when a slot has been idle for longer.
   */
  busyMs: number;
  /** Effective limits. */
  maxBatchSize: number;
  maxConcurrentBatches: number;
  /**
   * Successful inner calls by the rows they carried (ascending): how many, and their compute time
   * in total, ms. The source of Triton's per-batch-size statistics (`batch_stats`).
   */
  batchSizes: { size: number; count: number; computeMs: number }[];
}

/**
 * Options of {@link batching}; every one is optional and validated when `batching()` is called.
 *
 * @example
 * ```ts
 * const options: BatchingOptions = { maxBatchSize: 32, maxDelayMs: 'auto', maxLatencyMs: 5, maxQueue: 2048, rejectStatus: 503 };
 * const served = pipeline(model, batching(options));
 * ```
 */
export interface BatchingOptions {
  /**
   * The most items (rows along dim 0, summed over requests) in one batch. Default: 64, and never
   * above the model's own `maxBatchSize`.
   */
  maxBatchSize?: number;
  /**
   * The longest the model may sit idle waiting for company, ms: a request that arrives while a
   * compute slot is free waits up to this long for others (unless the batch fills first). Requests
   * that queued while every slot was busy are released the moment one frees, whatever this says:
   * they have waited already. 0 never waits. `'auto'` (default) never waits while the model is busy
   * back to back, and otherwise only while the expected next arrival is cheaper than another model
   * call, learned from the measured batch latency and arrival rate.
   */
  maxDelayMs?: number | 'auto';
  /** The most a request may wait in the queue for company under `'auto'`, ms. Default 10. */
  maxLatencyMs?: number;
  /** Batch sizes the model runs best at: a batch is released as soon as one is reached. */
  preferredBatchSizes?: readonly number[];
  /** The most items waiting; beyond it a request is rejected at once with RESOURCE_EXHAUSTED. Default 4096. */
  maxQueue?: number;
  /** @deprecated use `maxQueue` */
  maxQueueSize?: number;
  /** HTTP status of that rejection: 429 (default) or 503. */
  rejectStatus?: 429 | 503;
  /**
   * Batches in flight to the inner model at once (its compute slots). Default: the model's
   * `metadata().concurrency`, which says where it runs: 1 for a model computing on the calling thread
   * (an onnxruntime session), the thread count for a worker pool.
   */
  maxConcurrentBatches?: number;
  /**
   * How fast a waiting request gains priority, ms per level: a request of priority 0 that waited
   * this long competes as priority 1, so lower levels never starve. Default 100.
   */
  priorityAgingMs?: number;
  /** Pad values per input, over the model's `TensorInfo.padValue`. */
  padValues?: Record<string, number | bigint>;
  /**
   * Requests whose variable dims (dynamic dims after 0) differ: `'pad'` to the longest (needs a pad
   * value for each such input) or `'bucket'` (only equal shapes share a batch). Default: `'pad'`
   * where every variable input has a pad value, else `'bucket'`.
   */
  variableLength?: 'pad' | 'bucket';
  /**
   * Output dims to cut back to each request's own length after padding, by output name. Default:
   * output dims whose `dimNames` name a padded input dim (`sequence`).
   */
  trimOutputs?: Record<string, readonly OutputTrim[]>;
  /** Called after every batch (the same object as the `batch` event). */
  onBatch?: (event: BatchEvent) => void;
}

function nonNegative(v: unknown): boolean {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0;
}

/** Throws a TypeError naming the first bad option. */
export function validateOptions(options: BatchingOptions): void {
  if (typeof options !== 'object' || options === null)
    throw new TypeError('batching: options must be an object');
  const o = options;
  checkPositiveInteger(o.maxBatchSize, 'maxBatchSize', 'batching');
  if (o.maxDelayMs !== undefined && o.maxDelayMs !== 'auto' && !nonNegative(o.maxDelayMs)) {
    throw new TypeError("batching: options.maxDelayMs must be a non-negative number or 'auto'");
  }
  if (o.maxLatencyMs !== undefined && !(nonNegative(o.maxLatencyMs) && o.maxLatencyMs > 0)) {
    throw new TypeError('batching: options.maxLatencyMs must be a positive number');
  }
  if (o.preferredBatchSizes !== undefined) {
    if (!Array.isArray(o.preferredBatchSizes) || !o.preferredBatchSizes.every(isPositiveInteger)) {
      throw new TypeError('batching: options.preferredBatchSizes must be an array of positive integers');
    }
  }
  checkPositiveInteger(o.maxQueue, 'maxQueue', 'batching');
  checkPositiveInteger(o.maxQueueSize, 'maxQueueSize', 'batching');
  if (o.rejectStatus !== undefined && o.rejectStatus !== 429 && o.rejectStatus !== 503) {
    throw new TypeError('batching: options.rejectStatus must be 429 or 503');
  }
  checkPositiveInteger(o.maxConcurrentBatches, 'maxConcurrentBatches', 'batching');
  if (o.priorityAgingMs !== undefined && !(nonNegative(o.priorityAgingMs) && o.priorityAgingMs > 0)) {
    throw new TypeError('batching: options.priorityAgingMs must be a positive number');
  }
  if (o.padValues !== undefined) {
    if (typeof o.padValues !== 'object' || o.padValues === null) {
      throw new TypeError('batching: options.padValues must be an object of numbers or bigints');
    }
    for (const [k, v] of Object.entries(o.padValues)) {
      if (typeof v !== 'bigint' && !(typeof v === 'number' && Number.isFinite(v))) {
        throw new TypeError(`batching: options.padValues["${k}"] must be a finite number or a bigint`);
      }
    }
  }
  if (o.variableLength !== undefined && o.variableLength !== 'pad' && o.variableLength !== 'bucket') {
    throw new TypeError("batching: options.variableLength must be 'pad' or 'bucket'");
  }
  if (o.trimOutputs !== undefined) {
    if (typeof o.trimOutputs !== 'object' || o.trimOutputs === null) {
      throw new TypeError('batching: options.trimOutputs must be an object');
    }
    for (const [k, list] of Object.entries(o.trimOutputs)) {
      const ok =
        Array.isArray(list) &&
        list.every(
          (t: OutputTrim) =>
            typeof t === 'object' &&
            t !== null &&
            isPositiveInteger(t.dim) &&
            isPositiveInteger(t.inputDim) &&
            typeof t.input === 'string',
        );
      if (!ok) {
        throw new TypeError(
          `batching: options.trimOutputs["${k}"] must be an array of { dim, input, inputDim } (dims >= 1)`,
        );
      }
    }
  }
  if (o.onBatch !== undefined && typeof o.onBatch !== 'function') {
    throw new TypeError('batching: options.onBatch must be a function');
  }
}
