import { describe, expect, test } from 'vitest';
import { BACK_TO_BACK_MS, Estimator } from '../src/estimator.js';
import {
  DEADLINE_MARGIN_MS,
  decide,
  type GroupState,
  type LoadState,
  type PolicyConfig,
} from '../src/policy.js';

// The policy and the estimator driven with numbers alone: no clock, no model, no requests.

const cfg = (over: Partial<PolicyConfig> = {}): PolicyConfig => ({
  maxBatch: 64,
  preferred: [],
  fixedDelay: undefined,
  maxLatency: 10,
  ...over,
});
const group = (over: Partial<GroupState> = {}): GroupState => ({
  items: 3,
  oldestAt: 100,
  lastArrivalAt: 100,
  earliestDeadline: Number.POSITIVE_INFINITY,
  oldestQueuedBusy: false,
  ...over,
});
const load = (over: Partial<LoadState> = {}): LoadState => ({
  freeSlots: 1,
  backToBack: false,
  gap: Number.POSITIVE_INFINITY,
  costFixed: 1,
  costPerItem: 0.01,
  ...over,
});

describe('release policy', () => {
  test('every slot busy: nothing is released, however full, old or urgent', () => {
    const busy = load({ freeSlots: 0 });
    expect(decide(cfg(), group({ items: 64 }), busy, 100)).toBe(Number.POSITIVE_INFINITY);
    expect(decide(cfg({ fixedDelay: 2 }), group({ oldestAt: 0 }), busy, 500)).toBe(Number.POSITIVE_INFINITY);
    expect(decide(cfg(), group({ earliestDeadline: 101 }), busy, 100)).toBe(Number.POSITIVE_INFINITY);
  });

  test('full and preferred sizes release at once, with any delay', () => {
    for (const fixedDelay of [undefined, 0, 50]) {
      expect(decide(cfg({ fixedDelay }), group({ items: 64 }), load(), 100)).toBe('full');
      expect(decide(cfg({ fixedDelay, preferred: [4, 8] }), group({ items: 4 }), load(), 100)).toBe(
        'preferred',
      );
      expect(decide(cfg({ fixedDelay, preferred: [4, 8] }), group({ items: 9 }), load(), 100)).toBe(
        'preferred',
      );
    }
  });

  test('a fixed delay holds a group that formed on an idle model until its oldest waited maxDelayMs', () => {
    const c = cfg({ fixedDelay: 2 });
    expect(decide(c, group({ oldestAt: 100 }), load(), 100.5)).toBe(102);
    expect(decide(c, group({ oldestAt: 100 }), load(), 102)).toBe('timer');
    // Even while the model is busy back to back: the delay is the user's to set.
    expect(decide(c, group({ oldestAt: 100 }), load({ backToBack: true }), 101)).toBe(102);
    expect(decide(cfg({ fixedDelay: 0 }), group(), load(), 100)).toBe('idle');
  });

  test('a group that queued while every slot was busy leaves the moment a slot frees, whatever the delay', () => {
    for (const fixedDelay of [undefined, 0, 2, 1000]) {
      expect(decide(cfg({ fixedDelay }), group({ oldestQueuedBusy: true, items: 1 }), load(), 100.1)).toBe(
        'idle',
      );
    }
  });

  test("'auto' releases at once while the model is busy back to back, even when arrivals look close", () => {
    const l = load({ backToBack: true, gap: 0.01, costFixed: 5 });
    expect(decide(cfg(), group({ items: 1 }), l, 100)).toBe('idle');
  });

  test("'auto' on an idle model waits for company only while it is cheaper than a call, within maxLatencyMs", () => {
    // No other caller seen: no wait.
    expect(decide(cfg(), group(), load({ gap: Number.POSITIVE_INFINITY }), 100)).toBe('idle');
    // Next item expected in 2 ms; 3 items waiting pay 6 ms < a call's 10 ms: wait two gaps after the last arrival.
    const l = load({ gap: 2, costFixed: 10 });
    expect(decide(cfg(), group({ lastArrivalAt: 101 }), l, 101)).toBe(105);
    // Ten items would pay 20 ms > 10 ms: go.
    expect(decide(cfg(), group({ items: 10, lastArrivalAt: 101 }), l, 101)).toBe('idle');
    // Never past maxLatencyMs after the oldest.
    expect(decide(cfg({ maxLatency: 3 }), group({ lastArrivalAt: 101 }), l, 101)).toBe(103);
    expect(decide(cfg({ maxLatency: 3 }), group({ lastArrivalAt: 101 }), l, 102.6)).toBe('timer');
  });

  test('a deadline releases a waiting group early, by the expected compute plus a margin', () => {
    const c = cfg({ fixedDelay: 1000 });
    const l = load({ costFixed: 4, costPerItem: 1 }); // 3 items: 7 ms
    const deadline = 200;
    const latest = deadline - DEADLINE_MARGIN_MS - 7;
    expect(decide(c, group({ earliestDeadline: deadline }), l, 100)).toBeCloseTo(latest);
    expect(decide(c, group({ earliestDeadline: deadline }), l, latest)).toBe('deadline');
  });
});

describe('estimator', () => {
  test('fits batch latency as a fixed cost plus a cost per item', () => {
    const e = new Estimator();
    expect(e.expected(10)).toBe(0);
    for (let i = 0; i < 200; i++) {
      const n = 1 + (i % 32);
      e.learn(n, 0.5 + 0.02 * n);
    }
    expect(e.costFixed).toBeCloseTo(0.5, 3);
    expect(e.costPerItem).toBeCloseTo(0.02, 4);
    expect(e.expected(64)).toBeCloseTo(1.78, 2);
  });

  test('the arrival gap comes from items seen while busy or waiting; none seen is Infinity', () => {
    const e = new Estimator();
    e.learn(1, 1);
    expect(e.gap()).toBe(Number.POSITIVE_INFINITY);
    e.observe(0, 5);
    expect(e.gap()).toBe(Number.POSITIVE_INFINITY);
    e.observe(10, 5);
    expect(e.gap()).toBeCloseTo((5 * 0.9 + 5) / 10);
  });

  test('the busy streak: slots taken back to back, gaps under 1 ms included, ended by a longer idle gap', () => {
    const e = new Estimator();
    expect(e.busyMs(0)).toBe(0);
    expect(e.backToBack(0)).toBe(false);
    e.saturate(10);
    expect(e.busyMs(13)).toBe(3);
    e.unsaturate(15);
    // Between two batches: still back to back.
    expect(e.backToBack(15 + BACK_TO_BACK_MS / 2)).toBe(true);
    expect(e.busyMs(15.2)).toBe(5);
    e.saturate(15 + BACK_TO_BACK_MS / 2);
    expect(e.busyMs(20)).toBe(10);
    e.unsaturate(20);
    // Idle for longer: the streak is over, and the next one starts afresh.
    expect(e.backToBack(20 + 2 * BACK_TO_BACK_MS)).toBe(false);
    expect(e.busyMs(20 + 2 * BACK_TO_BACK_MS)).toBe(0);
    e.saturate(30);
    expect(e.busyMs(31)).toBe(1);
  });
});
