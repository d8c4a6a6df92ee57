import { checkPositiveInteger, invalidArgument, type Model, type Tensor, type Tensors } from '@mlserve/core';
import { wilson } from './stats.js';

/** What the model predicts: a class (accuracy) or a number (mean absolute error). */
export type Task = 'classification' | 'regression';

/** Calibration bins of equal width over the predicted class's probability. */
export const CALIBRATION_BINS = 10;

/**
 * The model's quality on held-out data, measured when the profile is built: what live accuracy
 * (or error) is compared with. Saved in `profile.json` under `baseline`.
 */
export interface Baseline {
  task: Task;
  /** The output the prediction is read from. */
  output: string;
  /** Held-out rows measured. */
  rows: number;
  /** Classification: share of rows predicted right. */
  accuracy?: number;
  /** Classification: mean probability of the predicted class. */
  meanConfidence?: number;
  /** Classification: mean of (confidence - correct) and its standard deviation (overconfidence). */
  gap?: number;
  gapStd?: number;
  /** Classification: expected calibration error over {@link CALIBRATION_BINS} bins. */
  ece?: number;
  /** Regression: mean absolute error and the standard deviation of the absolute errors. */
  mae?: number;
  maeStd?: number;
}

/** Options of {@link measureBaseline}. */
export interface BaselineOptions {
  /** The output holding logits or probabilities (classification) or the prediction (regression). */
  output: string;
  /** Default `'classification'`. */
  task?: Task;
  /** Computes outputs for samples that carry none. */
  model?: Model;
  /** Class names, when labels are given as names rather than indices. */
  labels?: readonly string[];
}

/** One held-out sample with its true label (a class index or name, or a number for regression). */
export interface LabeledSample {
  inputs: Tensors;
  outputs?: Tensors;
  /** One label per row of the batch (a single value for a batch of one). */
  label: number | string | readonly (number | string)[];
}

/** Predictions of one request, per row: the class (or value) and the class's probability. */
export interface Prediction {
  value: Float64Array;
  confidence: Float64Array;
}

function numericOutput(outputs: Tensors | undefined, name: string): Tensor {
  const t = outputs?.[name];
  if (!t) throw invalidArgument(`feedback: the output "${name}" is missing`);
  if (t.type === 'string' || t.type === 'bool')
    throw invalidArgument(`feedback: the output "${name}" is not numeric`);
  return t;
}

/**
 * Reads the prediction of each row of `outputs[name]`: for classification the argmax and the
 * probability of that class (a softmax of the row, unless the row already is a distribution), for
 * regression the value (one per row).
 */
export function readPrediction(outputs: Tensors | undefined, name: string, task: Task): Prediction {
  const t = numericOutput(outputs, name);
  const data = t.data as ArrayLike<number | bigint>;
  const rows = t.dims.length === 0 ? 1 : Math.max(1, Number(t.dims[0]));
  const width = rows === 0 ? 0 : Math.floor(data.length / rows);
  const value = new Float64Array(rows);
  const confidence = new Float64Array(rows);
  if (task === 'regression') {
    for (let r = 0; r < rows; r++) {
      value[r] = Number(data[r * width]);
      confidence[r] = Number.NaN;
    }
    return { value, confidence };
  }
  for (let r = 0; r < rows; r++) {
    const base = r * width;
    let best = 0;
    let max = Number(data[base]);
    let sum = 0;
    let distribution = true;
    for (let i = 0; i < width; i++) {
      const v = Number(data[base + i]);
      if (v > max) {
        max = v;
        best = i;
      }
      if (!(v >= 0 && v <= 1)) distribution = false;
      sum += v;
    }
    if (width === 1) {
      // A single score: a binary classifier's probability of class 1.
      const p = Number(data[base]);
      const prob = p >= 0 && p <= 1 ? p : 1 / (1 + Math.exp(-p));
      value[r] = prob >= 0.5 ? 1 : 0;
      confidence[r] = prob >= 0.5 ? prob : 1 - prob;
      continue;
    }
    value[r] = best;
    if (distribution && Math.abs(sum - 1) < 1e-3) confidence[r] = max;
    else {
      let z = 0;
      for (let i = 0; i < width; i++) z += Math.exp(Number(data[base + i]) - max);
      confidence[r] = 1 / z;
    }
  }
  return { value, confidence };
}

