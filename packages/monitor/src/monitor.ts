import { performance as eventLoop } from 'node:perf_hooks';
import {
  checkPositiveInteger,
  type GenericMiddleware,
  getOrCreateMetric,
  type InferOptions,
  importOptional,
  invalidArgument,
  type Model,
  renamedOption,
  type Tensors,
  wrap,
} from '@mlserve/core';
import type { Extractor, FeatureEmit, FeatureSpec } from './extractors.js';
import {
  type DecayEvent,
  type FeedbackOptions,
  type FeedbackStats,
  FeedbackTracker,
  joinUnit,
  type QualityReport,
} from './feedback.js';
import { assertProfile, type CategoricalProfile, type NumericProfile, type Profile } from './profile.js';
import type { PayloadSink } from './sink.js';
import { bonferroni, chiSquareHomogeneity, holm, ksPValue, psi } from './stats.js';
import { type CategoricalWindow, type FeatureWindow, type NumericWindow, windowFor } from './window.js';

/**
 * Effect-size floors (all off by default): a feature whose test is significant drifts only if its
 * scores also reach every floor set here, so that very large windows do not alarm on differences
 * too small to matter.
 */
export interface Thresholds {
  /** Population stability index the feature must exceed. */
  psi?: number;
  /** Kolmogorov-Smirnov distance a numeric feature must exceed. */
  ks?: number;
}

/** The live window: the last `size` rows, or the rows of the last `ms` milliseconds. */
export type WindowOptions = { size: number } | { ms: number; maxRows?: number };

/** Options of {@link monitor}. */
export interface MonitorOptions {
  /** The reference (see `profile()` / `loadProfile()`). */
  profile: Profile;
  /** The same extractors the profile was built with. */
  extractors: readonly Extractor[];
  /** Default `{ size: 1000 }`. */
  window?: WindowOptions;
  /**
   * Fraction of requests measured, or `'auto'` (the default): measure every request while that
   * costs less than `budget` of the process's CPU time, and sample fewer when it would cost more.
   */
  sampleRate?: number | 'auto';
  /**
   * With `sampleRate: 'auto'`, the share of the process's CPU time (or of the event loop's idle
   * time, when the server is quiet) the monitor may spend measuring and scoring and, with
   * `feedback` (its `sampleRate: 'auto'`), joining labels (default 0.01).
   */
  budget?: number;
  /**
   * The clocks `sampleRate: 'auto'` reads (for tests and simulations; the default is the real
   * ones): `now()` a monotonic time in ms (timing the monitor's own work), `usage()` the process's
   * CPU time and the event loop's idle time so far, ms.
   */
  clock?: MonitorClock;
  /**
   * Requests waiting to be measured; when full, new ones are dropped and counted (default 256).
   * The same idea as the sinks' and feedback's `maxPending`.
   */
  maxPending?: number;
  /** @deprecated use `maxPending` */
  queueSize?: number;
  /**
   * The chance of a false alarm per evaluation, across all features together (default 0.01): a
   * feature drifts when its test's p-value (KS for numbers, chi-square for categories), adjusted
   * for the number of features tested (`correction`), falls below it.
   */
  alpha?: number;
  /** How p-values are adjusted for testing several features (default `'holm'`). */
  correction?: 'holm' | 'bonferroni' | 'none';
  /** Optional effect-size floors, with per-feature overrides under `features` (see {@link Thresholds}). */
  thresholds?: Thresholds & { features?: Record<string, Thresholds> };
  /** Rows a feature needs in the window before it is tested: no alarm before (default 30). */
  minRows?: number;
  /** Ground truth: join labels with logged predictions by request id (see `feedback()`). */
  feedback?: FeedbackOptions;
  /** Called when the decay alarm (accuracy or error against the baseline) is raised or clears. */
  onDecay?: (event: DecayEvent) => void;
  /** How often scores are recomputed and events fired (default 1000 ms). */
  evaluateEveryMs?: number;
  /** Requests measured per drain turn before yielding to the event loop (default 32). */
  drainBatch?: number;
  /** Prometheus gauges and counters in this prom-client registry. */
  metrics?: { registry: import('prom-client').Registry };
  /** Called when a feature starts or stops drifting. */
  onDrift?: (event: DriftEvent) => void;
  /** Payload logging for retraining. */
  sink?: PayloadSink;
  /** Fraction of requests written to the sink (default 0.01). */
  sinkSampleRate?: number;
}

/** The scores of one feature over the live window. */
export interface FeatureScore {
  kind: 'numeric' | 'categorical';
  /** Rows of this feature in the window. */
  rows: number;
  psi: number;
  /** Numeric features only. */
  ks?: number;
  /** Categorical features only: the chi-square statistic of homogeneity with the reference. */
  chi2?: number;
  chi2PValue?: number;
  /** The test's p-value (KS for numbers, chi-square for categories); NaN before `minRows`. */
  pValue: number;
  /** The p-value adjusted for the number of features tested (`correction`). */
  adjustedPValue: number;
  /** Numeric: the live mean next to the reference's. */
  mean?: number;
  referenceMean?: number;
  /** Whether the adjusted p-value is under `alpha` and every effect floor is reached (false until `minRows`). */
  drifted: boolean;
  /** What crossed: `pValue` (significant after correction), and the effect floors reached (`psi`, `ks`). */
  breached: string[];
}

/** A snapshot of the monitor's view. */
export interface DriftReport {
  model: string;
  version: string;
  evaluatedAt: string;
  /** True when any feature drifts. */
  drifted: boolean;
  features: Record<string, FeatureScore>;
}

/** Fired when a feature crosses a threshold (`drift`) or comes back under all of them (`recovered`). */
export interface DriftEvent {
  type: 'drift' | 'recovered';
  model: string;
  feature: string;
  score: FeatureScore;
  at: string;
}

