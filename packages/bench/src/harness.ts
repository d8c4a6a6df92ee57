/**
 * The bench harness: drives a function (a Model call, an HTTP request) at a fixed concurrency
 * (closed loop) or a fixed arrival rate (open loop), records latency in an HDR histogram, and
 * prints results beside a baseline from the same run as ratios.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import type { Bar } from './chart.js';

/** One measured configuration. Latencies in milliseconds. */
export interface LoadResult {
  name: string;
  /** Completed requests (successes and errors) in the measured window. */
  requests: number;
  errors: number;
  durationMs: number;
  /** Successful requests per second. */
  throughput: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Process CPU time over the window, as a share of one core (1 = one core busy). */
  cpuCores: number;
  /** Peak resident set size seen during the window, MiB. */
  peakRssMb: number;
  /** Event-loop delay p99 during the window, ms. */
  loopDelayP99: number;
  /** Open loop only: requests not started because too many were in flight. */
  dropped?: number;
  /** Anything else a scenario wants in its table. */
  extra?: Record<string, string | number>;
}

/** Options shared by the load drivers. */
export interface LoadOptions {
  /** Measured window, ms (default 3000). */
  durationMs?: number;
  /** Unmeasured run-in before the window, ms (default 300). */
  warmupMs?: number;
  /** Stop after this many requests even if the window is not over. */
  maxRequests?: number;
}

function histogram() {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 600_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

/**
 * Latencies (whole microseconds) kept in a plain growing array during the window and put into the
 * HDR histogram after it: a histogram record per request cost about 8% of the main thread at
 * 700k requests per second (a batched small model), which the measurement then charged to the
 * code under test. Same values, same histogram; only when they are recorded moves.
 */
class Latencies {
  #data = new Uint32Array(1 << 16);
  #n = 0;
  /** Records one latency given in milliseconds (rounded to whole microseconds, at least 1). */
  add(ms: number): void {
    if (this.#n === this.#data.length) {
      const grown = new Uint32Array(this.#data.length * 2);
      grown.set(this.#data);
      this.#data = grown;
    }
    this.#data[this.#n++] = Math.max(1, Math.min(600_000_000, Math.round(ms * 1000)));
  }
  histogram() {
    const h = histogram();
    const d = this.#data;
    for (let i = 0; i < this.#n; i++) h.recordValue(d[i]!);
    return h;
  }
}

class Sampler {
  #peak = 0;
  #timer: ReturnType<typeof setInterval>;
  #cpu = process.cpuUsage();
  #t0 = performance.now();
  #loop = monitorEventLoopDelay({ resolution: 1 });
  constructor() {
    this.#sample();
    this.#timer = setInterval(() => this.#sample(), 50);
    this.#timer.unref();
    this.#loop.enable();
  }
  #sample() {
    this.#peak = Math.max(this.#peak, process.memoryUsage.rss());
  }
  stop() {
    clearInterval(this.#timer);
    this.#sample();
    this.#loop.disable();
    const cpu = process.cpuUsage(this.#cpu);
    const wallUs = (performance.now() - this.#t0) * 1000;
    return {
      cpuCores: (cpu.user + cpu.system) / wallUs,
      peakRssMb: this.#peak / 2 ** 20,
      loopDelayP99: this.#loop.percentile(99) / 1e6,
    };
  }
}

function finish(
  name: string,
  latencies: Latencies,
  requests: number,
  errors: number,
  durationMs: number,
  sampled: ReturnType<Sampler['stop']>,
): LoadResult {
  const ms = (us: number) => us / 1000;
  const h = latencies.histogram();
  const result: LoadResult = {
    name,
    requests,
    errors,
    durationMs,
    throughput: ((requests - errors) * 1000) / durationMs,
    mean: ms(h.mean),
    p50: ms(h.getValueAtPercentile(50)),
    p90: ms(h.getValueAtPercentile(90)),
    p99: ms(h.getValueAtPercentile(99)),
    max: ms(h.maxValue),
    ...sampled,
  };
  h.destroy();
  return result;
}

/**
 * Closed loop: `concurrency` callers, each sending its next request as soon as the last one
 * returns. Measures throughput at a fixed concurrency.
 *
 * @example
 * ```ts
 * const r = await closedLoop('batched', () => model.infer(inputs), { concurrency: 64, durationMs: 3000 });
 * ```
 */
export async function closedLoop(
  name: string,
  fn: (i: number) => Promise<unknown>,
  {
    concurrency,
    durationMs = 3000,
    warmupMs = 300,
    maxRequests = Number.POSITIVE_INFINITY,
  }: LoadOptions & {
    concurrency: number;
  },
): Promise<LoadResult> {
  let i = 0;
  if (warmupMs > 0) {
    const until = performance.now() + warmupMs;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until) await fn(i++).catch(() => {});
      }),
    );
  }
  const h = new Latencies();
  let requests = 0;
  let errors = 0;
  const sampler = new Sampler();
  const t0 = performance.now();
  const until = t0 + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      // One clock read per request: the end of one call is the start of the next.
      let t = performance.now();
      while (t < until && requests < maxRequests) {
        const s = t;
        try {
          await fn(i++);
        } catch {
          errors++;
        }
        requests++;
        t = performance.now();
        h.add(t - s);
      }
    }),
  );
  const elapsed = performance.now() - t0;
  return finish(name, h, requests, errors, elapsed, sampler.stop());
}