/** A label as a number: a class index (names looked up in `labels`) or a regression target. */
export function labelValue(label: unknown, task: Task, labels?: readonly string[]): number {
  if (typeof label === 'number' && Number.isFinite(label)) {
    if (task === 'classification' && !Number.isInteger(label))
      throw invalidArgument(`feedback: a class label must be an integer or a class name, got ${label}`);
    return label;
  }
  if (typeof label === 'string' && task === 'classification') {
    const i = labels?.indexOf(label) ?? -1;
    if (i >= 0) return i;
    if (/^\d+$/.test(label)) return Number(label);
    throw invalidArgument(`feedback: unknown class "${label.slice(0, 64)}"`);
  }
  if (
    typeof label === 'string' &&
    task === 'regression' &&
    label.trim() !== '' &&
    Number.isFinite(Number(label))
  )
    return Number(label);
  throw invalidArgument(
    `feedback: a label must be ${task === 'classification' ? 'a class index or name' : 'a finite number'}`,
  );
}

/**
 * Measures a model's accuracy and calibration (or mean absolute error) on labelled held-out data:
 * the {@link Baseline} the monitor compares live feedback with. Attach it to the profile
 * (`{ ...ref, baseline }`) so that it is saved with it.
 *
 * @example
 * ```ts
 * const baseline = await measureBaseline(
 *   heldOut.map(({ image, label }) => ({ inputs: { image }, label })),
 *   { model, output: 'logits' },
 * );
 * await saveProfile('models/mnist/1/profile.json', { ...ref, baseline });
 * ```
 */
export async function measureBaseline(
  samples: Iterable<LabeledSample> | AsyncIterable<LabeledSample>,
  options: BaselineOptions,
): Promise<Baseline> {
  const { output, task = 'classification', model, labels } = options;
  if (typeof output !== 'string' || output === '')
    throw invalidArgument('measureBaseline: options.output is required');
  let rows = 0;
  let correct = 0;
  let conf = 0;
  let gap = 0;
  let gap2 = 0;
  let abs = 0;
  let abs2 = 0;
  const binN = new Float64Array(CALIBRATION_BINS);
  const binCorrect = new Float64Array(CALIBRATION_BINS);
  const binConf = new Float64Array(CALIBRATION_BINS);
  for await (const s of samples) {
    let outputs = s.outputs;
    if (!outputs && model) outputs = await model.infer(s.inputs);
    const pred = readPrediction(outputs, output, task);
    const given = Array.isArray(s.label) ? s.label : [s.label];
    if (given.length !== pred.value.length)
      throw invalidArgument(`measureBaseline: ${given.length} labels for ${pred.value.length} rows`);
    for (let r = 0; r < pred.value.length; r++) {
      const y = labelValue(given[r], task, labels);
      rows++;
      if (task === 'regression') {
        const e = Math.abs(pred.value[r]! - y);
        abs += e;
        abs2 += e * e;
        continue;
      }
      const ok = pred.value[r] === y ? 1 : 0;
      const c = pred.confidence[r]!;
      correct += ok;
      conf += c;
      gap += c - ok;
      gap2 += (c - ok) * (c - ok);
      const b = Math.min(CALIBRATION_BINS - 1, Math.floor(c * CALIBRATION_BINS));
      binN[b]!++;
      binCorrect[b]! += ok;
      binConf[b]! += c;
    }
  }
  if (rows === 0) throw invalidArgument('measureBaseline: no labelled samples');
  const sd = (s: number, s2: number) =>
    Math.sqrt(Math.max(0, s2 / rows - (s / rows) ** 2) * (rows / Math.max(1, rows - 1)));
  if (task === 'regression') return { task, output, rows, mae: abs / rows, maeStd: sd(abs, abs2) };
  let ece = 0;
  for (let b = 0; b < CALIBRATION_BINS; b++)
    if (binN[b]! > 0) ece += Math.abs(binConf[b]! - binCorrect[b]!) / rows;
  return {
    task,
    output,
    rows,
    accuracy: correct / rows,
    meanConfidence: conf / rows,
    gap: gap / rows,
    gapStd: sd(gap, gap2),
    ece,
  };
}

/**
 * A one-sided Bernoulli CUSUM on errors (Reynolds and Stoumbos), in integer steps: a correct
 * prediction moves the statistic down by 1, an error up by `up` (the log-likelihood ratio of an
 * error over that of a correct prediction between the baseline accuracy and the baseline minus
 * `drop`, rounded). It alarms at `threshold`, chosen as the smallest for which, with the
 * baseline's accuracy, an alarm within any `horizon` labels has probability at most `alpha`
 * (computed exactly on the chain, from its stationary state).
 */
