import type { Tensors } from '@mlserve/core';
import { seededRandom } from '@mlserve/test-utils';
import { describe, expect, it } from 'vitest';
import { type Baseline, designCusum, FeedbackTracker, readPrediction } from '../src/feedback.js';

const rng = seededRandom;

const logits = (...rows: number[][]): Tensors => ({
  logits: { type: 'float32', dims: [rows.length, rows[0]!.length], data: Float32Array.from(rows.flat()) },
});
const baseline = (accuracy: number, rows = 10_000): Baseline => ({
  task: 'classification',
  output: 'logits',
  rows,
  accuracy,
  gap: 0.01,
  ece: 0.02,
});

describe('readPrediction', () => {
  it('takes the argmax and the softmax probability of each row, or a ready distribution as it is', () => {
    const p = readPrediction(logits([0, 2, 1], [3, 0, 0]), 'logits', 'classification');
    expect(Array.from(p.value)).toEqual([1, 0]);
    const z = Math.exp(0) + Math.exp(2) + Math.exp(1);
    expect(p.confidence[0]).toBeCloseTo(Math.exp(2) / z, 12);
    expect(readPrediction(logits([0.2, 0.7, 0.1]), 'logits', 'classification').confidence[0]).toBeCloseTo(
      0.7,
      6,
    );
    expect(Array.from(readPrediction(logits([0.8]), 'logits', 'classification').value)).toEqual([1]);
    expect(() => readPrediction({}, 'logits', 'classification')).toThrow(/missing/);
  });
});

