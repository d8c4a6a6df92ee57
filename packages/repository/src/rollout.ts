/**
 * Rollout: a new version earns its traffic. In shadow it receives mirrored copies of live
 * requests (and replayed ones when traffic is thin), runs them beside the serving version with
 * both versions' compute timed on the same inputs, and is compared; it passes the gate or is
 * rejected; then, optionally, canary steps give it a growing share of traffic, rolling it back
 * when its error rate or p99 breaks the limits.
 */
import {
  cloneTensor,
  type Model,
  type RolloutStatus,
  type Tensor,
  type Tensors,
  toServeError,
} from '@mlserve/core';
import type { CanaryConfig, CompareMode, GateConfig } from './config.js';

/**
 * How many rows of two versions' outputs agree: per row of each output both have, the same argmax
 * of the last axis, or every value within `atol`. An output missing on one side disagrees.
 *
 * @example
 * ```ts
 * compareOutputs(served, candidate, 'argmax'); // { rows: 1, agree: 1 }
 * ```
 */
export function compareOutputs(a: Tensors, b: Tensors, mode: CompareMode): { rows: number; agree: number } {
  let rows = 0;
  let agree = 0;
  for (const [name, ta] of Object.entries(a)) {
    const tb = b[name];
    const n = rowCount(ta);
    rows += n;
    if (!tb || tb.type !== ta.type || tb.dims.join() !== ta.dims.join()) continue;
    if (ta.type === 'string' || ta.type === 'bool') {
      agree += sameRows(ta, tb, n, (x, y) => x === y);
      continue;
    }
    const da = ta.data as ArrayLike<number | bigint>;
    const db = tb.data as ArrayLike<number | bigint>;
    const width = n === 0 ? 0 : da.length / n;
    for (let r = 0; r < n; r++) {
      const start = r * width;
      if (mode === 'argmax') {
        if (argmaxOf(da, start, width) === argmaxOf(db, start, width)) agree++;
      } else {
        let ok = true;
        for (let i = start; i < start + width && ok; i++) {
          if (!(Math.abs(Number(da[i]) - Number(db[i])) <= mode.atol)) ok = false;
        }
        if (ok) agree++;
      }
    }
  }
  return { rows, agree };
}

function rowCount(t: Tensor): number {
  if (t.dims.length <= 1) return 1;
  return t.dims.slice(0, -1).reduce((x, y) => x * y, 1);
}

function sameRows(a: Tensor, b: Tensor, n: number, eq: (x: unknown, y: unknown) => boolean): number {
  const da = a.data as ArrayLike<unknown>;
  const db = b.data as ArrayLike<unknown>;
  const width = n === 0 ? 0 : da.length / n;
  let agree = 0;
  for (let r = 0; r < n; r++) {
    let ok = true;
    for (let i = r * width; i < (r + 1) * width && ok; i++) if (!eq(da[i], db[i])) ok = false;
    if (ok) agree++;
  }
  return agree;
}

function argmaxOf(d: ArrayLike<number | bigint>, start: number, width: number): number {
  let best = 0;
  for (let i = 1; i < width; i++) if (d[start + i]! > d[start + best]!) best = i;
  return best;
}

/**
 * The p-th percentile (0-100) of `values`, nearest rank; NaN for none.
 *
 * @example
 * ```ts
 * percentile([1, 2, 3, 4], 50); // 2
 * ```
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** What the gate measured. */
export interface GateFigures {
  /** Requests compared (mirrored + replayed). */
  requests: number;
  /** Of those, replayed from warmup samples or a payload log. */
  replayed: number;
  /** Mirrored copies not taken because the shadow was busy or over its share. */
  dropped: number;
  /** Requests the new version failed on (they count as disagreeing). */
  errors: number;
  /** Share of output rows that agree. */
  agreement: number;
  /** p99 compute time of the new version on the compared requests (ms). */
  p99Ms: number;
  /** p99 compute time of the serving version on the same requests (ms). */
  baselineP99Ms: number;
  /** p99Ms / baselineP99Ms. */
  p99Ratio: number;
  /** Median of the per-request time ratios (new / serving). */
  medianPairRatio: number;
}

/**
 * Whether figures pass a gate, and if not, why (every broken limit, with its figure).
 *
 * @example
 * ```ts
 * gateVerdict(gate, figures); // { pass: false, reason: 'agreement 0.745 < 0.99' }
 * ```
 */