export interface CusumDesign {
  up: number;
  threshold: number;
  /** The false-alarm probability per `horizon` labels at the baseline accuracy (at most alpha). */
  falseAlarm: number;
}

const designs = new Map<string, CusumDesign>();

/**
 * Designs the accuracy CUSUM (see {@link CusumDesign}) between the in-control accuracy `p0` and
 * the decayed accuracy `p1`; cached per set of arguments.
 */
export function designCusum(p0In: number, p1In: number, alpha: number, horizon: number): CusumDesign {
  const key = `${p0In}:${p1In}:${alpha}:${horizon}`;
  const cached = designs.get(key);
  if (cached) return cached;
  const p0 = Math.min(0.99999, Math.max(0.00001, p0In));
  const p1 = Math.min(p0 - 1e-6, Math.max(1e-6, p1In));
  const upLlr = Math.log((1 - p1) / (1 - p0));
  const downLlr = -Math.log(p1 / p0);
  const up = Math.max(1, Math.round(upLlr / downLlr));
  const falseAlarm = (h: number) => alarmWithin(p0, up, h, horizon);
  // The false-alarm probability falls as the threshold rises: double, then bisect.
  let hi = up + 1;
  while (falseAlarm(hi) > alpha && hi < 1_000_000) hi *= 2;
  let lo = 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (falseAlarm(mid) <= alpha) hi = mid;
    else lo = mid + 1;
  }
  const design = { up, threshold: hi, falseAlarm: falseAlarm(hi) };
  designs.set(key, design);
  return design;
}

/**
 * Probability that the integer CUSUM (down 1 with probability p, up `up` otherwise, reset to 0
 * after an alarm at `h`) alarms within `horizon` steps, starting from its stationary distribution.
 */
function alarmWithin(p: number, up: number, h: number, horizon: number): number {
  let pi = new Float64Array(h);
  let next = new Float64Array(h);
  pi[0] = 1;
  for (let iter = 0; iter < 200_000; iter++) {
    next.fill(0);
    for (let s = 0; s < h; s++) {
      const m = pi[s]!;
      if (m === 0) continue;
      next[s > 0 ? s - 1 : 0]! += p * m;
      if (s + up >= h) next[0]! += (1 - p) * m;
      else next[s + up]! += (1 - p) * m;
    }
    let diff = 0;
    for (let s = 0; s < h; s++) diff += Math.abs(next[s]! - pi[s]!);
    [pi, next] = [next, pi];
    if (diff < 1e-12 && iter > h) break;
  }
  let alarmed = 0;
  for (let step = 0; step < horizon; step++) {
    next.fill(0);
    for (let s = 0; s < h; s++) {
      const m = pi[s]!;
      if (m === 0) continue;
      next[s > 0 ? s - 1 : 0]! += p * m;
      if (s + up >= h) alarmed += (1 - p) * m;
      else next[s + up]! += (1 - p) * m;
    }
    [pi, next] = [next, pi];
  }
  return alarmed;
}

/** Live quality, over the last `window` labels, against the baseline. */
export interface QualityReport {
  task: Task;
  /** Labels in the rolling window. */
  rows: number;
  /** Classification: accuracy with a 95% Wilson interval. */
  accuracy?: Interval;
  /** Regression: mean absolute error with a 95% interval. */
  mae?: Interval;
  /** The baseline's figure with its own 95% interval (from its number of held-out rows). */
  baseline?: Interval & { rows: number };
  /** Live minus baseline, with a 95% interval accounting for both samples. */
  difference?: Interval;
  /** Classification: mean confidence minus accuracy (positive: overconfident), live and baseline. */
  calibration?: {
    gap: Interval;
    baselineGap?: number;
    ece: number;
    baselineEce?: number;
    meanConfidence: number;
  };
  /** The decay alarm. */
  decay: {
    detected: boolean;
    /** Classification: the CUSUM statistic and its threshold; regression: the one-sided p-value. */
    statistic: number;
    threshold: number;
    /** When the alarm was raised (ISO time), while it stands. */
    since?: string;
  };
}

/** An estimate with its 95% interval. */
export interface Interval {
  estimate: number;
  lower: number;
  upper: number;
}

