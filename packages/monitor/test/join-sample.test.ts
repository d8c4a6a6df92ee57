import { pipeline, type Tensors } from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import { columns } from '../src/extractors.js';
import { FeedbackTracker, joinUnit } from '../src/feedback.js';
import { monitor } from '../src/monitor.js';
import { profile } from '../src/profile.js';
import { feedbackHandler } from '../src/route.js';
import { scoresModel, x } from './scores-model.js';

const model = scoresModel;
const logits = (...row: number[]): Tensors => ({
  logits: { type: 'float32', dims: [1, row.length], data: Float32Array.from(row) },
});

describe('joinUnit', () => {
  it('places ids uniformly in [0, 1), the same way every time', () => {
    expect(joinUnit('req-42')).toBeCloseTo(0.194318, 6);
    expect(joinUnit('req-42')).toBe(joinUnit(['req', '42'].join('-')));
    // Sequential ids (the hard case for a plain FNV hash) and random ones.
    for (const make of [(i: number) => `r${i}`, () => crypto.randomUUID()]) {
      const units = Array.from({ length: 20_000 }, (_, i) => joinUnit(make(i)));
      for (const rate of [0.1, 0.3, 0.5]) {
        const share = units.filter((u) => u < rate).length / units.length;
        // 20,000 ids: a standard error of at most 0.0035.
        expect(Math.abs(share - rate)).toBeLessThan(0.015);
      }
      expect(Math.min(...units)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...units)).toBeLessThan(1);
    }
  });
});

describe('feedback.sampleRate', () => {
  it('logs and joins the ids under the rate, skips the labels of the others, and says which is which', async () => {
    const ex = [columns('x', ['x'])];
    const ref = await profile([{ inputs: x(0.5) }], { extractors: ex });
    const watch = monitor({
      profile: ref,
      extractors: ex,
      sampleRate: 0,
      feedback: { output: 'scores', sampleRate: 0.3 },
    });
    const served = pipeline(model, watch);
    const ids = Array.from({ length: 2000 }, (_, i) => `q${i}`);
    for (const id of ids) await served.infer(x(0.9), { id });
    const inSample = ids.filter((id) => joinUnit(id) < 0.3);
    expect(inSample.length).toBeGreaterThan(500);
    expect(inSample.length).toBeLessThan(700);
    expect(watch.stats().feedback).toMatchObject({ logged: inSample.length, pending: inSample.length });
    for (const id of ids) expect(watch.feedback(id, 0)).toBe(joinUnit(id) < 0.3);
    for (const id of ids.slice(0, 50)) expect(watch.joins(id)).toBe(joinUnit(id) < 0.3);
    expect(watch.stats().feedback).toMatchObject({
      labels: 2000,
      joined: inSample.length,
      skipped: 2000 - inSample.length,
      unmatched: 0,
      pending: 0,
      sampleRate: 0.3,
    });
    // A label in the sample with no prediction is unmatched; a bad label is refused either way.
    const unknown = Array.from({ length: 100 }, (_, i) => `nobody${i}`).find((id) => joinUnit(id) < 0.3)!;
    const outside = Array.from({ length: 100 }, (_, i) => `nobody${i}`).find((id) => joinUnit(id) >= 0.3)!;
    expect(watch.feedback(unknown, 0)).toBe(false);
    expect(watch.stats().feedback!.unmatched).toBe(1);
    for (const id of [unknown, outside])
      expect(() => watch.feedback(id, 'not a class')).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    expect(watch.stats().feedback!.invalid).toBe(2);
    // The route tells the three apart.
    const handle = feedbackHandler({ tab: watch });
    await served.infer(x(0.9), { id: inSample[0]! });
    const skippedId = ids.find((id) => joinUnit(id) >= 0.3)!;
    expect(
      await handle('tab', undefined, {
        labels: [
          { id: inSample[0], label: 0 },
          { id: skippedId, label: 0 },
          { id: unknown, label: 0 },
        ],
      }),
    ).toEqual({ joined: 1, unmatched: 1, skipped: 1 });
    // Accuracy comes from the joined labels only (all predicted class 0, all labelled 0), over
    // the rolling window of the last 500.
    expect(watch.quality().rows).toBe(500);
    expect(watch.quality().accuracy!.estimate).toBe(1);
    await served.dispose();
  });

  it('rejects a rate outside [0, 1]', async () => {
    const ex = [columns('x', ['x'])];
    const ref = await profile([{ inputs: x(0.5) }], { extractors: ex });
    for (const sampleRate of [-0.1, 1.5, Number.NaN])
      expect(() =>
        monitor({ profile: ref, extractors: ex, feedback: { output: 'scores', sampleRate } }),
      ).toThrow(/options.feedback.sampleRate must be in \[0, 1\]/);
  });
});

describe('FeedbackTracker: an id logged again', () => {
  it('joins its latest prediction, and its earlier slot neither counts nor expires it', () => {
    const t = new FeedbackTracker({ ttlMs: 1000, output: 'logits' }, undefined);
    t.log('a', logits(5, 0), 0); // predicts 0
    t.log('b', logits(5, 0), 10);
    t.log('a', logits(0, 5), 500); // predicts 1, at 500
    expect(t.stats().pending).toBe(2);
    // At 1200 the first 'a' (0) and 'b' (10) are past the TTL, the second 'a' (500) is not.
    t.expire(1200);
    expect(t.stats()).toMatchObject({ pending: 1, expired: 1 });
    expect(t.feedback('a', 1, 1200)).toBe(true);
    expect(t.report().accuracy!.estimate).toBe(1);
    expect(t.stats().pending).toBe(0);
    // The ring stays usable: many more logs and joins, repeated ids among them.
    for (let i = 0; i < 500; i++) {
      t.log(`c${i % 50}`, logits(0, 5), 2000 + i);
      if (i % 3 === 0) t.feedback(`c${i % 50}`, 1, 2000 + i);
    }
    const pending = t.stats().pending;
    expect(pending).toBeLessThanOrEqual(50);
    for (let i = 0; i < 50; i++) t.feedback(`c${i}`, 1, 3000);
    expect(t.stats().pending).toBe(0);
    expect(t.stats().unmatched).toBe(50 - pending);
  });
});
