import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Model, pipeline } from '@mlserve/core';
import { mnistHoldout, type RedisServer, requireService, startRedis } from '@mlserve/test-utils';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DecayEvent,
  feedbackFromRedisStream,
  imageStats,
  ingestFeedbackFile,
  measureBaseline,
  monitor,
  type Profile,
  profile,
} from '../src/index.js';
import { batchOf, mnistModel } from './mnist-data.js';

const extractors = [imageStats('image')];
const holdout = mnistHoldout();
const held = Array.from({ length: holdout.count }, (_, i) => holdout.image(i));

let model: Model;
let ref: Profile;
beforeAll(async () => {
  model = await mnistModel();
  ref = await profile([{ inputs: batchOf(held) }], { extractors });
  ref.baseline = await measureBaseline(
    held.map((img, i) => ({ inputs: batchOf([img]), label: holdout.labels[i]! })),
    { model, output: 'logits' },
  );
});
afterAll(() => model.dispose());

/** Serves each held-out digit once with request id `<prefix><i>`. */
async function serve(served: Model, prefix: string) {
  for (const [i, img] of held.entries()) await served.infer(batchOf([img]), { id: `${prefix}${i}` });
}

describe('monitor({ feedback }) on mnist-cnn', () => {
  it('measures the baseline on held-out digits, with calibration', () => {
    const b = ref.baseline!;
    expect(b).toMatchObject({ task: 'classification', output: 'logits', rows: 200 });
    expect(b.accuracy).toBeGreaterThan(0.9);
    expect(b.meanConfidence).toBeGreaterThan(0.9);
    expect(b.ece).toBeGreaterThanOrEqual(0);
    expect(b.ece).toBeLessThan(0.1);
  });

  it('joins late labels with served predictions and reproduces the baseline on the same digits', async () => {
    const registry = new Registry();
    const events: DecayEvent[] = [];
    const watch = monitor({
      profile: ref,
      extractors,
      sampleRate: 1,
      feedback: { sampleRate: 1 },
      metrics: { registry },
      onDecay: (e) => events.push(e),
    });
    const served = pipeline(model, watch);
    await served.warmup?.();
    await serve(served, 'a');
    // Requests without an id are served but cannot be joined.
    await served.infer(batchOf([held[0]!]));
    for (const [i, label] of holdout.labels.entries()) expect(watch.feedback(`a${i}`, label)).toBe(true);
    expect(watch.feedback('a0', 1)).toBe(false);
    const q = watch.quality();
    expect(q.rows).toBe(200);
    expect(q.accuracy!.estimate).toBeCloseTo(ref.baseline!.accuracy!, 12);
    expect(q.difference!.lower).toBeLessThan(0);
    expect(q.difference!.upper).toBeGreaterThan(0);
    expect(q.calibration!.ece).toBeCloseTo(ref.baseline!.ece!, 12);
    expect(q.decay.detected).toBe(false);
    expect(events).toEqual([]);
    expect(watch.stats().feedback).toMatchObject({
      logged: 200,
      labels: 201,
      joined: 200,
      unmatched: 1,
      pending: 0,
    });
    await watch.flush();
    const text = await registry.metrics();
    expect(text).toMatch(/mlserve_model_quality\{model="mnist",version="1",metric="accuracy"\} 0\.9/);
    expect(text).toMatch(/mlserve_model_decay_detected\{model="mnist",version="1"\} 0/);
    expect(text).toMatch(/mlserve_feedback\{model="mnist",version="1",outcome="unmatched"\} 1/);
  });

  it('raises the decay alarm when every label says the model is wrong', async () => {
    const events: DecayEvent[] = [];
    const watch = monitor({
      profile: ref,
      extractors,
      sampleRate: 1,
      feedback: { sampleRate: 1 },
      onDecay: (e) => events.push(e),
    });
    const served = pipeline(model, watch);
    await serve(served, 'b');
    for (const [i, label] of holdout.labels.entries()) watch.feedback(`b${i}`, (label + 1) % 10);
    expect(events.map((e) => e.type)).toEqual(['decay']);
    expect(events[0]!.quality.accuracy!.upper).toBeLessThan(0.5);
    expect(watch.quality().decay.detected).toBe(true);
  });

  it('asks for the feedback option, and names what is wrong with a label', () => {
    const watch = monitor({ profile: ref, extractors });
    expect(() => watch.feedback('x', 1)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => watch.quality()).toThrow(/feedback option/);
    const { baseline: _, ...bare } = ref;
    expect(() => monitor({ profile: bare, extractors, feedback: {} })).toThrow(/feedback.output/);
    expect(() => monitor({ profile: ref, extractors, feedback: { window: 0 } })).toThrow(/window/);
  });
});