/** Counters of the feedback join. */
export interface FeedbackStats {
  /** Predictions waiting for a label. */
  pending: number;
  /** Predictions logged (requests with an id). */
  logged: number;
  /** Labels received. */
  labels: number;
  /** Labels joined to their prediction. */
  joined: number;
  /** Labels that found no prediction (unknown id, already labelled, expired or evicted). */
  unmatched: number;
  /**
   * Labels for requests outside the join's sample (see `FeedbackOptions.sampleRate`): their
   * predictions were not logged, so they are not joined and not counted as unmatched.
   */
  skipped: number;
  /** Predictions dropped unlabelled after `ttlMs`. */
  expired: number;
  /** Predictions dropped unlabelled because `maxPending` were waiting. */
  evicted: number;
  /** Labels rejected (not a class, not a number, wrong count for the batch). */
  invalid: number;
  /** The share of request ids in the join's sample now (in a monitor's `stats().feedback`). */
  sampleRate?: number;
}

/** Options of the ground-truth side of `monitor()` (`monitor({ feedback: { ... } })`). */
export interface FeedbackOptions {
  /** The output the prediction is read from (default: the baseline's output). */
  output?: string;
  /** Default: the baseline's task, else `'classification'`. */
  task?: Task;
  /** Class names, when labels arrive as names. */
  labels?: readonly string[];
  /** What live quality is compared with (default: the profile's `baseline`). */
  baseline?: Baseline;
  /** Labels in the rolling window (default 500). */
  window?: number;
  /** How long a prediction waits for its label, ms (default 3,600,000: an hour). */
  ttlMs?: number;
  /** Predictions waiting for labels at most; the oldest go first (default 100,000). */
  maxPending?: number;
  /** The accuracy drop to detect, as a share (default 0.05: 5 points). */
  drop?: number;
  /**
   * How far below the baseline accuracy the live accuracy may sit without counting as decay: the
   * CUSUM's in-control accuracy is the baseline minus this (default: one standard error of the
   * baseline, the distance to the lower end of its z = 1 Wilson interval, so that a baseline
   * measured on few rows does not raise false alarms when it came out a little high).
   */
  baselineMargin?: number;
  /** Regression: the relative rise in mean absolute error to detect (default 0.2). */
  maeRise?: number;
  /** False-alarm probability per `horizon` labels (default 0.01). */
  alpha?: number;
  /** Labels over which `alpha` is counted (default 500). */
  horizon?: number;
  /**
   * The share of request ids whose predictions are logged and whose labels are joined, or
   * `'auto'` (the default): all of them while the join and the drift measuring fit the monitor's
   * `budget` together, else a share that gives the join half of it. The sample is chosen by a hash
   * of the request id ({@link joinUnit}), so the prediction's side and the label's side agree
   * without remembering anything; labels outside it are counted as `skipped`. A sample of ids is
   * an unbiased sample of the labelled traffic: accuracy and calibration estimate the same thing,
   * over more labels. `1` joins every label whatever it costs.
   */
  sampleRate?: number | 'auto';
}

/**
 * Where a request id falls in [0, 1): a 32-bit FNV-1a hash of its UTF-16 code units (finished with MurmurHash3's fmix32). A request is in the join's sample when this is below the sample rate, on both sides of
 * the join.
 *
 * @example
 * ```ts
 * joinUnit('req-42'); // 0.194..., the same in every process
 * ```
 */