describe('FeedbackTracker: the join', () => {
  it('joins labels with logged predictions by id and counts what finds none', () => {
    const t = new FeedbackTracker({}, baseline(0.9));
    t.log('a', logits([0, 5]), 0);
    t.log('b', logits([5, 0]), 0);
    expect(t.feedback('a', 1, 1)).toBe(true);
    expect(t.feedback('b', 1, 1)).toBe(true);
    expect(t.feedback('b', 1, 1)).toBe(false); // already labelled
    expect(t.feedback('zzz', 0, 1)).toBe(false);
    expect(t.stats()).toMatchObject({ pending: 0, logged: 2, labels: 4, joined: 2, unmatched: 2 });
    const q = t.report();
    expect(q.rows).toBe(2);
    expect(q.accuracy!.estimate).toBe(0.5);
  });

  it('forgets predictions after the TTL and beyond maxPending, oldest first', () => {
    const t = new FeedbackTracker({ ttlMs: 1000, maxPending: 3 }, baseline(0.9));
    for (let i = 0; i < 5; i++) t.log(`r${i}`, logits([0, 1]), i * 100);
    expect(t.stats()).toMatchObject({ pending: 3, evicted: 2 });
    expect(t.feedback('r0', 1, 500)).toBe(false); // evicted
    expect(t.feedback('r4', 1, 500)).toBe(true);
    expect(t.feedback('r2', 1, 2000)).toBe(false); // logged at 200: past its TTL, not yet swept
    t.expire(2000); // the sweep takes r3
    expect(t.stats()).toMatchObject({ pending: 0, expired: 2, evicted: 2, joined: 1, unmatched: 2 });
  });

  it('takes class names, one label per row of a batch, and rejects what cannot be a label', () => {
    const t = new FeedbackTracker({ labels: ['cat', 'dog'] }, baseline(0.9));
    t.log('batch', logits([0, 1], [1, 0], [1, 0]), 0);
    expect(t.feedback('batch', ['dog', 0, 1], 0)).toBe(true);
    expect(t.report().accuracy!.estimate).toBeCloseTo(2 / 3, 12);
    t.log('x', logits([0, 1]), 0);
    expect(() => t.feedback('x', 'cow', 0)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => t.feedback('x', 1.5, 0)).toThrow(/integer/);
    expect(() => t.feedback('x', [1, 1], 0)).toThrow(/2 labels for a request of 1 rows/);
    expect(() => t.feedback('', 1, 0)).toThrow(/request id/);
    expect(t.stats().invalid).toBe(4);
    // The prediction is still there for a good label.
    expect(t.feedback('x', 'dog', 0)).toBe(true);
  });

  it('keeps its memory bounded under a flood of unlabelled predictions', () => {
    const t = new FeedbackTracker({ maxPending: 1000 }, baseline(0.9));
    const out = logits([0, 1]);
    for (let i = 0; i < 100_000; i++) t.log(`r${i}`, out, i);
    expect(t.stats()).toMatchObject({ pending: 1000, evicted: 99_000 });
  });

  it('evicts the oldest prediction in constant time once the log is full', () => {
    // Growth, not speed: logging into a full log (each log evicts one) against logging into an
    // empty one, in process CPU time. A Map scanned from its start for the oldest entry (the old
    // log) took 20-60x as long once full, as it walked the freed entries left at its front.
    const t = new FeedbackTracker({ maxPending: 50_000 }, baseline(0.9));
    const out = logits([0, 1]);
    const cpu = (from: number) => {
      const c0 = process.cpuUsage();
      for (let i = from; i < from + 50_000; i++) t.log(`r${i}`, out, i);
      const c = process.cpuUsage(c0);
      return c.user + c.system;
    };
    const empty = cpu(0);
    const full = cpu(50_000);
    expect(t.stats()).toMatchObject({ pending: 50_000, evicted: 50_000 });
    expect(full).toBeLessThan(10 * Math.max(empty, 1000));
    // Every prediction still waiting joins; the evicted ones do not.
    expect(t.feedback('r99999', 1, 0)).toBe(true);
    expect(t.feedback('r50000', 1, 0)).toBe(true);
    expect(t.feedback('r49999', 1, 0)).toBe(false);
  });

  it('keeps joining by id through compactions of the log, labels in any order', () => {
    const t = new FeedbackTracker({ maxPending: 10_000 }, baseline(0.9));
    const right = logits([0, 5]);
    // Every third prediction is never labelled: the log fills with freed slots and is compacted.
    for (let i = 0; i < 20_000; i++) {
      t.log(`r${i}`, right, i);
      if (i >= 100 && (i - 100) % 3 !== 0) expect(t.feedback(`r${i - 100}`, 1, i)).toBe(true);
    }
    expect(t.stats().pending).toBe(Math.ceil(19_900 / 3) + 100);
    // The oldest unlabelled ones and the last 100 are all still there, in any order of labels.
    expect(t.feedback('r19999', 1, 20_000)).toBe(true);
    expect(t.feedback('r0', 1, 20_000)).toBe(true);
    expect(t.feedback('r3', 1, 20_000)).toBe(true);
    expect(t.feedback('r1', 1, 20_000)).toBe(false); // labelled already
    expect(t.report().accuracy!.estimate).toBe(1);
  });
});