/** The clocks a monitor's budget reads (see {@link MonitorOptions.clock}). */
export interface MonitorClock {
  /** A monotonic time, ms (default `performance.now()`). */
  now(): number;
  /** CPU time the process has used and time the event loop has been idle, both since start, ms. */
  usage(): { cpuMs: number; idleMs: number };
}

/** Counters of a monitor (also under `stats().monitor`). */
export interface MonitorStats {
  /** Requests seen, counted as they start (failed ones included). */
  requests: number;
  sampled: number;
  /** The sampling rate in force (with `sampleRate: 'auto'`, the one the budget allows now). */
  sampleRate: number;
  /**
   * Time spent measuring and scoring over the last 100 ms, as a share of the process's CPU time
   * (or of the event loop's idle time when that is larger): what `budget` bounds.
   */
  busyShare: number;
  /**
   * True while `sampleRate: 'auto'` is held at its floor (one request in a thousand) because the
   * budget is spent (by the feedback join alone, or by measuring): drift is then hardly watched.
   * The first time, the monitor also emits a process warning (code `MLSERVE_MONITOR_BUDGET`).
   */
  starved: boolean;
  /** Sampled requests dropped because the measuring queue was full. */
  dropped: number;
  /** Requests whose features could not be extracted (wrong shape, missing input). */
  extractErrors: number;
  lastExtractError?: string;
  queued: number;
  /** Rows in the window of the busiest feature. */
  windowRows: number;
  evaluations: number;
  /**
   * Time spent measuring and scoring (off the request path, but on the same thread), plus the
   * feedback join's logging and joining (every call counted, at the median time of the calls
   * timed: one in 32), ms.
   */
  busyMs: number;
  sink?: ReturnType<PayloadSink['stats']>;
  /** The feedback join's counters, with `feedback` configured. */
  feedback?: FeedbackStats;
}

/** The middleware (it keeps its model's signature) plus the monitor's read side. */
export interface Monitor extends GenericMiddleware {
  /** Scores over the current window (recomputed if new rows arrived). */
  drift(): DriftReport;
  /** Resolves once every queued request is measured and scores are fresh. */
  flush(): Promise<DriftReport>;
  stats(): MonitorStats;
  /**
   * Joins the true label (a class index or name; a number for regression; an array for a batch)
   * with the prediction logged under the request's id. Returns whether a prediction was found
   * (missing ones are counted in `stats().feedback.unmatched`); throws INVALID_ARGUMENT for a
   * label that cannot be one. Needs the `feedback` option.
   */
  feedback(requestId: string, label: unknown): boolean;
  /**
   * Whether a label for `requestId` is joined: true unless the join is sampled (see
   * `FeedbackOptions.sampleRate`) and the id falls outside the sample at some rate of the last
   * TTL. A sender may use it to send only the labels that will count.
   */
  joins(requestId: string): boolean;
  /** Rolling accuracy (or MAE) and calibration against the baseline, and the decay alarm. */
  quality(): QualityReport;
}

/** How often `sampleRate: 'auto'` re-reads its cost and adjusts the rate, ms. */
const ADJUST_EVERY_MS = 100;
/** How long a trickle of sampled requests waits to be measured together, ms. */
const DRAIN_DELAY_MS = 5;
/** The lowest rate `'auto'` goes down to (a request in a thousand keeps the window moving). */
const MIN_AUTO_RATE = 0.001;
/**
 * What measuring a request costs beyond the time timed around it, ms. The work touches memory
 * (the request's tensors, the windows, its own code) that the model then fetches back into the
 * caches, and that cost shows up as the model computing slower, where no timer around the
 * monitor's work can see it. Measured on mnist-cnn (onnxruntime, 40 us a request;
 * `scripts/cost-ab.ts`, paired rounds): a measured request adds 7.8 us of CPU for 4.1 us timed.
 * Charging the timed time alone let a 2% budget cost 4-5% per request. (A multiple of the timed
 * time fits the hot path, but a rare, cold call's timed time already holds its cache misses:
 * multiplied, it priced rare measuring out altogether.)
 */
const MEASURE_UNSEEN_MS = 0.0037;
/**
 * The same for each call of the feedback join (a logged prediction, a joined label), whose timer
 * also misses the tap on the model's promise: on mnist-cnn the join added 1.75 us of CPU per
 * request for 0.21 us timed over its two calls (configurations `bare` and `j100`, 100 rounds).
 */
const JOIN_UNSEEN_MS = 0.00075;
/** Periods in a row the budget must hold 'auto' at its floor before the monitor warns. */
const STARVED_PERIODS = 5;
/** The smallest share of request ids 'auto' keeps in the feedback join. */
const MIN_JOIN_RATE = 0.01;
/**
 * The join's rate history is kept in this many buckets spanning the feedback TTL, so that a label
 * can tell whether its request could have been in the sample (the lowest and highest rates in
 * force while its prediction could still be waiting).
 */
const JOIN_BUCKETS = 16;
/** Timed feedback calls kept per adjustment period (their median is charged for every call). */
const FEEDBACK_SAMPLES = 63;

const realClock: MonitorClock = {
  now: () => performance.now(),
  usage() {
    const u = process.cpuUsage();
    return { cpuMs: (u.user + u.system) / 1000, idleMs: eventLoop.eventLoopUtilization().idle };
  },
};

const ignore = (): void => undefined;

/** The median time of timing nothing with performance.now(), ms. */
function measureTimerOverhead(): number {
  const d = new Float64Array(31);
  for (let i = 0; i < d.length; i++) {
    const t0 = performance.now();
    d[i] = performance.now() - t0;
  }
  return d.sort()[15]!;
}