/**
 * Open loop: requests arrive at `rate` per second whatever the latency (latency is measured from
 * each request's scheduled start, so queueing is not hidden). At most `maxInFlight` at once; the
 * rest are counted as dropped.
 */
export async function openLoop(
  name: string,
  fn: (i: number) => Promise<unknown>,
  {
    rate,
    durationMs = 3000,
    warmupMs = 300,
    maxInFlight = 10_000,
  }: LoadOptions & { rate: number; maxInFlight?: number },
): Promise<LoadResult> {
  if (warmupMs > 0) {
    await closedLoop(`${name} (warmup)`, fn, { concurrency: 1, durationMs: warmupMs, warmupMs: 0 });
  }
  const h = new Latencies();
  let requests = 0;
  let errors = 0;
  let dropped = 0;
  let inFlight = 0;
  let i = 0;
  const pending = new Set<Promise<void>>();
  const sampler = new Sampler();
  const t0 = performance.now();
  const interval = 1000 / rate;
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const now = performance.now();
      const elapsed = now - t0;
      const due = Math.min(Math.floor(elapsed / interval) + 1, Math.floor(durationMs / interval));
      while (sent < due) {
        const scheduled = t0 + sent * interval;
        sent++;
        if (inFlight >= maxInFlight) {
          dropped++;
          continue;
        }
        inFlight++;
        const p = fn(i++).then(
          () => {},
          () => {
            errors++;
          },
        );
        const tracked = p.finally(() => {
          inFlight--;
          requests++;
          h.add(performance.now() - scheduled);
          pending.delete(tracked);
        });
        pending.add(tracked);
      }
      if (elapsed >= durationMs) resolve();
      else setTimeout(tick, Math.max(0, Math.min(interval, 1)));
    };
    tick();
  });
  await Promise.all(pending);
  const result = finish(name, h, requests, errors, performance.now() - t0, sampler.stop());
  result.dropped = dropped;
  return result;
}

/** Sequential calls; time per call (ms) as mean and percentiles. */
export async function timePerCall(
  name: string,
  fn: (i: number) => Promise<unknown> | unknown,
  { iterations = 1000, warmup = 50 }: { iterations?: number; warmup?: number } = {},
): Promise<LoadResult> {
  for (let i = 0; i < warmup; i++) await fn(i);
  const h = new Latencies();
  const sampler = new Sampler();
  const t0 = performance.now();
  let errors = 0;
  let t = t0;
  for (let i = 0; i < iterations; i++) {
    const s = t;
    try {
      await fn(i);
    } catch {
      errors++;
    }
    t = performance.now();
    h.add(t - s);
  }
  return finish(name, h, iterations, errors, performance.now() - t0, sampler.stop());
}

