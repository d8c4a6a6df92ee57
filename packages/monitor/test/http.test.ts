import type { AddressInfo } from 'node:net';
import { ModelRegistry, pipeline } from '@mlserve/core';
import { mlservePlugin } from '@mlserve/http';
import { mnistHoldout } from '@mlserve/test-utils';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { feedbackAction, imageStats, type Monitor, measureBaseline, monitor, profile } from '../src/index.js';
import { batchOf, mnistModel } from './mnist-data.js';

// The HTTP route with a real server on loopback: @mlserve/http mounts the model actions given
// in `modelActions`; the monitor's feedbackAction() is one (http does not depend on monitor).
describe('POST /v2/models/{name}/feedback over real HTTP (Fastify, mnist-cnn)', () => {
  const holdout = mnistHoldout();
  let app: FastifyInstance;
  let url: string;
  let watch: Monitor;
  beforeAll(async () => {
    const model = await mnistModel();
    const extractors = [imageStats('image')];
    const held = Array.from({ length: 20 }, (_, i) => holdout.image(i));
    const ref = await profile([{ inputs: batchOf(held) }], { extractors });
    ref.baseline = await measureBaseline(
      held.map((img, i) => ({ inputs: batchOf([img]), label: holdout.labels[i]! })),
      { model, output: 'logits' },
    );
    // Every label joined whatever it costs (the counts below are exact).
    watch = monitor({ profile: ref, extractors, feedback: { sampleRate: 1 } });
    const registry = new ModelRegistry();
    registry.add(pipeline(model, watch));
    app = Fastify({ logger: false, forceCloseConnections: true });
    await app.register(mlservePlugin, {
      registry,
      modelActions: { feedback: feedbackAction({ mnist: watch }) },
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  afterAll(() => app.close());

  const post = async (path: string, body: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return {
      status: res.status,
      body: (await res.json()) as Record<string, unknown>,
      id: res.headers.get('x-request-id'),
    };
  };

  it('joins labels sent for requests served over HTTP, by their request id', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const img = holdout.image(i);
      const res = await post('/v2/models/mnist/infer', {
        id: `web-${i}`,
        inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: Array.from(img) }],
      });
      expect(res.status).toBe(200);
      expect(res.body.id).toBe(`web-${i}`);
      ids.push(res.body.id as string);
    }
    expect(await post('/v2/models/mnist/feedback', { id: ids[0], label: holdout.labels[0] })).toMatchObject({
      status: 200,
      body: { joined: 1, unmatched: 0, skipped: 0 },
    });
    const rest = ids.slice(1).map((id, i) => ({ id, label: holdout.labels[i + 1] }));
    rest.push({ id: 'never-served', label: 3 });
    expect(await post('/v2/models/mnist/versions/1/feedback', { labels: rest })).toMatchObject({
      status: 200,
      body: { joined: 19, unmatched: 1, skipped: 0 },
    });
    expect(watch.quality().rows).toBe(20);
    expect(watch.quality().accuracy!.estimate).toBeCloseTo(watch.quality().baseline!.estimate, 12);
  });

  it('answers bad feedback with a clear error and status, and serves on', async () => {
    expect(await post('/v2/models/mnist/feedback', { id: 'x', label: 'seven' })).toMatchObject({
      status: 400,
      body: { code: 'INVALID_ARGUMENT' },
    });
    expect(await post('/v2/models/other/feedback', { id: 'x', label: 1 })).toMatchObject({
      status: 404,
      body: { code: 'NOT_FOUND' },
    });
    const bad = await fetch(`${url}/v2/models/mnist/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"id": ',
    });
    expect(bad.status).toBe(400);
    const get = await fetch(`${url}/v2/models/mnist/feedback`);
    expect(get.status).toBe(405);
    const ok = await post('/v2/models/mnist/infer', {
      inputs: [
        { name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: Array.from(holdout.image(0)) },
      ],
    });
    expect(ok.status).toBe(200);
  });
});