export function gateVerdict(gate: GateConfig, f: GateFigures): { pass: boolean; reason?: string } {
  const why: string[] = [];
  if (f.requests < gate.shadowRequests) {
    why.push(`only ${f.requests} of ${gate.shadowRequests} shadow requests within ${gate.maxShadowMs} ms`);
  } else {
    if (!(f.agreement >= gate.minAgreement))
      why.push(`agreement ${round(f.agreement)} < ${gate.minAgreement}`);
    if (gate.p99Ms !== undefined && !(f.p99Ms <= gate.p99Ms))
      why.push(`p99 ${round(f.p99Ms)} ms > ${gate.p99Ms} ms`);
    if (!(f.p99Ratio <= gate.maxP99Ratio))
      why.push(
        `p99 ratio ${round(f.p99Ratio)} > ${gate.maxP99Ratio} (${round(f.p99Ms)} vs ${round(f.baselineP99Ms)} ms)`,
      );
  }
  return why.length === 0 ? { pass: true } : { pass: false, reason: why.join('; ') };
}

const round = (x: number) => Math.round(x * 1000) / 1000;

/** What a {@link RolloutRun} works with. */
export interface RolloutHost {
  name: string;
  /** The serving version and its innermost model (what shadow timing runs on). */
  stable: { version: string; base: () => Model | undefined };
  candidate: { version: string; base: () => Model | undefined };
  gate: GateConfig | undefined;
  canary: CanaryConfig | undefined;
  /** Requests to replay when live traffic is thin (loaded once, when first needed). */
  replay: () => Promise<Tensors[]>;
  /** The new status of the candidate (the host sets it in the registry and emits an event). */
  update(status: RolloutStatus): void;
  /** The run is over: the candidate is promoted (serves normally) or rejected (held). */
  done(outcome: 'promoted' | 'rejected', status: RolloutStatus): void;
  log(message: string): void;
}

interface StepStats {
  requests: number;
  errors: number;
  latencies: number[];
}

/**
 * One candidate's rollout, from shadow to promoted or rejected.
 *
 * @example
 * ```ts
 * const run = new RolloutRun(host);
 * run.start();
 * // in the serving version's request path:
 * const copy = run.wantsCopy() ? run.copy(inputs) : undefined;
 * const out = await served.infer(inputs);
 * if (copy) run.mirror(copy);
 * ```
 */
export class RolloutRun {
  readonly #host: RolloutHost;
  #phase: 'shadow' | 'canary' | 'promoted' | 'rejected' = 'shadow';
  #pending: { inputs: Tensors; replayed: boolean } | undefined;
  #busy = false;
  #nextAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #deadline: NodeJS.Timeout | undefined;
  #replay: Tensors[] | undefined;
  #replayLoading: Promise<void> | undefined;
  #replayIndex = 0;
  #stopped = false;
  readonly #pairs: { stable: number; candidate: number }[] = [];
  #rows = 0;
  #agree = 0;
  #errors = 0;
  #replayed = 0;
  #dropped = 0;
  #gateFigures: GateFigures | undefined;
  #step = 0;
  #stepStats: StepStats = { requests: 0, errors: 0, latencies: [] };

  constructor(host: RolloutHost) {
    this.#host = host;
  }

  /** Where the candidate stands. */
  get phase(): 'shadow' | 'canary' | 'promoted' | 'rejected' {
    return this.#phase;
  }

  get candidate(): string {
    return this.#host.candidate.version;
  }

  get stable(): string {
    return this.#host.stable.version;
  }

  /** Starts the gate (or the canary steps when there is no gate; promotes when neither). */
  start(): void {
    const { gate } = this.#host;
    if (!gate) {
      this.#afterGate();
      return;
    }
    this.#host.update({ phase: 'shadow' });
    this.#deadline = setTimeout(() => this.#decide(), gate.maxShadowMs);
    this.#deadline.unref();
    this.#scheduleReplay();
  }

