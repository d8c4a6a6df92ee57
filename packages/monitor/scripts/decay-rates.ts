/**
 * False alarms and detection delay of the accuracy-decay alarm (the monitor's FeedbackTracker:
 * predictions logged, labels joined, the Bernoulli CUSUM), by simulation and on real MNIST.
 *
 *   npx tsx packages/monitor/scripts/decay-rates.ts [--trials 1000]
 *
 * Each trial runs 2,000 labels at the baseline accuracy (the alarm's statistic settles), then:
 * - false alarms: 500 more labels at the baseline accuracy; a trial counts if the alarm stands or
 *   is raised at any point in them;
 * - detection: 500 labels at an accuracy 5 points lower; a trial counts if the alarm is raised
 *   within them (trials with an alarm already standing at the change are left out and counted).
 * Simulation: labels right with probability p (the baseline p0, or p0 - 0.05).
 * Real MNIST: the baseline is measured with measureBaseline() on the 200 held-out digits (never
 * used to train mnist-cnn); the stream resamples those digits (clean for in-control; with faded
 * ink for decay, at the factor whose accuracy is closest to 5 points below the baseline), each with
 * mnist-cnn's real logits. Seeded: the same figures on every run.
 */
import type { Tensors } from '@mlserve/core';
import { mnistHoldout } from '@mlserve/test-utils';
import { type Baseline, designCusum, FeedbackTracker, measureBaseline } from '../src/index.js';
import { wilson } from '../src/stats.js';
import { batchOf, mnistModel } from '../test/mnist-data.js';
import { fade, rng } from './mnist-features.js';

const args = process.argv.slice(2);
const trials = Number(args[args.indexOf('--trials') + 1]) || 1000;
const WARM = 2000;
const HORIZON = 500;
const random = rng(5);

/** One labelled prediction: the model's outputs for one digit and the true label. */
interface Item {
  outputs: Tensors;
  label: number;
}

let nextId = 0;
/** Feeds `n` items through the tracker; returns whether the alarm stood or was raised. */
function run(tracker: FeedbackTracker, n: number, draw: () => Item): { alarmed: boolean; raised: boolean } {
  let alarmed = tracker.alarm;
  let raised = false;
  for (let i = 0; i < n; i++) {
    const item = draw();
    const id = String(nextId++);
    tracker.log(id, item.outputs, 0);
    tracker.feedback(id, item.label, 0);
    if (tracker.takeChange() && tracker.alarm) raised = true;
    if (tracker.alarm) alarmed = true;
  }
  return { alarmed, raised };
}

function measure(baseline: Baseline, inControl: () => Item, decayed: () => Item) {
  let falseAlarms = 0;
  let detected = 0;
  let standing = 0;
  let standingA = 0;
  for (let t = 0; t < trials; t++) {
    const a = new FeedbackTracker({}, baseline);
    run(a, WARM, inControl);
    if (a.alarm) standingA++;
    else if (run(a, HORIZON, inControl).raised) falseAlarms++;
    const b = new FeedbackTracker({}, baseline);
    run(b, WARM, inControl);
    if (b.alarm) {
      standing++;
      continue;
    }
    if (run(b, HORIZON, decayed).raised) detected++;
  }
  return {
    falseAlarms: falseAlarms / (trials - standingA),
    detected: detected / (trials - standing),
    standing,
    standingA,
  };
}

const pct = (a: number) => `${(a * 100).toFixed(1)}%`;
const one = (logits: number[]): Tensors => ({
  logits: { type: 'float32', dims: [1, 2], data: Float32Array.from(logits) },
});
const RIGHT = one([5, 0]);

const left = (r: { standing: number; standingA: number }) =>
  r.standing + r.standingA > 0
    ? ` (${r.standingA}/${r.standing} trials left out: alarm standing after the 2,000)`
    : '';
const draw = (p: number) => (): Item => ({ outputs: RIGHT, label: random() < p ? 0 : 1 });