/**
 * Watches a model's traffic for drift against a reference profile. The request path only pushes
 * references to the request's tensors into a bounded queue (dropping, and counting, when it is
 * full); features are extracted and scored later, off the request path. By default
 * (`sampleRate: 'auto'`) every request is measured while that costs under `budget` (1%) of the
 * CPU, and a random sample of them when it would cost more; with `feedback`, the join of labels
 * shares the budget the same way (a sample of request ids).
 *
 * @example
 * ```ts
 * const ref = await loadProfile('models/mnist/profile.json');
 * const watch = monitor({
 *   profile: ref,
 *   extractors: [imageStats('image'), predictedClass('logits')],
 *   window: { size: 1000 },
 *   budget: 0.02, // sampleRate 'auto': up to 2% of the CPU on measuring (default 1%)
 *   metrics: { registry },
 *   onDrift: (e) => log.warn(e, `${e.feature} ${e.type}`),
 * });
 * const served = pipeline(model, watch);
 * watch.drift(); // { drifted: false, features: { 'image.mean': { psi: 0.01, ks: 0.04, ... } } }
 * ```
 */
export function monitor(options: MonitorOptions): Monitor {
  const {
    profile: ref,
    extractors,
    window = { size: 1000 },
    sampleRate = 'auto',
    budget = 0.01,
    minRows = 30,
    alpha = 0.01,
    correction = 'holm',
    evaluateEveryMs = 1000,
    drainBatch = 32,
    sink,
    sinkSampleRate = 0.01,
    onDrift,
    clock = realClock,
  } = options;
  const queueSize = renamedOption(options, 'maxPending', 'queueSize', 'monitor') ?? 256;
  assertProfile(ref);
  if (!Array.isArray(extractors) || extractors.length === 0) {
    throw invalidArgument('monitor: options.extractors must name at least one extractor');
  }
  const rate = (name: string, v: number) => {
    if (typeof v !== 'number' || !(v >= 0 && v <= 1))
      throw invalidArgument(`monitor: options.${name} must be in [0, 1]`);
  };
  const auto = sampleRate === 'auto';
  if (!auto) rate('sampleRate', sampleRate);
  if (typeof budget !== 'number' || !(budget > 0 && budget <= 1))
    throw invalidArgument('monitor: options.budget must be in (0, 1]');
  rate('sinkSampleRate', sinkSampleRate);
  const positiveInt = (name: string, v: number) =>
    checkPositiveInteger(v ?? Number.NaN, name, 'monitor', invalidArgument);
  positiveInt(
    options.maxPending === undefined && options.queueSize !== undefined ? 'queueSize' : 'maxPending',
    queueSize,
  );
  positiveInt('drainBatch', drainBatch);
  positiveInt('minRows', minRows);
  if (!(evaluateEveryMs > 0)) throw invalidArgument('monitor: options.evaluateEveryMs must be positive');
  let capacity: number;
  let windowMs: number | undefined;
  if ('size' in window) {
    positiveInt('window.size', window.size);
    capacity = window.size;
  } else if ('ms' in window) {
    if (!(window.ms > 0)) throw invalidArgument('monitor: options.window.ms must be positive');
    windowMs = window.ms;
    capacity = window.maxRows ?? 100_000;
    positiveInt('window.maxRows', capacity);
  } else throw invalidArgument('monitor: options.window needs size or ms');
  if (!(alpha > 0 && alpha < 1)) throw invalidArgument('monitor: options.alpha must be in (0, 1)');
  if (correction !== 'holm' && correction !== 'bonferroni' && correction !== 'none')
    throw invalidArgument("monitor: options.correction must be 'holm', 'bonferroni' or 'none'");
  const tracker = options.feedback ? new FeedbackTracker(options.feedback, ref.baseline) : undefined;
  const onDecay = options.onDecay;

  const rings = new Map<string, NumericWindow | CategoricalWindow>();
  for (const [name, f] of Object.entries(ref.features)) rings.set(name, windowFor(capacity, f));
  // A fixed ring of references (parallel arrays, so a push allocates nothing): O(1) to add and
  // take, never larger than queueSize (options.maxPending).
  const qInputs = new Array<Tensors | undefined>(queueSize);
  const qOutputs = new Array<Tensors | undefined>(queueSize);
  const qTimes = new Float64Array(queueSize);
  let qHead = 0;
  let qLength = 0;
  const counters = { requests: 0, sampled: 0, dropped: 0, extractErrors: 0, evaluations: 0, busyMs: 0 };
  // The rate in force; with 'auto' it follows the measured cost (see adapt()).
  let currentRate = auto ? 1 : (sampleRate as number);
  let periodStart = clock.now();
  let periodBusy = 0;
  /** Time charged for logging predictions and joining labels this period (set in adapt()). */
  let periodFeedback = 0;
  let feedbackCalls = 0;
  /** Feedback calls (log and join) this period, and the times of those timed (one in 32), ms. */
  let periodFeedbackCalls = 0;
  const feedbackTimes = new Float64Array(FEEDBACK_SAMPLES);
  let feedbackTimed = 0;
  /** Time of one feedback call (ms): a moving average of each period's median. */
  let feedbackCost = 0;
  // The feedback join's sample of request ids (see FeedbackOptions.sampleRate): the rate in force,
  // and the lowest and highest rates of the last TTL, per bucket of the TTL.
  const joinOption = options.feedback?.sampleRate ?? 'auto';
  const joinAuto = joinOption === 'auto';
  if (!joinAuto) rate('feedback.sampleRate', joinOption);
  let joinRate = joinAuto ? 1 : (joinOption as number);
  let joinFloor = joinRate;
  let joinCeil = joinRate;
  const joinLow = new Float64Array(JOIN_BUCKETS).fill(joinRate);
  const joinHigh = new Float64Array(JOIN_BUCKETS).fill(joinRate);
  const joinBucketMs = Math.max(ADJUST_EVERY_MS, (tracker?.ttlMs ?? 0) / (JOIN_BUCKETS - 1));
  let joinBucket = 0;
  let joinBucketEnd = Date.now() + joinBucketMs;
  /** Requests that came with an id this period (whether or not in the join's sample). */
  let periodIds = 0;
  /** The join's charge per request id at a rate of 1 (ms), a moving average. */
  let joinCostPerId = 0;
  // What timing an empty stretch costs (the timer's own overhead), taken off each timed call.
  const timerOverhead = clock === realClock ? measureTimerOverhead() : 0;
  const first = clock.usage();
  let periodCpu = first.cpuMs;
  let periodIdle = first.idleMs;
  let starved = false;
  let warned = false;
  let periodMeasured = 0;
  /** Time charged for measuring this period (periodBusy less the evaluations). */
  let periodMeasuring = 0;
  let periodRequests = 0;
  let busyShare = 0;
  /** busyShare over recent periods with requests (a moving average). */
  let spentShare = 0;
  let starvedPeriods = 0;
  /** Time to measure one request (ms), a moving average over adjustment periods. */
  let sampleCost = 0;
  let lastExtractError: string | undefined;
  let dirty = false;
  let lastEval = 0;
  let report: DriftReport | undefined;
  const alarms = new Map<string, boolean>();
  let modelName = '';
  let modelVersion = '';
  let bound = false;
  let timer: NodeJS.Timeout | undefined;
  let adjustTimer: NodeJS.Timeout | undefined;
  /**
   * The wall clock as of the last tick (every ADJUST_EVERY_MS): the time a prediction is logged
   * and a label joined at, for the feedback TTL (Date.now() per request costs ~45 ns, twice).
   */
  let wallNow = Date.now();
  let metrics: Metrics | undefined;
  let metricsLoad: Promise<void> | undefined;

  // Per extractor, the windows of its features in order (rebuilt when its feature list changes,
  // as imageStats' does when it first sees colour images).
  const routes = new Map<
    Extractor,
    { features: readonly FeatureSpec[]; rings: (FeatureWindow | undefined)[] }
  >();
  const ringsOf = (ex: Extractor): (FeatureWindow | undefined)[] => {
    let r = routes.get(ex);
    if (!r || r.features !== ex.features) {
      r = { features: ex.features, rings: ex.features.map((f) => rings.get(f.name)) };
      routes.set(ex, r);
    }
    return r.rings;
  };
  let emitRings: (FeatureWindow | undefined)[] = [];
  let emitTime = 0;
  const emit: FeatureEmit = (i, v) => {
    const ring = emitRings[i];
    if (ring === undefined || (typeof v === 'number' && !Number.isFinite(v))) return;
    ring.push(v, emitTime);
    dirty = true;
  };

  function measure(inputs: Tensors, outputs: Tensors, time: number): void {
    emitTime = time;
    for (const ex of extractors) {
      try {
        if (ex.each) {
          emitRings = ringsOf(ex);
          ex.each(inputs, outputs, emit);
          continue;
        }
        const cols = ex.extract(inputs, outputs);
        for (const name in cols) {
          const ring = rings.get(name);
          if (!ring) continue;
          const values = cols[name]!;
          for (let i = 0; i < values.length; i++) {
            const v = values[i]!;
            if (typeof v === 'number' && !Number.isFinite(v)) continue;
            ring.push(v, time);
          }
          dirty = true;
        }
      } catch (err) {
        counters.extractErrors++;
        lastExtractError = err instanceof Error ? err.message : String(err);
      }
    }
  }

  /** Puts a join rate in force, keeping the lowest and highest of the TTL's buckets. */
  function setJoinRate(r: number, wall: number): void {
    joinRate = r;
    if (wall - joinBucketEnd >= joinBucketMs * JOIN_BUCKETS) {
      // No requests for longer than the TTL: every bucket is of the past.
      joinLow.fill(r);
      joinHigh.fill(r);
      joinBucketEnd = wall + joinBucketMs;
    }
    while (wall >= joinBucketEnd) {
      joinBucket = joinBucket + 1 === JOIN_BUCKETS ? 0 : joinBucket + 1;
      joinLow[joinBucket] = r;
      joinHigh[joinBucket] = r;
      joinBucketEnd += joinBucketMs;
    }
    if (r < joinLow[joinBucket]!) joinLow[joinBucket] = r;
    if (r > joinHigh[joinBucket]!) joinHigh[joinBucket] = r;
    let lo = 1;
    let hi = 0;
    for (let i = 0; i < JOIN_BUCKETS; i++) {
      if (joinLow[i]! < lo) lo = joinLow[i]!;
      if (joinHigh[i]! > hi) hi = joinHigh[i]!;
    }
    joinFloor = lo;
    joinCeil = hi;
  }

  /**
   * Every ADJUST_EVERY_MS: the busy share of the last period and, with 'auto', the rate that keeps
   * it within the budget. The share is of the process's CPU time, or of the event loop's idle
   * time when that is larger: under load the first is the CPU the requests cost (so the cost per
   * request stays within the budget however many other processes share the machine, and whether
   * the model computes on this thread or another), and on a quiet server the second lets
   * everything be measured. The rate is the measuring time the period allows over the
   * cost of measuring one request (a moving average) times the requests that came in; periods
   * without requests leave it alone. The busy time is wall-clock, so preemption only makes it err
   * low (fewer samples); the request path's own share (a push into the queue) is not counted.
   */
  function adapt(now: number): void {
    const elapsed = now - periodStart;
    if (elapsed < ADJUST_EVERY_MS) return;
    const usage = clock.usage();
    const cpuNow = usage.cpuMs;
    const idleNow = usage.idleMs;
    const cpuMs = Math.max(cpuNow - periodCpu, idleNow - periodIdle);
    const requests = counters.requests - periodRequests;
    // The feedback path: every call counted, each at the median time of the calls timed. A mean
    // of single sub-microsecond calls timed on the wall clock, scaled by 32, was dominated by the
    // rare one that took a garbage collection or a preemption (ms): it charged 4-6x the join's
    // cost and starved the measuring (issue 23).
    if (feedbackTimed > 0) {
      const timed = feedbackTimes.subarray(0, feedbackTimed).sort();
      const median = Math.max(0, timed[feedbackTimed >> 1]! - timerOverhead);
      const charged = median + JOIN_UNSEEN_MS;
      feedbackCost = feedbackCost > 0 ? 0.5 * feedbackCost + 0.5 * charged : charged;
      feedbackTimed = 0;
    }
    periodFeedback = feedbackCost * periodFeedbackCalls;
    counters.busyMs += periodFeedback;
    periodFeedbackCalls = 0;
    if (cpuMs > 0) {
      busyShare = Math.min(1, (periodBusy + periodFeedback) / cpuMs);
      if (requests > 0) spentShare = spentShare > 0 ? 0.8 * spentShare + 0.2 * busyShare : busyShare;
    }
    if (periodMeasured > 0) {
      // Per measured request, without the evaluations: one landing in a period with few
      // requests measured made a request look milliseconds dear and starved the rate.
      const cost = periodMeasuring / periodMeasured;
      sampleCost = sampleCost > 0 ? 0.5 * sampleCost + 0.5 * cost : cost;
    }
    // A period much longer than ADJUST_EVERY_MS (a blocked event loop) says little about now.
    const representative = elapsed < 3 * ADJUST_EVERY_MS;
    // The rates follow estimates (of what a measured request and a joined label cost) that lag
    // and scatter; when what was actually charged ran over the budget lately, the room shrinks
    // by as much, so that the spend holds the budget on average.
    const allowed = budget * cpuMs * (spentShare > budget ? budget / spentShare : 1);
    // What the join may spend this period: with 'auto', its share of the budget (below); with a
    // fixed rate, what it spent.
    let joinSpend = periodFeedback;
    if (periodIds > 0 && periodFeedback > 0) {
      // The join's charge per request id at a rate of 1 (its calls scale with the rate): a moving
      // average, as one period's median of a few dozen timed calls is noisy.
      const perId = periodFeedback / (Math.max(joinRate, MIN_JOIN_RATE) * periodIds);
      joinCostPerId = joinCostPerId > 0 ? 0.8 * joinCostPerId + 0.2 * perId : perId;
    }
    if (joinAuto && representative && cpuMs > 0 && periodIds > 0) {
      // The join gets all it needs while it and 'auto' measuring fit the budget together, else at
      // least half the budget (more when measuring needs less than its half; a fixed sampleRate
      // is outside the budget), and measuring the rest, so that neither starves the other.
      // Down at once, up at most 1.5x a period; periods without requests leave it alone.
      const joinNeed = joinCostPerId * periodIds;
      const measureNeed = auto ? sampleCost * requests : 0;
      let target = 1;
      if (joinNeed > 0 && joinNeed + measureNeed > allowed) {
        const share = Math.max(allowed / 2, allowed - measureNeed);
        target = share / joinNeed;
        joinSpend = Math.min(share, joinNeed);
      }
      const next = Math.min(1, Math.max(MIN_JOIN_RATE, Math.min(target, joinRate * 1.5)));
      setJoinRate(next, wallNow);
    }
    periodIds = 0;
    if (auto && representative && requests > 0 && sampleCost > 0 && cpuMs > 0) {
      // Down at once, up at most 1.5x a period: a period that was partly idle overstates the room.
      // What the join spends (or may spend) is taken first: what is left of the budget measures.
      const target = Math.max(0, allowed - joinSpend) / (sampleCost * requests);
      currentRate = Math.min(1, Math.max(MIN_AUTO_RATE, Math.min(target, currentRate * 1.5)));
      starved = target <= MIN_AUTO_RATE;
      // Warned about once it lasts (a cold start's first periods, before the JIT, cost more).
      starvedPeriods = starved ? starvedPeriods + 1 : 0;
      if (starvedPeriods >= STARVED_PERIODS && !warned) {
        warned = true;
        const pct = (v: number) => `${+(v * 100).toFixed(2)}%`;
        process.emitWarning(
          `monitor(${modelName}): the CPU budget (${pct(budget)}) is spent` +
            (joinSpend >= allowed ? ' by the feedback join alone' : '') +
            `; drift is measured on only ${pct(MIN_AUTO_RATE)} of requests. Raise options.budget or set a sampleRate.`,
          { code: 'MLSERVE_MONITOR_BUDGET' },
        );
      }
    }
    periodStart = now;
    periodCpu = cpuNow;
    periodIdle = idleNow;
    periodBusy = 0;
    periodFeedback = 0;
    periodMeasured = 0;
    periodMeasuring = 0;
    periodRequests = counters.requests;
  }

  /** Measures up to `n` queued requests (all of them from flush()). */
  function drainSome(n: number): void {
    const t0 = clock.now();
    const measured = Math.min(n, qLength);
    for (let i = measured; i > 0; i--) {
      const inputs = qInputs[qHead]!;
      const outputs = qOutputs[qHead]!;
      qInputs[qHead] = undefined;
      qOutputs[qHead] = undefined;
      const time = qTimes[qHead]!;
      qHead = qHead + 1 === queueSize ? 0 : qHead + 1;
      qLength--;
      measure(inputs, outputs, time);
      periodMeasured++;
    }
    const t1 = clock.now();
    const charged = t1 - t0 + measured * MEASURE_UNSEEN_MS;
    counters.busyMs += charged;
    periodBusy += charged;
    periodMeasuring += charged;
    adapt(t1);
  }

  function drain(): void {
    immediate = false;
    drainSome(drainBatch);
    if (qLength >= drainBatch) schedule();
    else if (qLength > 0) arm();
    else if (dirty && Date.now() - lastEval >= evaluateEveryMs) evaluate();
  }

  // A trickle of requests is measured in batches a few milliseconds apart (one timer re-armed,
  // not a callback per request); a full batch is measured on the next turn of the event loop.
  let immediate = false;
  let delayTimer: NodeJS.Timeout | undefined;
  let armed = false;
  function arm(): void {
    if (armed) return;
    armed = true;
    if (delayTimer) delayTimer.refresh();
    else {
      delayTimer = setTimeout(() => {
        armed = false;
        if (!immediate) drain();
      }, DRAIN_DELAY_MS);
      delayTimer.unref();
    }
  }

  function schedule(): void {
    if (immediate) return;
    immediate = true;
    setImmediate(drain);
  }

  function evaluate(): DriftReport {
    const t0 = clock.now();
    try {
      return scoreWindow();
    } finally {
      const spent = clock.now() - t0;
      counters.busyMs += spent;
      periodBusy += spent;
    }
  }

  function scoreWindow(): DriftReport {
    const now = Date.now();
    lastEval = now;
    dirty = false;
    counters.evaluations++;
    const features: Record<string, FeatureScore> = {};
    const events: DriftEvent[] = [];
    let any = false;
    if (windowMs !== undefined) for (const ring of rings.values()) ring.evictBefore(now - windowMs);
    const scores = scoreFeatures(ref, rings, { alpha, correction, minRows, thresholds: options.thresholds });
    for (const [name, s] of Object.entries(scores)) {
      if (s.rows >= minRows) {
        const was = alarms.get(name) ?? false;
        if (s.drifted !== was) {
          alarms.set(name, s.drifted);
          events.push({
            type: s.drifted ? 'drift' : 'recovered',
            model: modelName,
            feature: name,
            score: s,
            at: new Date(now).toISOString(),
          });
        }
      } else s.drifted = alarms.get(name) ?? false;
      any ||= s.drifted;
      features[name] = s;
    }
    report = {
      model: modelName,
      version: modelVersion,
      evaluatedAt: new Date(now).toISOString(),
      drifted: any,
      features,
    };
    metrics?.update(report, stats());
    for (const e of events) {
      try {
        onDrift?.(e);
      } catch {
        // A throwing listener must not stop the monitor.
      }
    }
    return report;
  }

  function stats(): MonitorStats {
    let windowRows = 0;
    for (const r of rings.values()) windowRows = Math.max(windowRows, r.length);
    const out: MonitorStats = {
      ...counters,
      sampleRate: currentRate,
      busyShare,
      starved,
      queued: qLength,
      windowRows,
    };
    if (lastExtractError !== undefined) out.lastExtractError = lastExtractError;
    if (sink) out.sink = sink.stats();
    if (tracker) out.feedback = { ...tracker.stats(), sampleRate: joinRate };
    return out;
  }

  function drift(): DriftReport {
    if (!report || dirty || windowMs !== undefined) return evaluate();
    return report;
  }

  const middleware = ((inner: Model): Model => {
    if (bound)
      throw new TypeError('monitor: one monitor watches one model; create another for the next model');
    bound = true;
    modelName = inner.name;
    modelVersion = inner.version;
    if (options.metrics) {
      metricsLoad = createMetrics(options.metrics.registry, modelName, modelVersion).then(
        (m) => {
          metrics = m;
        },
        () => undefined,
      );
    }
    timer = setInterval(() => {
      if (dirty || windowMs !== undefined) evaluate();
      if (tracker && metrics) metrics.quality(tracker.report(), tracker.stats());
      metrics?.sampling(stats());
    }, evaluateEveryMs);
    timer.unref();
    // The budget is checked on a clock, so a rate that fell under load comes back up when the load
    // goes, even if hardly any request is sampled in between.
    adjustTimer = setInterval(() => {
      wallNow = Date.now();
      adapt(clock.now());
      tracker?.expire(wallNow);
    }, ADJUST_EVERY_MS);
    adjustTimer.unref();
    return wrap(inner, {
      layer: 'monitor',
      infer: function monitorInfer(inputs: Tensors, opts?: InferOptions): Promise<Tensors> {
        // What this request needs is decided before it runs, so that a request with nothing to
        // log, measure or record passes on the inner promise itself (no await, no extra promise),
        // and one that has work taps the inner promise rather than chaining another in front of
        // the caller: the caller's own continuation runs after the tap, so a label sent from it
        // finds the prediction logged.
        counters.requests++;
        const sampled = currentRate >= 1 || (currentRate > 0 && Math.random() < currentRate);
        if (opts?.context) opts.context.monitorSampled = sampled;
        let id = tracker !== undefined ? opts?.id : undefined;
        if (id !== undefined) {
          periodIds++;
          // Outside the join's sample: its prediction is not logged (its label will be skipped).
          if (joinRate < 1 && !(joinUnit(id) < joinRate)) id = undefined;
        }
        const record = sink !== undefined && sinkSampleRate > 0 && Math.random() < sinkSampleRate;
        const result = inner.infer(inputs, opts);
        if (sampled || id !== undefined || record)
          result.then((outputs) => observe(inputs, outputs, sampled, id, record, opts), ignore);
        return result;
      },
      stats,
      async warmup() {
        await metricsLoad;
      },
      async dispose() {
        if (timer) clearInterval(timer);
        if (delayTimer) clearTimeout(delayTimer);
        if (adjustTimer) clearInterval(adjustTimer);
        await sink?.close();
      },
    });
  }) as unknown as Monitor;

  /** A request's answer, for the feedback log, the drift queue and the sink (see monitorInfer). */
  function observe(
    inputs: Tensors,
    outputs: Tensors,
    sampled: boolean,
    id: string | undefined,
    record: boolean,
    opts: InferOptions | undefined,
  ): void {
    if (id !== undefined) {
      if ((++feedbackCalls & 31) === 0) {
        const t0 = clock.now();
        tracker!.log(id, outputs, wallNow);
        timedFeedback(clock.now() - t0);
      } else {
        periodFeedbackCalls++;
        tracker!.log(id, outputs, wallNow);
      }
    }
    if (sampled) {
      counters.sampled++;
      if (qLength >= queueSize) counters.dropped++;
      else {
        let slot = qHead + qLength;
        if (slot >= queueSize) slot -= queueSize;
        qInputs[slot] = inputs;
        qOutputs[slot] = outputs;
        // Only a window of the last N ms needs each row's own time; otherwise the tick's will do.
        qTimes[slot] = windowMs !== undefined ? Date.now() : wallNow;
        qLength++;
        if (qLength >= drainBatch) schedule();
        else arm();
      }
    }
    if (record) {
      const entry = { time: Date.now(), model: modelName, version: modelVersion, inputs, outputs };
      if (opts?.id !== undefined) Object.assign(entry, { id: opts.id });
      if (opts?.context) Object.assign(entry, { context: opts.context });
      sink!.write(entry);
    }
  }

  /** One call in 32 of the feedback path is timed; adapt() charges every call its period's median. */
  function timedFeedback(ms: number): void {
    periodFeedbackCalls++;
    if (feedbackTimed < FEEDBACK_SAMPLES) feedbackTimes[feedbackTimed++] = ms;
  }

  function noFeedback(): never {
    throw invalidArgument('monitor: feedback needs the feedback option (monitor({ feedback: { output } }))');
  }

  function quality(): QualityReport {
    if (!tracker) noFeedback();
    return tracker.report();
  }

  middleware.drift = drift;
  middleware.stats = stats;
  middleware.quality = quality;
  middleware.feedback = (requestId: string, label: unknown): boolean => {
    if (!tracker) noFeedback();
    // A request outside the join's sample at every rate of the last TTL was never logged: its
    // label is checked and counted, nothing more. One that was in it at some rates and not at
    // others is looked up, and counts as skipped rather than unmatched when nothing is found.
    let outside = false;
    let current = true;
    if (joinFloor < 1 && typeof requestId === 'string') {
      const u = joinUnit(requestId);
      if (u >= joinCeil) {
        tracker.skip(requestId, label);
        return false;
      }
      outside = u >= joinFloor;
      current = u < joinRate;
    }
    let matched: boolean;
    if (!current) {
      // Outside the sample in force (a lookup, mostly a miss): not charged as a join call, as
      // the charge per call is scaled up by the rate to estimate the join's whole cost.
      matched = tracker.feedback(requestId, label, wallNow, outside);
    } else if ((++feedbackCalls & 31) === 0) {
      const t0 = clock.now();
      try {
        matched = tracker.feedback(requestId, label, wallNow, outside);
      } finally {
        timedFeedback(clock.now() - t0);
      }
    } else {
      periodFeedbackCalls++;
      matched = tracker.feedback(requestId, label, wallNow, outside);
    }
    if (matched && tracker.takeChange()) {
      const q = tracker.report();
      metrics?.quality(q, tracker.stats());
      try {
        onDecay?.({
          type: q.decay.detected ? 'decay' : 'recovered',
          model: modelName,
          quality: q,
          at: new Date().toISOString(),
        });
      } catch {
        // A throwing listener must not stop the monitor.
      }
    }
    return matched;
  };
  middleware.joins = (requestId: string): boolean => joinFloor >= 1 || joinUnit(requestId) < joinFloor;
  middleware.flush = async () => {
    drainSome(qLength);
    await metricsLoad;
    if (tracker) metrics?.quality(tracker.report(), tracker.stats());
    return evaluate();
  };
  return middleware;
}