  /** Stops everything (the model or the repository is going away). */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#deadline) clearTimeout(this.#deadline);
  }

  /** True when a mirrored copy of a live request would be taken now (cheap: call per request). */
  wantsCopy(): boolean {
    if (this.#phase !== 'shadow' || this.#stopped) return false;
    if (this.#busy || this.#pending || performance.now() < this.#nextAt) {
      this.#dropped++;
      return false;
    }
    return true;
  }

  /** A copy of a request's inputs that outlives the request (buffers may be transferred to workers). */
  copy(inputs: Tensors): Tensors {
    const out: Tensors = {};
    for (const [k, t] of Object.entries(inputs)) out[k] = cloneTensor(t);
    return out;
  }

  /** Hands over a mirrored copy, after the live request was answered. */
  mirror(inputs: Tensors): void {
    if (this.#phase !== 'shadow' || this.#stopped || this.#busy || this.#pending) return;
    this.#pending = { inputs, replayed: false };
    setImmediate(() => void this.#runPending());
  }

  /** A live request answered by `version` (canary accounting). */
  observe(version: string, ms: number, failed: boolean): void {
    if (this.#phase !== 'canary' || version !== this.#host.candidate.version) return;
    const s = this.#stepStats;
    s.requests++;
    s.latencies.push(ms);
    if (failed) s.errors++;
    const canary = this.#host.canary!;
    const budget = canary.maxErrorRate * canary.stepRequests;
    if (s.errors > budget) {
      this.#rollBack(`error rate ${round(s.errors / s.requests)} > ${canary.maxErrorRate}`);
      return;
    }
    if (s.requests >= canary.stepRequests) this.#endStep();
  }

  /** Routing weights while in canary: `{ stable: 100 - w, candidate: w }`; undefined otherwise. */
  weights(): Record<string, number> | undefined {
    if (this.#phase !== 'canary') return undefined;
    const w = this.#host.canary!.steps[this.#step]!;
    return { [this.#host.stable.version]: 100 - w, [this.#host.candidate.version]: w };
  }

  /** Promotes by hand, whatever the figures. */
  promote(reason = 'promoted by hand'): void {
    if (this.#phase === 'promoted') return;
    this.#finish('promoted', reason);
  }

  /** Rejects by hand. */
  reject(reason = 'rejected by hand'): void {
    if (this.#phase === 'rejected') return;
    this.#finish('rejected', reason);
  }

  #figures(): GateFigures {
    const cand = this.#pairs.map((p) => p.candidate);
    const stab = this.#pairs.map((p) => p.stable);
    const p99 = percentile(cand, 99);
    const base = percentile(stab, 99);
    return {
      requests: this.#pairs.length + this.#errors,
      replayed: this.#replayed,
      dropped: this.#dropped,
      errors: this.#errors,
      agreement: this.#rows === 0 ? 0 : this.#agree / this.#rows,
      p99Ms: p99,
      baselineP99Ms: base,
      p99Ratio: p99 / base,
      medianPairRatio: percentile(
        this.#pairs.map((p) => p.candidate / Math.max(p.stable, 1e-6)),
        50,
      ),
    };
  }

  #scheduleReplay(): void {
    if (this.#stopped || this.#phase !== 'shadow' || this.#host.gate?.replay === false) return;
    if (this.#timer) clearTimeout(this.#timer);
    // Thin traffic: nothing mirrored for a while after the shadow's own pause.
    const wait = Math.max(0, this.#nextAt - performance.now()) + 20;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#busy || this.#pending || this.#stopped || this.#phase !== 'shadow') return;
      void this.#nextReplay().then((inputs) => {
        if (!inputs || this.#busy || this.#pending || this.#stopped || this.#phase !== 'shadow') {
          if (inputs === undefined) return;
          this.#scheduleReplay();
          return;
        }
        this.#pending = { inputs, replayed: true };
        void this.#runPending();
      });
    }, wait);
    this.#timer.unref();
  }

  async #nextReplay(): Promise<Tensors | undefined> {
    if (!this.#replay) {
      this.#replayLoading ??= this.#host.replay().then(
        (samples) => {
          this.#replay = samples;
        },
        (err: unknown) => {
          this.#host.log(`no replay for the shadow: ${toServeError(err).message}`);
          this.#replay = [];
        },
      );
      await this.#replayLoading;
    }
    const samples = this.#replay!;
    if (samples.length === 0) return undefined;
    return samples[this.#replayIndex++ % samples.length];
  }

  async #runPending(): Promise<void> {
    const job = this.#pending;
    if (!job || this.#busy || this.#stopped) return;
    this.#pending = undefined;
    this.#busy = true;
    const started = performance.now();
    try {
      await this.#compare(job.inputs, job.replayed);
    } finally {
      this.#busy = false;
      const spent = performance.now() - started;
      const share = this.#host.gate!.maxShadowShare;
      // Bounded: the shadow rests (1/share - 1) times as long as it ran.
      this.#nextAt = performance.now() + spent * (1 / share - 1);
      if (this.#phase === 'shadow') {
        if (this.#pairs.length + this.#errors >= this.#host.gate!.shadowRequests) this.#decide();
        else this.#scheduleReplay();
      }
    }
  }

  async #compare(inputs: Tensors, replayed: boolean): Promise<void> {
    const stable = this.#host.stable.base();
    const candidate = this.#host.candidate.base();
    if (!stable || !candidate) return;
    // Each version runs twice, in the order A B B A (which one is A alternates), and the faster
    // run of each counts: a run the OS preempts or a GC pause hits only ever gets slower, so the
    // minimum of two is the compute time, and both versions see the same cache warmth.
    const candidateFirst = (this.#pairs.length + this.#errors) % 2 === 1;
    let s: { out: Tensors; ms: number } | undefined;
    let c: { out: Tensors; ms: number } | Error | undefined;
    const run = async (m: Model, isCandidate: boolean) => {
      const t = performance.now();
      try {
        const out = await m.infer(inputs);
        const ms = performance.now() - t;
        if (isCandidate) {
          if (!(c instanceof Error) && (!c || ms < c.ms)) c = { out, ms };
        } else if (!s || ms < s.ms) s = { out, ms };
      } catch (err) {
        if (isCandidate) c = err instanceof Error ? err : new Error(String(err));
        else throw err;
      }
    };
    try {
      const order = candidateFirst ? [true, false, false, true] : [false, true, true, false];
      for (const isCandidate of order) await run(isCandidate ? candidate : stable, isCandidate);
    } catch {
      // A request the serving version cannot answer says nothing about the new one.
      return;
    }
    if (!s || !c) return;
    if (replayed) this.#replayed++;
    if (c instanceof Error) {
      this.#errors++;
      this.#rows += Object.values(s.out).reduce((n, t) => n + rowCount(t), 0);
      return;
    }
    const cmp = compareOutputs(s.out, c.out, this.#host.gate!.compare);
    this.#rows += cmp.rows;
    this.#agree += cmp.agree;
    this.#pairs.push({ stable: s.ms, candidate: c.ms });
  }

  #decide(): void {
    if (this.#phase !== 'shadow' || this.#stopped) return;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#deadline) clearTimeout(this.#deadline);
    const figures = this.#figures();
    this.#gateFigures = figures;
    const verdict = gateVerdict(this.#host.gate!, figures);
    if (!verdict.pass) {
      this.#finish('rejected', verdict.reason!);
      return;
    }
    this.#afterGate();
  }

  #afterGate(): void {
    if (this.#host.canary) {
      this.#phase = 'canary';
      this.#step = 0;
      this.#stepStats = { requests: 0, errors: 0, latencies: [] };
      this.#host.update(this.#status());
    } else this.#finish('promoted');
  }

  #endStep(): void {
    const canary = this.#host.canary!;
    const gate = this.#host.gate;
    const s = this.#stepStats;
    const p99 = percentile(s.latencies, 99);
    if (gate?.p99Ms !== undefined && p99 > gate.p99Ms) {
      this.#rollBack(`p99 ${round(p99)} ms > ${gate.p99Ms} ms`);
      return;
    }
    if (this.#step + 1 >= canary.steps.length) {
      this.#finish('promoted');
      return;
    }
    this.#step++;
    this.#stepStats = { requests: 0, errors: 0, latencies: [] };
    this.#host.update(this.#status());
  }

  #rollBack(why: string): void {
    const w = this.#host.canary!.steps[this.#step]!;
    this.#finish('rejected', `rolled back at canary step ${this.#step + 1} (${w}%): ${why}`);
  }

  #status(reason?: string): RolloutStatus {
    const status: RolloutStatus = { phase: this.#phase };
    if (this.#phase === 'canary') status.weight = this.#host.canary!.steps[this.#step]!;
    const figures: Record<string, number> = {};
    if (this.#gateFigures) Object.assign(figures, this.#gateFigures);
    if (this.#phase === 'canary' || this.#stepStats.requests > 0) {
      figures.canaryStep = this.#step + 1;
      figures.canaryRequests = this.#stepStats.requests;
      figures.canaryErrors = this.#stepStats.errors;
      if (this.#stepStats.latencies.length > 0)
        figures.canaryP99Ms = percentile(this.#stepStats.latencies, 99);
    }
    if (Object.keys(figures).length > 0) status.figures = figures;
    if (reason) status.reason = reason;
    return status;
  }

  #finish(outcome: 'promoted' | 'rejected', reason?: string): void {
    if (this.#phase === 'shadow' && !this.#gateFigures && this.#pairs.length + this.#errors > 0) {
      this.#gateFigures = this.#figures();
    }
    this.stop();
    this.#phase = outcome;
    const status = this.#status(reason);
    this.#host.log(
      `${this.#host.name}/${this.#host.candidate.version} ${outcome}${reason ? `: ${reason}` : ''}`,
    );
    this.#host.done(outcome, status);
  }
}