export function joinUnit(id: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
  // FNV mixes a short key's last characters poorly: finish with MurmurHash3's fmix32.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

/** Fired when the decay alarm is raised or clears. */
export interface DecayEvent {
  type: 'decay' | 'recovered';
  model: string;
  quality: QualityReport;
  at: string;
}

/** Slots the prediction log starts with; it grows by doubling as predictions wait. */
const INITIAL_SLOTS = 64;

/**
 * The join of predictions with labels that arrive later, and the rolling quality they give.
 * Predictions wait in a ring of slots in insertion order, one typed column per field (no object
 * per request: logging allocates nothing for a one-row prediction), with an index from request
 * id to slot. A label frees its slot; the ring's head skips freed slots, and a ring full of
 * freed slots is compacted (or grown) in one pass, so that logging, joining, expiry by age and
 * eviction by count (both oldest first) are O(1) amortized.
 */
export class FeedbackTracker {
  readonly task: Task;
  readonly output: string;
  readonly baseline: Baseline | undefined;
  readonly #labels: readonly string[] | undefined;
  readonly #window: number;
  readonly #ttlMs: number;
  readonly #maxPending: number;
  /** Request id -> slot of its waiting prediction. */
  readonly #index = new Map<string, number>();
  /** Per slot: the request id (undefined once labelled, expired or evicted), time, class or value, confidence. */
  #ids: (string | undefined)[] = new Array(INITIAL_SLOTS).fill(undefined);
  #times = new Float64Array(INITIAL_SLOTS);
  #values = new Float64Array(INITIAL_SLOTS);
  #confidences = new Float64Array(INITIAL_SLOTS);
  /** Per slot, the rows of a batch (created with the first batch logged). */
  #batches: (Prediction | undefined)[] | undefined;
  /** The oldest slot in use (always a waiting prediction, unless none waits), and slots in use from it. */
  #first = 0;
  #used = 0;
  /** Slots left behind by an id logged again (still holding the id, no longer indexed). */
  #stale = 0;
  readonly #correct: Float64Array;
  readonly #confidence: Float64Array;
  #head = 0;
  #length = 0;
  #sum = 0;
  #sumConf = 0;
  #sumGap2 = 0;
  #sumErr2 = 0;
  readonly #binN = new Float64Array(CALIBRATION_BINS);
  readonly #binCorrect = new Float64Array(CALIBRATION_BINS);
  readonly #binConf = new Float64Array(CALIBRATION_BINS);
  readonly #design: CusumDesign | undefined;
  readonly #maeRise: number;
  readonly #alpha: number;
  #cusum = 0;
  #alarm = false;
  #changed = false;
  #since: string | undefined;
  readonly counters: Omit<FeedbackStats, 'pending'> = {
    logged: 0,
    labels: 0,
    joined: 0,
    unmatched: 0,
    expired: 0,
    evicted: 0,
    invalid: 0,
    skipped: 0,
  };

  constructor(options: FeedbackOptions, profileBaseline: Baseline | undefined) {
    const baseline = options.baseline ?? profileBaseline;
    this.baseline = baseline;
    this.task = options.task ?? baseline?.task ?? 'classification';
    const output = options.output ?? baseline?.output;
    if (typeof output !== 'string' || output === '')
      throw invalidArgument('monitor: options.feedback.output is required (or a baseline that names it)');
    this.output = output;
    this.#labels = options.labels;
    const int = (name: string, v: number) => {
      checkPositiveInteger(v, `feedback.${name}`, 'monitor', invalidArgument);
      return v;
    };
    this.#window = int('window', options.window ?? 500);
    this.#maxPending = int('maxPending', options.maxPending ?? 100_000);
    const horizon = int('horizon', options.horizon ?? 500);
    this.#ttlMs = options.ttlMs ?? 3_600_000;
    if (!(this.#ttlMs > 0)) throw invalidArgument('monitor: options.feedback.ttlMs must be positive');
    const drop = options.drop ?? 0.05;
    if (!(drop > 0 && drop < 1)) throw invalidArgument('monitor: options.feedback.drop must be in (0, 1)');
    this.#alpha = options.alpha ?? 0.01;
    if (!(this.#alpha > 0 && this.#alpha < 1))
      throw invalidArgument('monitor: options.feedback.alpha must be in (0, 1)');
    this.#maeRise = options.maeRise ?? 0.2;
    this.#correct = new Float64Array(this.#window);
    this.#confidence = new Float64Array(this.#window);
    if (this.task === 'classification' && baseline?.accuracy !== undefined && baseline.accuracy - drop > 0) {
      const p = baseline.accuracy;
      // One standard error, as the distance to the lower end of a z = 1 Wilson interval (not 0 for a
      // baseline that got every row right).
      const margin =
        options.baselineMargin ?? p - wilson(p * baseline.rows, Math.max(1, baseline.rows), 1).lower;
      if (!(margin >= 0 && margin < drop))
        throw invalidArgument('monitor: options.feedback.baselineMargin must be in [0, drop)');
      this.#design = designCusum(p - margin, p - drop, this.#alpha, horizon);
    }
  }

  /** Logs a request's prediction under its id (on the request path: an argmax, an index insert). */
  log(id: string, outputs: Tensors, now: number): void {
    let value = 0;
    let confidence = 0;
    let batch: Prediction | undefined;
    const t = outputs[this.output];
    const single = t !== undefined && (t.dims.length === 1 || (t.dims.length === 2 && t.dims[0] === 1));
    if (
      single &&
      this.task === 'classification' &&
      t.data.length > 1 &&
      t.type !== 'string' &&
      t.type !== 'bool'
    ) {
      // The common case, one row of scores: argmax and softmax inline.
      const data = t.data as ArrayLike<number>;
      let best = 0;
      let max = Number(data[0]);
      let sum = 0;
      let distribution = true;
      for (let i = 0; i < data.length; i++) {
        const v = Number(data[i]);
        if (v > max) {
          max = v;
          best = i;
        }
        if (!(v >= 0 && v <= 1)) distribution = false;
        sum += v;
      }
      value = best;
      if (distribution && Math.abs(sum - 1) < 1e-3) confidence = max;
      else {
        let z = 0;
        for (let i = 0; i < data.length; i++) z += Math.exp(Number(data[i]) - max);
        confidence = 1 / z;
      }
    } else {
      try {
        batch = readPrediction(outputs, this.output, this.task);
      } catch {
        return;
      }
    }
    this.counters.logged++;
    // One index operation: the id goes into the next slot. A repeated id moves there too (its
    // prediction replaced, its expiry restarted); its old slot keeps the id but no longer owns it
    // (the index points elsewhere), and is skipped when it reaches the ring's head.
    if (this.#used === this.#ids.length) this.#compact();
    let slot = this.#first + this.#used;
    if (slot >= this.#ids.length) slot -= this.#ids.length;
    const size = this.#index.size;
    this.#index.set(id, slot);
    this.#used++;
    this.#ids[slot] = id;
    if (this.#index.size === size) {
      // A repeated id: its old slot, wherever it is, is now stale.
      this.#stale++;
      this.#advance();
    }
    this.#times[slot] = now;
    this.#values[slot] = value;
    this.#confidences[slot] = confidence;
    if (batch !== undefined) {
      this.#batches ??= new Array<Prediction | undefined>(this.#ids.length).fill(undefined);
      this.#batches[slot] = batch;
    } else if (this.#batches !== undefined) this.#batches[slot] = undefined;
    if (this.#index.size > this.#maxPending) {
      this.#index.delete(this.#ids[this.#first]!);
      this.#free(this.#first);
      this.counters.evicted++;
    }
  }

  /** Frees a slot, and moves the ring's start past the freed slots at its head. */
  #free(slot: number): void {
    this.#ids[slot] = undefined;
    if (this.#batches !== undefined) this.#batches[slot] = undefined;
    this.#advance();
  }

  /**
   * Moves the ring's start past freed slots, and past stale ones (a slot whose id was logged again
   * later: the index points past it), so that the head is always a waiting prediction.
   */
  #advance(): void {
    const ids = this.#ids;
    while (this.#used > 0) {
      const id = ids[this.#first];
      if (id !== undefined) {
        if (this.#stale === 0 || this.#index.get(id) === this.#first) return;
        ids[this.#first] = undefined;
        if (this.#batches !== undefined) this.#batches[this.#first] = undefined;
        this.#stale--;
      }
      this.#first = this.#first + 1 === ids.length ? 0 : this.#first + 1;
      this.#used--;
    }
  }

  /**
   * The ring is full (of waiting predictions and freed slots): copies the waiting ones, in order,
   * to the start of a ring of at least four times their number (two times `maxPending` at most,
   * {@link INITIAL_SLOTS} at least), so that at least as many logs as are waiting, and mostly
   * three times as many, come before the next compaction: O(1) amortized per log.
   */
  #compact(): void {
    const waiting = this.#index.size;
    let size = INITIAL_SLOTS;
    while (size < 4 * waiting && size < 2 * this.#maxPending) size *= 2;
    while (size < 2 * waiting) size *= 2;
    const ids = new Array<string | undefined>(size).fill(undefined);
    const times = new Float64Array(size);
    const values = new Float64Array(size);
    const confidences = new Float64Array(size);
    const batches = this.#batches && new Array<Prediction | undefined>(size).fill(undefined);
    const old = this.#ids;
    let to = 0;
    for (let k = 0, from = this.#first; k < this.#used; k++, from = from + 1 === old.length ? 0 : from + 1) {
      const id = old[from];
      if (id === undefined || (this.#stale > 0 && this.#index.get(id) !== from)) continue;
      ids[to] = id;
      times[to] = this.#times[from]!;
      values[to] = this.#values[from]!;
      confidences[to] = this.#confidences[from]!;
      if (batches) batches[to] = this.#batches![from];
      this.#index.set(id, to);
      to++;
    }
    this.#ids = ids;
    this.#times = times;
    this.#values = values;
    this.#confidences = confidences;
    this.#batches = batches;
    this.#first = 0;
    this.#used = to;
    this.#stale = 0;
  }

  /** Drops predictions older than the TTL (called from the monitor's timers and on feedback). */
  expire(now: number): void {
    const limit = now - this.#ttlMs;
    while (this.#used > 0 && this.#times[this.#first]! < limit) {
      this.#index.delete(this.#ids[this.#first]!);
      this.#free(this.#first);
      this.counters.expired++;
    }
  }

  /**
   * Joins a label with the prediction logged under `id`. Returns whether it found one (when not,
   * it counts as unmatched, or as skipped when `outside`: the request may have been outside the
   * join's sample); throws INVALID_ARGUMENT for a label that is not a class (or number), or the
   * wrong count for a batch.
   */
  feedback(id: string, label: unknown, now: number, outside = false): boolean {
    this.counters.labels++;
    if (typeof id !== 'string' || id === '') {
      this.counters.invalid++;
      throw invalidArgument('feedback: the request id must be a non-empty string');
    }
    // One label as a number (no array for the common case), or one per row of a batch.
    let one = 0;
    let values: number[] | undefined;
    try {
      if (Array.isArray(label)) values = label.map((l) => labelValue(l, this.task, this.#labels));
      else one = labelValue(label, this.task, this.#labels);
    } catch (err) {
      this.counters.invalid++;
      throw err;
    }
    const slot = this.#index.get(id);
    if (slot === undefined) {
      if (outside) this.counters.skipped++;
      else this.counters.unmatched++;
      return false;
    }
    if (this.#times[slot]! < now - this.#ttlMs) {
      // Past its TTL but not yet swept (the monitor sweeps every 100 ms).
      this.#index.delete(id);
      this.#free(slot);
      this.counters.expired++;
      this.counters.unmatched++;
      return false;
    }
    const batch = this.#batches?.[slot];
    const rows = batch ? batch.value.length : 1;
    const given = values ? values.length : 1;
    if (given !== rows) {
      this.counters.invalid++;
      throw invalidArgument(`feedback: ${given} labels for a request of ${rows} rows`);
    }
    const value = this.#values[slot]!;
    const confidence = this.#confidences[slot]!;
    this.#index.delete(id);
    this.#free(slot);
    this.counters.joined++;
    if (!batch) this.#add(value, confidence, values ? values[0]! : one);
    else
      for (let r = 0; r < rows; r++)
        this.#add(batch.value[r]!, batch.confidence[r]!, values ? values[r]! : one);
    return true;
  }

  #add(predicted: number, confidence: number, truth: number): void {
    const x = this.task === 'regression' ? Math.abs(predicted - truth) : predicted === truth ? 1 : 0;
    if (this.#length === this.#window) {
      const old = this.#correct[this.#head]!;
      const oldConf = this.#confidence[this.#head]!;
      this.#sum -= old;
      this.#sumErr2 -= old * old;
      if (this.task === 'classification') this.#calibrate(old, oldConf, -1);
      this.#head = this.#head + 1 === this.#window ? 0 : this.#head + 1;
      this.#length--;
    }
    let slot = this.#head + this.#length;
    if (slot >= this.#window) slot -= this.#window;
    this.#correct[slot] = x;
    this.#confidence[slot] = confidence;
    this.#length++;
    this.#sum += x;
    this.#sumErr2 += x * x;
    if (this.task === 'classification') {
      this.#calibrate(x, confidence, 1);
      if (this.#design) {
        this.#cusum = Math.max(0, this.#cusum + (x === 1 ? -1 : this.#design.up));
        if (this.#cusum >= this.#design.threshold) this.#raise();
        else if (this.#alarm && this.#cusum === 0) {
          this.#alarm = false;
          this.#since = undefined;
          this.#changed = true;
        }
      }
    }
  }

  #calibrate(ok: number, c: number, sign: 1 | -1): void {
    this.#sumConf += sign * c;
    this.#sumGap2 += sign * (c - ok) * (c - ok);
    const b = Math.min(CALIBRATION_BINS - 1, Math.floor(c * CALIBRATION_BINS));
    this.#binN[b]! += sign;
    this.#binCorrect[b]! += sign * ok;
    this.#binConf[b]! += sign * c;
  }

  #raise(): void {
    if (!this.#alarm) {
      this.#since = new Date().toISOString();
      this.#changed = true;
    }
    this.#alarm = true;
    // The statistic stays at the threshold while errors keep coming; it clears once it falls to 0.
    this.#cusum = this.#design!.threshold;
  }

  /** The rolling report. */
  report(): QualityReport {
    const n = this.#length;
    const b = this.baseline;
    const out: QualityReport = {
      task: this.task,
      rows: n,
      decay: { detected: false, statistic: 0, threshold: 0 },
    };
    if (this.task === 'classification') {
      const acc = wilson(this.#sum, n);
      out.accuracy = acc;
      if (b?.accuracy !== undefined) {
        const base = wilson(Math.round(b.accuracy * b.rows), b.rows);
        out.baseline = { ...base, estimate: b.accuracy, rows: b.rows };
        if (n > 0) {
          // Newcombe's hybrid score interval for a difference of two proportions.
          const d = acc.estimate - b.accuracy;
          out.difference = {
            estimate: d,
            lower: d - Math.sqrt((acc.estimate - acc.lower) ** 2 + (base.upper - b.accuracy) ** 2),
            upper: d + Math.sqrt((acc.upper - acc.estimate) ** 2 + (b.accuracy - base.lower) ** 2),
          };
        }
      }
      if (n > 0) {
        const gap = (this.#sumConf - this.#sum) / n;
        const varGap = Math.max(0, this.#sumGap2 / n - gap * gap) * (n / Math.max(1, n - 1));
        const half = 1.96 * Math.sqrt(varGap / n);
        let ece = 0;
        for (let i = 0; i < CALIBRATION_BINS; i++)
          if (this.#binN[i]! > 0) ece += Math.abs(this.#binConf[i]! - this.#binCorrect[i]!) / n;
        out.calibration = {
          gap: { estimate: gap, lower: gap - half, upper: gap + half },
          ece,
          meanConfidence: this.#sumConf / n,
        };
        if (b?.gap !== undefined) out.calibration.baselineGap = b.gap;
        if (b?.ece !== undefined) out.calibration.baselineEce = b.ece;
      }
      if (this.#design) {
        out.decay = { detected: this.#alarm, statistic: this.#cusum, threshold: this.#design.threshold };
      }
    } else {
      const mae = n > 0 ? this.#sum / n : Number.NaN;
      const sd = n > 1 ? Math.sqrt(Math.max(0, (this.#sumErr2 - n * mae * mae) / (n - 1))) : Number.NaN;
      const half = 1.96 * (sd / Math.sqrt(n));
      out.mae = { estimate: mae, lower: mae - half, upper: mae + half };
      if (b?.mae !== undefined && b.maeStd !== undefined) {
        const bh = 1.96 * (b.maeStd / Math.sqrt(b.rows));
        out.baseline = { estimate: b.mae, lower: b.mae - bh, upper: b.mae + bh, rows: b.rows };
        if (n > 1) {
          const d = mae - b.mae;
          const se = Math.sqrt((sd * sd) / n + (b.maeStd * b.maeStd) / b.rows);
          out.difference = { estimate: d, lower: d - 1.96 * se, upper: d + 1.96 * se };
          // One-sided test of "MAE rose by more than maeRise" once the window is full: z against
          // the baseline raised by maeRise / 2 (half-way), so a rise of maeRise is caught.
          const z = (mae - b.mae * (1 + this.#maeRise / 2)) / se;
          const p = 0.5 * erfc(z / Math.SQRT2);
          const detected = n >= this.#window && p < this.#alpha;
          if (detected && !this.#alarm) this.#since = new Date().toISOString();
          if (!detected) this.#since = undefined;
          if (detected !== this.#alarm) this.#changed = true;
          this.#alarm = detected;
          out.decay = { detected, statistic: p, threshold: this.#alpha };
        }
      }
    }
    if (this.#since !== undefined) out.decay.since = this.#since;
    return out;
  }

  /** Whether the decay alarm flipped since the last call (classification flips on labels). */
  takeChange(): boolean {
    if (this.task === 'regression') this.report();
    const c = this.#changed;
    this.#changed = false;
    return c;
  }

  /** How long a prediction waits for its label, ms. */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  /**
   * Counts a label for a request outside the join's sample (after checking it, so that a bad
   * label is refused whether or not it would have been joined).
   */
  skip(id: string, label: unknown): void {
    this.counters.labels++;
    try {
      if (typeof id !== 'string' || id === '')
        throw invalidArgument('feedback: the request id must be a non-empty string');
      if (Array.isArray(label)) for (const l of label) labelValue(l, this.task, this.#labels);
      else labelValue(label, this.task, this.#labels);
    } catch (err) {
      this.counters.invalid++;
      throw err;
    }
    this.counters.skipped++;
  }

  /** Whether the decay alarm stands. */
  get alarm(): boolean {
    return this.#alarm;
  }

  stats(): FeedbackStats {
    return { pending: this.#index.size, ...this.counters };
  }
}

/** The complementary error function (Numerical Recipes' erfcc, relative error under 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t * (-1.13520398 + t * (1.48851499 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}