describe('bulk feedback', () => {
  it('ingests a JSON-lines file, counting bad lines and unknown ids', async () => {
    const watch = monitor({ profile: ref, extractors, sampleRate: 1, feedback: { sampleRate: 1 } });
    const served = pipeline(model, watch);
    await serve(served, 'f');
    const dir = await mkdtemp(join(tmpdir(), 'feedback-'));
    try {
      const lines = holdout.labels.map((label, i) => JSON.stringify({ id: `f${i}`, label }));
      lines.push(
        'not json',
        '{"label": 3}',
        '{"id": "f1", "label": "seven"}',
        '{"id": "nobody", "label": 1}',
        '',
      );
      await writeFile(join(dir, 'labels.jsonl'), lines.join('\n'));
      const stats = await ingestFeedbackFile(watch, join(dir, 'labels.jsonl'));
      expect(stats).toMatchObject({ records: 204, joined: 200, unmatched: 1, invalid: 3 });
      expect(watch.quality().rows).toBe(200);
    } finally {
      await rm(dir, { recursive: true });
    }
  });
});

const haveRedis = requireService('redis-server', 'apt-get install -y redis-server');

describe.runIf(haveRedis)('feedback from a Redis stream (real redis-server)', () => {
  let server: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    server = await startRedis();
    client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    client.disconnect();
    await server.stop();
  });

  const until = async (check: () => boolean) => {
    // Up to 30 s: generous, for a loaded machine; it returns as soon as the check holds.
    for (let i = 0; i < 1500 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
  };

  it('every replica reads every label and joins its own predictions (no group)', async () => {
    // Two replicas: each served half of the digits.
    // Every label joined whatever it costs (the counts below are exact).
    const a = monitor({ profile: ref, extractors, sampleRate: 1, feedback: { sampleRate: 1 } });
    const b = monitor({ profile: ref, extractors, sampleRate: 1, feedback: { sampleRate: 1 } });
    const servedA = pipeline(model, a);
    const servedB = pipeline(model, b);
    for (const [i, img] of held.entries())
      await (i % 2 ? servedB : servedA).infer(batchOf([img]), { id: `s${i}` });
    const ra = await feedbackFromRedisStream(a, { client, stream: 'labels', blockMs: 100 });
    const rb = await feedbackFromRedisStream(b, { client, stream: 'labels', blockMs: 100 });
    for (const [i, label] of holdout.labels.entries())
      await client.xadd('labels', '*', 'id', `s${i}`, 'label', String(label));
    await client.xadd('labels', '*', 'record', JSON.stringify({ id: 's0', label: holdout.labels[0] }));
    await until(() => ra.stats().records === 201 && rb.stats().records === 201);
    await ra.close();
    await rb.close();
    expect(ra.stats()).toMatchObject({ records: 201, joined: 100, unmatched: 101, invalid: 0 });
    expect(rb.stats()).toMatchObject({ records: 201, joined: 100, unmatched: 101, invalid: 0 });
    expect(a.quality().rows + b.quality().rows).toBe(200);
  });

  it('a consumer group shares the labels out and acknowledges them', async () => {
    const watch = monitor({ profile: ref, extractors, sampleRate: 1, feedback: { sampleRate: 1 } });
    const served = pipeline(model, watch);
    await serve(served, 'g');
    const reader = await feedbackFromRedisStream(watch, {
      client,
      stream: 'glabels',
      group: 'monitor',
      blockMs: 100,
    });
    for (const [i, label] of holdout.labels.entries())
      await client.xadd('glabels', '*', 'id', `g${i}`, 'label', String(label));
    await client.xadd('glabels', '*', 'id', 'g1', 'label', '"not a class"');
    await until(() => reader.stats().records === 201);
    await reader.close();
    expect(reader.stats()).toMatchObject({ records: 201, joined: 200, unmatched: 0, invalid: 1 });
    const pending = (await client.xpending('glabels', 'monitor')) as [number, ...unknown[]];
    expect(pending[0]).toBe(0);
  });
});