function scoreNumeric(f: NumericProfile, w: NumericWindow): FeatureScore {
  const ks = w.ks();
  return {
    kind: 'numeric',
    rows: w.length,
    psi: psi(f.counts, Array.from(w.psiCounts)),
    ks,
    pValue: ksPValue(ks, w.length, f.count),
    adjustedPValue: Number.NaN,
    mean: w.mean(),
    referenceMean: f.mean,
    drifted: false,
    breached: [],
  };
}

function scoreCategorical(f: CategoricalProfile, w: CategoricalWindow): FeatureScore {
  const expected = [...w.categories.map((c) => f.frequencies[c] ?? 0), 0];
  const observed = Array.from(w.counts);
  const chi = chiSquareHomogeneity(expected, observed);
  return {
    kind: 'categorical',
    rows: w.length,
    psi: psi(expected, observed),
    chi2: chi.statistic,
    chi2PValue: chi.pValue,
    pValue: chi.pValue,
    adjustedPValue: Number.NaN,
    drifted: false,
    breached: [],
  };
}

/** Options of {@link scoreFeatures} (the monitor's, see {@link MonitorOptions}). */
export interface ScoreOptions {
  alpha?: number;
  correction?: 'holm' | 'bonferroni' | 'none';
  minRows?: number;
  thresholds?: Thresholds & { features?: Record<string, Thresholds> };
}

