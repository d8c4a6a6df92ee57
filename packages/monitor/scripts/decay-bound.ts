/**
 * How fast can any detector catch a 5-point accuracy drop (95.5% -> 90.5%, mnist-cnn's baseline)
 * with at most 1% false alarms per 500 labels, and how close the monitor's CUSUM comes. Exact
 * (Markov chains and binomial sums, no simulation):
 *
 *   npx tsx packages/monitor/scripts/decay-bound.ts [--p0 0.955] [--drop 0.05]
 *
 * - The information per label: the Bernoulli Kullback-Leibler divergence KL(p1 || p0).
 * - Lorden's bound (Lorden 1971; Lai 1998): any detector whose mean time to a false alarm is at
 *   least gamma has a worst-case mean delay of at least ln(gamma) / KL (1 + o(1)); 1% per 500
 *   labels means gamma of about 49,750.
 * - Exactly optimal for that criterion is the CUSUM with the true p0 and p1 (Moustakides 1986): so
 *   the reference is that CUSUM, computed exactly with a fine log-likelihood scale, its threshold
 *   set for at most 1% false alarms per 500 labels from its stationary state (the monitor's rule).
 * - An upper bound no detector can pass: the most powerful test of 500 labels that knows when the
 *   drop happened (Neyman-Pearson on the error count, at 1%).
 * - Last column: false alarms when the model's true accuracy is one standard error of a 200-row
 *   baseline below the measured figure (what the monitor's margin guards against).
 * - The monitor's CUSUM as FeedbackTracker designs it (integer steps, in-control accuracy = baseline
 *   minus one standard error of the baseline), for baselines measured on 200 and 10,000 rows, and
 *   with no margin.
 */
import { designCusum } from '../src/index.js';
import { wilson } from '../src/stats.js';

const args = process.argv.slice(2);
const arg = (name: string, def: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const P0 = arg('--p0', 0.955);
const DROP = arg('--drop', 0.05);
const P1 = P0 - DROP;
const ALPHA = 0.01;
const HORIZON = 500;

/** A CUSUM in integer steps: a right answer moves it down `down` (floor 0), a wrong one up `up`. */
type F = Float64Array<ArrayBufferLike>;

interface Chain {
  down: number;
  up: number;
  h: number;
}

function step(pi: F, p: number, c: Chain, reset: boolean): { next: F; alarmed: number } {
  const next = new Float64Array(c.h);
  let alarmed = 0;
  for (let s = 0; s < c.h; s++) {
    const m = pi[s]!;
    if (m === 0) continue;
    next[Math.max(0, s - c.down)]! += p * m;
    if (s + c.up >= c.h) {
      alarmed += (1 - p) * m;
      if (reset) next[0]! += (1 - p) * m;
    } else next[s + c.up]! += (1 - p) * m;
  }
  return { next, alarmed };
}

/** The statistic's long-run distribution at accuracy p (restarted at 0 after each alarm). */
function stationary(p: number, c: Chain): F {
  let pi: F = new Float64Array(c.h);
  pi[0] = 1;
  for (let i = 0; i < 200_000; i++) {
    const { next } = step(pi, p, c, true);
    let diff = 0;
    for (let s = 0; s < c.h; s++) diff += Math.abs(next[s]! - pi[s]!);
    pi = next;
    if (diff < 1e-13 && i > c.h) break;
  }
  return pi;
}

/** P(alarm within n labels at accuracy p), starting from `start`; and the mean delay (labels). */
function run(start: F, p: number, c: Chain, n: number): { within: number; meanDelay: number } {
  let pi: F = start;
  let survive = 1;
  let within = 0;
  let meanDelay = 0;
  for (let t = 0; t < 200_000 && survive > 1e-9; t++) {
    meanDelay += survive; // E[T] = sum over t >= 0 of P(T > t)
    const { next, alarmed } = step(pi, p, c, false);
    survive -= alarmed;
    if (t < n) within += alarmed;
    pi = next;
  }
  return { within, meanDelay };
}

const zero = (h: number) => {
  const z = new Float64Array(h);
  z[0] = 1;
  return z;
};

/** The smallest threshold with at most alpha false alarms per horizon at p0, from the stationary state. */
function calibrate(p0: number, down: number, up: number): Chain {
  const fa = (h: number) => {
    const c = { down, up, h };
    return run(stationary(p0, c), p0, c, HORIZON).within;
  };
  let hi = up + down + 1;
  while (fa(hi) > ALPHA) hi *= 2;
  let lo = 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (fa(mid) <= ALPHA) hi = mid;
    else lo = mid + 1;
  }
  return { down, up, h: hi };
}

/** One standard error below P0 for a baseline of 200 rows: where its true accuracy may well be. */
const LOW = wilson(P0 * 200, 200, 1).lower;