console.log(`\nSimulation (${trials} trials each; ${WARM} labels to settle, then ${HORIZON}):\n`);
console.log(
  '| baseline accuracy (rows measured) | live accuracy in control | CUSUM threshold (step of an error; a right answer steps down 1) | false alarms per 500 labels | 5-point drop (from the baseline) detected within 500 labels |',
);
console.log('| --- | ---: | --- | ---: | ---: |');
const cases: [number, number, number][] = [
  [0.8, 10_000, 0],
  [0.9, 10_000, 0],
  [0.964, 10_000, 0],
  [0.98, 10_000, 0],
  [0.99, 10_000, 0],
  // A baseline measured on 200 rows: in control at the measured figure, and one standard error
  // below it (the default margin is that standard error).
  [0.964, 200, 0],
  [0.964, 200, -Math.sqrt((0.964 * 0.036) / 200)],
];
for (const [p0, rows, offset] of cases) {
  const baseline: Baseline = { task: 'classification', output: 'logits', rows, accuracy: p0 };
  const r = measure(baseline, draw(p0 + offset), draw(p0 - 0.05));
  const margin = p0 - wilson(p0 * rows, rows, 1).lower;
  const d = designCusum(p0 - margin, p0 - 0.05, 0.01, HORIZON);
  console.log(
    `| ${p0} (${rows.toLocaleString('en-US')}) | ${(p0 + offset).toFixed(3)} | ${d.threshold} (${d.up}) | ${pct(r.falseAlarms)} | ${pct(r.detected)}${left(r)} |`,
  );
}

// Real MNIST.
const holdout = mnistHoldout();
const model = await mnistModel();
const images = Array.from({ length: holdout.count }, (_, i) => holdout.image(i));
const outputsOf = async (imgs: Float32Array[]): Promise<Tensors[]> => {
  const out = await model.infer(batchOf(imgs));
  const logits = out.logits!.data as Float32Array;
  return imgs.map((_, i) => one(Array.from(logits.subarray(i * 10, i * 10 + 10))));
};
const accuracyOf = (outs: Tensors[]) =>
  outs.filter((o, i) => {
    const l = o.logits!.data as Float32Array;
    return l.indexOf(Math.max(...l)) === holdout.labels[i];
  }).length / outs.length;
const baseline = await measureBaseline(
  images.map((img, i) => ({ inputs: batchOf([img]), label: holdout.labels[i]! })),
  { model, output: 'logits' },
);
const clean = await outputsOf(images);
const pick = (outs: Tensors[]) => (): Item => {
  const i = Math.floor(random() * outs.length);
  return { outputs: outs[i]!, label: holdout.labels[i]! };
};
console.log(
  `\nReal MNIST: baseline ${(baseline.accuracy! * 100).toFixed(1)}% measured by measureBaseline() on the 200 held-out digits (ECE ${baseline.ece!.toFixed(3)}, mean confidence ${baseline.meanConfidence!.toFixed(3)}); streams resample those digits with mnist-cnn's logits.\n`,
);
console.log(
  '| stream | accuracy | points below baseline | false alarms per 500 labels / detected within 500 labels |',
);
console.log('| --- | ---: | ---: | ---: |');
for (const f of [1, 0.4, 0.375, 0.35, 0.325]) {
  const outs = f === 1 ? clean : await outputsOf(images.map((img) => fade(img, f)));
  const acc = accuracyOf(outs);
  const r = measure(baseline, pick(clean), pick(outs));
  console.log(
    `| ${f === 1 ? 'clean (in control)' : `ink x${f}`} | ${(acc * 100).toFixed(1)}% | ${((baseline.accuracy! - acc) * 100).toFixed(1)} | ${f === 1 ? `${pct(r.falseAlarms)} false alarms` : `${pct(r.detected)} detected`}${left(r)} |`,
  );
}
await model.dispose();