/**
 * Interleaves several measurements round by round (A, B, A, B, ...) and keeps, per name, the
 * round with the median throughput: on a shared, noisy machine this is fairer than measuring
 * each once, back to back.
 */
export async function interleaved(
  rounds: number,
  runs: { name: string; run: () => Promise<LoadResult> }[],
): Promise<LoadResult[]> {
  const all = new Map<string, LoadResult[]>();
  for (let r = 0; r < rounds; r++) {
    for (const { name, run } of runs) {
      const res = await run();
      res.name = name;
      const list = all.get(name) ?? [];
      list.push(res);
      all.set(name, list);
    }
  }
  return runs.map(({ name }) => {
    const list = [...(all.get(name) ?? [])].sort((a, b) => a.throughput - b.throughput);
    return list[Math.floor(list.length / 2)]!;
  });
}

function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return '-';
  if (Math.abs(n) >= 1000) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(digits);
}

/**
 * A markdown table of results beside a baseline from the same run: throughput and p99 with
 * their ratios to the baseline, plus p50, p90, CPU, throughput per CPU-second against the
 * baseline's, and peak RSS.
 *
 * @example
 * ```ts
 * console.log(ratioTable('mlp, 256 callers', unbatched, [batched]));
 * ```
 */
/**
 * Throughput per CPU-second against the baseline's: what a loaded machine disturbs far less than
 * wall-clock throughput (a process that is not scheduled neither serves nor spends CPU). '-' when
 * either side has no CPU figure.
 */
export function perCpuRatio(r: LoadResult, baseline: LoadResult): string {
  if (!(r.cpuCores > 0) || !(baseline.cpuCores > 0) || !(baseline.throughput > 0)) return '-';
  return fmt(r.throughput / r.cpuCores / (baseline.throughput / baseline.cpuCores));
}

export function ratioTable(title: string, baseline: LoadResult, results: LoadResult[]): string {
  const rows = [baseline, ...results];
  const extraKeys = [...new Set(rows.flatMap((r) => Object.keys(r.extra ?? {})))];
  const header = [
    'configuration',
    'throughput (req/s)',
    'x baseline',
    'p50 (ms)',
    'p90 (ms)',
    'p99 (ms)',
    'p99 x baseline',
    'errors',
    'CPU (cores)',
    'x baseline per CPU-s',
    'peak RSS (MiB)',
    ...extraKeys,
  ];
  const lines = [
    `#### ${title}`,
    '',
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
  ];
  for (const r of rows) {
    const isBase = r === baseline;
    lines.push(
      `| ${[
        isBase ? `${r.name} (baseline)` : r.name,
        fmt(r.throughput, 1),
        isBase ? '1.00' : fmt(r.throughput / baseline.throughput),
        fmt(r.p50, 3),
        fmt(r.p90, 3),
        fmt(r.p99, 3),
        isBase ? '1.00' : fmt(r.p99 / baseline.p99),
        String(r.errors),
        fmt(r.cpuCores),
        isBase ? '1.00' : perCpuRatio(r, baseline),
        fmt(r.peakRssMb, 0),
        ...extraKeys.map((k) => String(r.extra?.[k] ?? '')),
      ].join(' | ')} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** What a scenario receives. */
export interface ScenarioContext {
  /** Short run (CI, `--quick`): smaller windows, fewer configurations. */
  quick: boolean;
  /** Progress output (goes to stderr, not into the report). */
  log: (message: string) => void;
  /** Picks `full` normally and `quick` in quick mode. */
  pick<T>(full: T, quick: T): T;
  /**
   * Draws a bar chart (SVG) beside the report and returns the markdown that shows it.
   * `markAt: 1` draws the line a ratio is measured against.
   */
  chart(file: string, title: string, bars: Bar[], unit: string, options?: { markAt?: number }): string;
  /** Adds a line to the report's headline summary at the top (markdown, one sentence or two). */
  headline(text: string): void;
}

/** A benchmark scenario: returns its section of the report as markdown. */
export interface Scenario {
  name: string;
  title: string;
  run(ctx: ScenarioContext): Promise<string>;
}

/** Declares a scenario (identity, for types). */
export function scenario(s: Scenario): Scenario {
  return s;
}