describe('FeedbackTracker: quality and the decay alarm (seeded)', () => {
  const RIGHT = logits([5, 0]);
  let id = 0;
  const feed = (t: FeedbackTracker, n: number, p: number, r: () => number) => {
    let raisedAt = -1;
    for (let i = 0; i < n; i++) {
      const k = String(id++);
      t.log(k, RIGHT, 0);
      t.feedback(k, r() < p ? 0 : 1, 0);
      if (t.takeChange() && t.alarm && raisedAt < 0) raisedAt = i;
    }
    return raisedAt;
  };

  it('designs the CUSUM for at most alpha false alarms per horizon', () => {
    for (const p0 of [0.7, 0.9, 0.98]) {
      const d = designCusum(p0, p0 - 0.05, 0.01, 500);
      expect(d.falseAlarm).toBeLessThanOrEqual(0.01);
      // Cached: designed once per baseline.
      expect(designCusum(p0, p0 - 0.05, 0.01, 500)).toBe(d);
      // A tighter alpha needs a higher threshold.
      expect(designCusum(p0, p0 - 0.05, 0.001, 500).threshold).toBeGreaterThan(d.threshold);
      expect(d.threshold).toBeGreaterThan(d.up);
    }
  });

  it('stays quiet at the baseline accuracy and catches a 5-point drop within 500 labels', () => {
    const r = rng(3);
    let falseAlarms = 0;
    let caught = 0;
    for (let trial = 0; trial < 40; trial++) {
      const t = new FeedbackTracker({}, baseline(0.98));
      if (feed(t, 2500, 0.98, r) >= 0) falseAlarms++;
      const u = new FeedbackTracker({}, baseline(0.98));
      feed(u, 1000, 0.98, r);
      if (u.alarm) continue;
      const at = feed(u, 500, 0.93, r);
      if (at >= 0) caught++;
    }
    // Expected: about 5 x 1% over 2,500 labels each; detection about 98% (see the README).
    expect(falseAlarms).toBeLessThanOrEqual(4);
    expect(caught).toBeGreaterThanOrEqual(36);
  });

  it('reports accuracy against the baseline with intervals, then clears the alarm on recovery', () => {
    const r = rng(11);
    const t = new FeedbackTracker({ window: 500 }, baseline(0.95, 1000));
    feed(t, 1000, 0.8, r);
    const q = t.report();
    expect(q.decay.detected).toBe(true);
    expect(q.decay.since).toMatch(/^\d{4}-/);
    expect(q.accuracy!.estimate).toBeGreaterThan(0.74);
    expect(q.accuracy!.estimate).toBeLessThan(0.86);
    expect(q.accuracy!.lower).toBeLessThan(q.accuracy!.estimate);
    expect(q.baseline).toMatchObject({ estimate: 0.95, rows: 1000 });
    expect(q.difference!.upper).toBeLessThan(0);
    // Overconfident: confidence ~0.993 on every row, right 80% of the time.
    expect(q.calibration!.gap.lower).toBeGreaterThan(0.1);
    expect(q.calibration!.baselineGap).toBe(0.01);
    feed(t, 3000, 0.99, r);
    expect(t.report().decay).toMatchObject({ detected: false, statistic: 0 });
    expect(t.report().decay.since).toBeUndefined();
  });

  it('tracks mean absolute error for regression and alarms when it rises', () => {
    const r = rng(5);
    const base: Baseline = { task: 'regression', output: 'y', rows: 2000, mae: 1, maeStd: 0.8 };
    const t = new FeedbackTracker({ window: 200 }, base);
    const y = (v: number): Tensors => ({ y: { type: 'float32', dims: [1, 1], data: Float32Array.of(v) } });
    const run = (n: number, scale: number) => {
      for (let i = 0; i < n; i++) {
        const k = String(id++);
        t.log(k, y(0), 0);
        // |error| ~ exponential with mean `scale` (sd = mean), labels as numbers or numeric strings.
        const e = -Math.log(1 - r()) * scale;
        t.feedback(k, i % 2 ? e : String(e), 0);
      }
    };
    run(200, 1);
    expect(t.report().mae!.estimate).toBeGreaterThan(0.8);
    expect(t.report().decay.detected).toBe(false);
    run(200, 1.6);
    const q = t.report();
    expect(q.mae!.lower).toBeGreaterThan(1);
    expect(q.decay.detected).toBe(true);
    expect(() => t.feedback('nope', 'abc', 0)).toThrow(/finite number/);
  });
});

describe('FeedbackTracker: a perfect baseline', () => {
  it('does not alarm on the first error when the baseline got every one of its rows right', () => {
    const t = new FeedbackTracker({}, baseline(1, 200));
    const right = logits([5, 0]);
    let raised = 0;
    for (let i = 0; i < 300; i++) {
      t.log(`p${i}`, right, 0);
      t.feedback(`p${i}`, i % 100 === 50 ? 1 : 0, 0); // 99% right: within a 200-row baseline's error
      if (t.takeChange() && t.alarm) raised++;
    }
    expect(raised).toBe(0);
    // With no margin, the first error alone would raise it.
    const strict = new FeedbackTracker({ baselineMargin: 0 }, baseline(1, 200));
    strict.log('q', right, 0);
    strict.feedback('q', 1, 0);
    expect(strict.alarm).toBe(true);
  });
});