/** Evaluates a chain with true accuracy P0 in control and P1 after the drop. */
function evaluate(c: Chain) {
  const low = run(stationary(LOW, c), LOW, c, HORIZON).within;
  const settled = stationary(P0, c);
  // The drop arrives when the statistic is where it settled (conditioned on no alarm standing).
  const fa = run(settled, P0, c, HORIZON).within;
  const det = run(settled, P1, c, HORIZON);
  const det0 = run(zero(c.h), P1, c, HORIZON);
  return {
    fa,
    low,
    detected: det.within,
    delay: det.meanDelay,
    detected0: det0.within,
    delay0: det0.meanDelay,
  };
}

const kl = (a: number, b: number) => a * Math.log(a / b) + (1 - a) * Math.log((1 - a) / (1 - b));
const I = kl(P1, P0);
const gamma = 1 / (1 - (1 - ALPHA) ** (1 / HORIZON));
console.log(
  `Accuracy ${P0} -> ${P1.toFixed(3)}, at most ${ALPHA * 100}% false alarms per ${HORIZON} labels.\n`,
);
console.log(`- KL(p1 || p0) = ${I.toFixed(5)} nats per label (KL(p0 || p1) = ${kl(P0, P1).toFixed(5)})`);
console.log(
  `- 1% per ${HORIZON} labels as a mean time to false alarm: gamma = ${Math.round(gamma).toLocaleString('en-US')} labels; ` +
    `Lorden's first-order bound on the worst-case mean delay ln(gamma)/KL = ${(Math.log(gamma) / I).toFixed(0)} labels`,
);

// Neyman-Pearson on the number of errors among 500 labels, knowing the drop came at label 1.
const logChoose = (n: number, k: number) => {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log((n - k + i) / i);
  return s;
};
const binomTail = (n: number, q: number, c: number) => {
  let s = 0;
  for (let k = c; k <= n; k++) s += Math.exp(logChoose(n, k) + k * Math.log(q) + (n - k) * Math.log(1 - q));
  return s;
};
let crit = 0;
while (binomTail(HORIZON, 1 - P0, crit) > ALPHA) crit++;
const npPower = binomTail(HORIZON, 1 - P1, crit);
console.log(
  `- Upper bound (the most powerful test of the ${HORIZON} labels after a drop whose time it knows): alarm at ${crit}+ errors ` +
    `(false alarms ${(binomTail(HORIZON, 1 - P0, crit) * 100).toFixed(2)}%), detects ${(npPower * 100).toFixed(1)}%\n`,
);

const rows: [string, Chain, string][] = [];
// The optimal detector: the CUSUM of the true p0 and p1, on a fine log-likelihood scale.
const upLlr = Math.log((1 - P1) / (1 - P0));
const downLlr = -Math.log(P1 / P0);
const FINE = 20;
rows.push([
  'optimal: CUSUM of the true p0, p1 (log-likelihood steps to 1/20)',
  calibrate(P0, FINE, Math.round((FINE * upLlr) / downLlr)),
  'p0 known exactly',
]);
rows.push([
  'CUSUM of the true p0, p1, integer steps (the monitor with no margin)',
  calibrate(P0, 1, Math.round(upLlr / downLlr)),
  'baselineMargin: 0',
]);
for (const baseRows of [10_000, 2_000, 200]) {
  const margin = P0 - wilson(P0 * baseRows, baseRows, 1).lower;
  const d = designCusum(P0 - margin, P1, ALPHA, HORIZON);
  rows.push([
    `the monitor, baseline measured on ${baseRows.toLocaleString('en-US')} rows`,
    { down: 1, up: d.up, h: d.threshold },
    `margin ${(margin * 100).toFixed(2)} pt: designed for ${((P0 - margin) * 100).toFixed(2)}%`,
  ]);
}
console.log(
  `| detector | design | threshold (error step / right step) | false alarms per ${HORIZON} at ${P0} | caught within ${HORIZON} labels (from the settled state) | mean delay, labels | caught within ${HORIZON} (from 0) | mean delay from 0 | false alarms per ${HORIZON} if the true accuracy is ${(LOW * 100).toFixed(2)}% |`,
);
console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const [name, c, design] of rows) {
  const e = evaluate(c);
  console.log(
    `| ${name} | ${design} | ${c.h} (${c.up} / ${c.down}) | ${(e.fa * 100).toFixed(2)}% | ${(e.detected * 100).toFixed(1)}% | ${e.delay.toFixed(0)} | ${(e.detected0 * 100).toFixed(1)}% | ${e.delay0.toFixed(0)} | ${(e.low * 100).toFixed(1)}% |`,
  );
}
