import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Model, pipeline } from '@mlserve/core';
import { mnistHoldout } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type DriftEvent,
  imageStats,
  loadProfile,
  monitor,
  type Profile,
  predictedClass,
  profile,
  saveProfile,
  topScore,
} from '../src/index.js';
import { batchOf, invert, mnistModel, shift, trainingDigits } from './mnist-data.js';

const extractors = [imageStats('image'), predictedClass('logits'), topScore('logits', { softmax: true })];

describe('drift on MNIST with mnist-cnn on onnxruntime', () => {
  let model: Model;
  let ref: Profile;
  const holdout = mnistHoldout();
  const held = Array.from({ length: holdout.count }, (_, i) => holdout.image(i));

  beforeAll(async () => {
    model = await mnistModel();
    const digits = trainingDigits(2);
    const samples = [];
    for (let i = 0; i < digits.length; i += 500) samples.push({ inputs: batchOf(digits.slice(i, i + 500)) });
    ref = await profile(samples, { extractors, model });
  });
  afterAll(() => model.dispose());

  it('profiles every feature of the training digits', () => {
    expect(ref.rows).toBeGreaterThan(4000);
    expect(Object.keys(ref.features).sort()).toEqual([
      'image.bright',
      'image.centroidX',
      'image.centroidY',
      'image.mean',
      'image.std',
      'logits.class',
      'logits.topScore',
    ]);
    const cls = ref.features['logits.class']!;
    expect(cls.kind).toBe('categorical');
    expect(Object.keys(cls.kind === 'categorical' ? cls.frequencies : {}).length).toBe(10);
    const mean = ref.features['image.mean']!;
    expect(mean.kind === 'numeric' && mean.edges.length).toBe(9);
  });

  it('saves and loads the profile as JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'monitor-'));
    try {
      await saveProfile(join(dir, 'profile.json'), ref);
      expect(await loadProfile(join(dir, 'profile.json'))).toEqual(ref);
      await expect(loadProfile(join(dir, 'missing.json'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await writeFile(join(dir, 'bad.json'), '{"format":"mlserve-profile"');
      await expect(loadProfile(join(dir, 'bad.json'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await writeFile(join(dir, 'old.json'), '{"format":"mlserve-profile","version":2}');
      await expect(loadProfile(join(dir, 'old.json'))).rejects.toThrow(/not an mlserve profile/);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  async function feed(served: Model, images: Float32Array[]): Promise<void> {
    for (const img of images) await served.infer(batchOf([img]));
  }

  it('scores no drift for the held-out digits', async () => {
    const events: DriftEvent[] = [];
    const watch = monitor({
      profile: ref,
      extractors,
      window: { size: 200 },
      sampleRate: 1,
      onDrift: (e) => events.push(e),
    });
    const served = pipeline(model, watch);
    await feed(served, held);
    const report = await watch.flush();
    for (const [name, s] of Object.entries(report.features)) {
      expect(s.rows, name).toBe(200);
      expect(s.psi, name).toBeLessThan(0.2);
      if (s.ks !== undefined) expect(s.ks, name).toBeLessThan(0.2);
    }
    expect(report.drifted).toBe(false);
    expect(events).toEqual([]);
    expect(served.stats?.()).toMatchObject({ monitor: { requests: 200, sampled: 200, dropped: 0 } });
  });

  it('flags inverted digits, then reports the recovery', async () => {
    const events: DriftEvent[] = [];
    const watch = monitor({
      profile: ref,
      extractors,
      window: { size: 200 },
      sampleRate: 1,
      onDrift: (e) => events.push(e),
    });
    const served = pipeline(model, watch);
    await feed(served, held.map(invert));
    const report = await watch.flush();
    expect(report.drifted).toBe(true);
    expect(report.features['image.mean']!.breached).toContain('pValue');
    expect(report.features['image.mean']!.ks).toBeGreaterThan(0.9);
    expect(events.filter((e) => e.type === 'drift').map((e) => e.feature)).toContain('image.mean');
    await feed(served, held);
    const after = await watch.flush();
    expect(after.drifted).toBe(false);
    expect(events.filter((e) => e.type === 'recovered').map((e) => e.feature)).toContain('image.mean');
  });

  it('flags shifted digits through where the ink is and what the model predicts', async () => {
    const watch = monitor({ profile: ref, extractors, window: { size: 200 }, sampleRate: 1 });
    const served = pipeline(model, watch);
    await feed(
      served,
      held.map((img) => shift(img, 6)),
    );
    const report = await watch.flush();
    expect(report.features['image.centroidX']!.drifted).toBe(true);
    // Same pixels, only moved: the global statistics stay put.
    expect(report.features['image.mean']!.drifted).toBe(false);
    expect(report.features['logits.class']!.psi).toBeGreaterThan(0.2);
  });
});