/**
 * Scores live windows against a profile and decides which features drift: the test each
 * evaluation of the monitor runs (exported for scripts that measure its false-alarm rate and
 * power on recorded data). Features with fewer than `minRows` rows are not tested and do not count
 * in the correction.
 *
 * @example
 * ```ts
 * const windows = new Map(Object.entries(ref.features).map(([name, f]) => [name, windowFor(500, f)]));
 * for (const row of rows) windows.get('age')!.push(row.age, 0);
 * scoreFeatures(ref, windows, { alpha: 0.01 }); // { age: { pValue: 0.42, drifted: false, ... } }
 * ```
 */
export function scoreFeatures(
  ref: Profile,
  windows: ReadonlyMap<string, NumericWindow | CategoricalWindow>,
  options: ScoreOptions = {},
): Record<string, FeatureScore> {
  const { alpha = 0.01, correction = 'holm', minRows = 30 } = options;
  const { features: perFeature = {}, ...defaults } = options.thresholds ?? {};
  const scored: [string, FeatureScore][] = [];
  for (const [name, f] of Object.entries(ref.features)) {
    const ring = windows.get(name);
    if (!ring) continue;
    const s =
      f.kind === 'numeric'
        ? scoreNumeric(f, ring as NumericWindow)
        : scoreCategorical(f, ring as CategoricalWindow);
    if (s.rows < minRows) s.pValue = Number.NaN;
    scored.push([name, s]);
  }
  // One family of tests per evaluation: the features with enough rows.
  const raw = scored.map(([, s]) => s.pValue);
  const adjusted = correction === 'holm' ? holm(raw) : correction === 'bonferroni' ? bonferroni(raw) : raw;
  const out: Record<string, FeatureScore> = {};
  for (const [i, [name, s]] of scored.entries()) {
    s.adjustedPValue = adjusted[i]!;
    out[name] = s;
    if (s.rows < minRows) continue;
    const th: Thresholds = { ...defaults, ...perFeature[name] };
    const significant = s.adjustedPValue < alpha;
    if (significant) s.breached.push('pValue');
    let floors = true;
    if (th.psi !== undefined) {
      if (s.psi > th.psi) s.breached.push('psi');
      else floors = false;
    }
    if (th.ks !== undefined && s.ks !== undefined) {
      if (s.ks > th.ks) s.breached.push('ks');
      else floors = false;
    }
    s.drifted = significant && floors;
  }
  return out;
}

interface Metrics {
  update(report: DriftReport, stats: MonitorStats): void;
  quality(q: QualityReport, stats: FeedbackStats): void;
  sampling(stats: MonitorStats): void;
}

async function createMetrics(
  registry: import('prom-client').Registry,
  model: string,
  version: string,
): Promise<Metrics> {
  const prom = await importOptional<typeof import('prom-client')>('prom-client', {
    neededBy: 'the metrics option',
  });
  // One gauge per name: several monitors (one per model version) publish to one registry.
  const gauge = <L extends string>(name: string, help: string, labelNames: L[]) =>
    getOrCreateMetric(
      registry,
      name,
      () => new prom.Gauge<L>({ name, help, labelNames, registers: [registry] }),
    );
  const score = gauge(
    'mlserve_drift_score',
    'Drift score of a feature over the live window against the reference profile',
    ['model', 'version', 'feature', 'metric'],
  );
  const detected = gauge('mlserve_drift_detected', '1 while a feature crosses a drift threshold, else 0', [
    'model',
    'version',
    'feature',
  ]);
  const windowRows = gauge('mlserve_monitor_window_rows', 'Rows in the drift monitor window', [
    'model',
    'version',
  ]);
  const requests = gauge(
    'mlserve_monitor_requests',
    'Requests seen by the drift monitor, by outcome (sampled, dropped, extract_error)',
    ['model', 'version', 'outcome'],
  );
  const sampleRate = gauge(
    'mlserve_monitor_sample_rate',
    "Fraction of requests the drift monitor measures (moved by sampleRate 'auto')",
    ['model', 'version'],
  );
  const starved = gauge(
    'mlserve_monitor_starved',
    "1 while sampleRate 'auto' is held at its floor because the CPU budget is spent, else 0",
    ['model', 'version'],
  );
  const quality = gauge(
    'mlserve_model_quality',
    'Live model quality from ground-truth feedback over the rolling window, and its baseline (metric: accuracy, accuracy_lower, accuracy_upper, baseline, mae, mae_lower, mae_upper, calibration_gap, ece, window_labels)',
    ['model', 'version', 'metric'],
  );
  const decay = gauge(
    'mlserve_model_decay_detected',
    '1 while the decay alarm (accuracy or error against the baseline) stands, else 0',
    ['model', 'version'],
  );
  const labels = gauge(
    'mlserve_feedback',
    'Feedback join counters (logged, labels, joined, unmatched, skipped, expired, evicted, invalid, pending)',
    ['model', 'version', 'outcome'],
  );
  return {
    sampling(stats) {
      sampleRate.set({ model, version }, stats.sampleRate);
      starved.set({ model, version }, stats.starved ? 1 : 0);
    },
    quality(q, stats) {
      const set = (metric: string, v: number | undefined) => {
        if (v !== undefined && Number.isFinite(v)) quality.set({ model, version, metric }, v);
      };
      set('window_labels', q.rows);
      if (q.accuracy) {
        set('accuracy', q.accuracy.estimate);
        set('accuracy_lower', q.accuracy.lower);
        set('accuracy_upper', q.accuracy.upper);
      }
      if (q.mae) {
        set('mae', q.mae.estimate);
        set('mae_lower', q.mae.lower);
        set('mae_upper', q.mae.upper);
      }
      set('baseline', q.baseline?.estimate);
      set('calibration_gap', q.calibration?.gap.estimate);
      set('ece', q.calibration?.ece);
      decay.set({ model, version }, q.decay.detected ? 1 : 0);
      for (const [outcome, v] of Object.entries(stats)) labels.set({ model, version, outcome }, v);
    },
    update(report, stats) {
      sampleRate.set({ model, version }, stats.sampleRate);
      for (const [feature, s] of Object.entries(report.features)) {
        const set = (metric: string, v: number | undefined) => {
          if (v !== undefined && Number.isFinite(v)) score.set({ model, version, feature, metric }, v);
        };
        set('psi', s.psi);
        set('ks', s.ks);
        set('chi2', s.chi2);
        set('chi2_p_value', s.chi2PValue);
        detected.set({ model, version, feature }, s.drifted ? 1 : 0);
      }
      windowRows.set({ model, version }, stats.windowRows);
      requests.set({ model, version, outcome: 'total' }, stats.requests);
      requests.set({ model, version, outcome: 'sampled' }, stats.sampled);
      requests.set({ model, version, outcome: 'dropped' }, stats.dropped);
      requests.set({ model, version, outcome: 'extract_error' }, stats.extractErrors);
    },
  };
}
