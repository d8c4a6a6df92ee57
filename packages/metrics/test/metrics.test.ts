import {
  fromFunction,
  type InferOptions,
  type Middleware,
  pipeline,
  resourceExhausted,
  wrap,
} from '@mlserve/core';
import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { metrics, metricsText } from '../src/index.js';

const echo = (name = 'm') =>
  fromFunction({
    name,
    version: '3',
    inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
    outputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
    infer: ({ x }) => ({ x: x! }),
  });

const x = (rows: number) => ({
  x: { type: 'float32' as const, dims: [rows, 2], data: new Float32Array(rows * 2) },
});

/** A stand-in for inner layers (batching, cache): writes what they would into the context. */
const annotate =
  (values: (o: InferOptions) => Record<string, unknown>): Middleware =>
  (inner) =>
    wrap(inner, {
      infer: (inputs, options = {}) => {
        Object.assign(options.context!, values(options));
        return inner.infer(inputs, options);
      },
    });

async function value(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name) ?? registry.getSingleMetric(name.replace(/_count$/, ''));
  if (!metric) throw new Error(`no metric ${name}`);
  const data = await metric.get();
  return data.values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .filter((v) => !('metricName' in v) || v.metricName === undefined || v.metricName === name)
    .reduce((sum, v) => sum + v.value, 0);
}

describe('metrics()', () => {
  it('counts successes, inferences and executions; average batch size is their ratio', async () => {
    const registry = new Registry();
    // Two requests of 3 and 1 rows shared one batch of 4; a third ran alone with 2 rows.
    let n = 0;
    const model = pipeline(
      echo(),
      metrics({ registry }),
      annotate(() => ({ batchSize: [4, 4, 2][n++], computeMs: 5, queueMs: 2 })),
    );
    await model.infer(x(3));
    await model.infer(x(1));
    await model.infer(x(2));
    const labels = { model: 'm', version: '3' };
    expect(await value(registry, 'nv_inference_request_success', labels)).toBe(3);
    expect(await value(registry, 'nv_inference_count', labels)).toBe(6);
    expect(await value(registry, 'nv_inference_exec_count', labels)).toBeCloseTo(2);
    expect(await value(registry, 'nv_inference_queue_duration_us', labels)).toBeCloseTo(6000);
    expect(await value(registry, 'nv_inference_compute_infer_duration_us', labels)).toBeCloseTo(15000);
    expect(await value(registry, 'mlserve_request_duration_seconds_count', labels)).toBe(3);
    expect(await value(registry, 'mlserve_queue_duration_seconds_count', labels)).toBe(3);
    expect(model.stats?.()).toMatchObject({ metrics: { success: 3, failure: 0, pending: 0 } });
  });

  it('counts failures by reason, and cache hits and misses', async () => {
    const registry = new Registry();
    const failing = fromFunction({
      name: 'f',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
      outputs: [],
      infer: () => {
        throw resourceExhausted('full');
      },
    });
    await expect(pipeline(failing, metrics({ registry })).infer(x(1))).rejects.toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
    });
    expect(
      await value(registry, 'nv_inference_request_failure', { model: 'f', reason: 'RESOURCE_EXHAUSTED' }),
    ).toBe(1);
    let hit = false;
    const cached = pipeline(
      echo('c'),
      metrics({ registry }),
      annotate(() => ({ cacheHit: (hit = !hit) })),
    );
    for (let i = 0; i < 4; i++) await cached.infer(x(1));
    expect(await value(registry, 'nv_cache_num_hits_per_model', { model: 'c' })).toBe(2);
    expect(await value(registry, 'nv_cache_num_misses_per_model', { model: 'c' })).toBe(2);
    // Cache hits are inferences but not executions.
    expect(await value(registry, 'nv_inference_count', { model: 'c' })).toBe(4);
    expect(await value(registry, 'nv_inference_exec_count', { model: 'c' })).toBe(2);
  });

  it('tracks in-flight requests and shares one registry between models', async () => {
    const registry = new Registry();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const held = fromFunction({
      name: 'held',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
      outputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
      infer: async ({ x: t }) => {
        await gate;
        return { x: t! };
      },
    });
    const a = pipeline(held, metrics({ registry }));
    const b = pipeline(echo('other'), metrics({ registry }));
    const pending = [a.infer(x(1)), a.infer(x(1))];
    await new Promise((r) => setTimeout(r, 10));
    expect(await value(registry, 'nv_inference_pending_request_count', { model: 'held' })).toBe(2);
    await b.infer(x(1));
    release();
    await Promise.all(pending);
    expect(await value(registry, 'nv_inference_pending_request_count', { model: 'held' })).toBe(0);
    const { contentType, body } = await metricsText(registry);
    expect(contentType).toMatch(/text\/plain/);
    expect(body).toMatch(/nv_inference_request_success\{model="held",version="1"\} 2/);
    expect(body).toMatch(/nv_inference_request_success\{model="other",version="3"\} 1/);
  });

  it('counts one inference per request for a model without a batch dim', async () => {
    const registry = new Registry();
    const fixed = fromFunction({
      name: 'fixed',
      inputs: [{ name: 'x', type: 'float32', dims: [3, 2] }],
      outputs: [{ name: 'x', type: 'float32', dims: [3, 2] }],
      infer: ({ x: t }) => ({ x: t! }),
    });
    await pipeline(fixed, metrics({ registry })).infer(x(3));
    expect(await value(registry, 'nv_inference_count', { model: 'fixed' })).toBe(1);
    expect(await value(registry, 'nv_inference_exec_count', { model: 'fixed' })).toBe(1);
  });

  it("exposes the inner layers' numeric stats() at scrape time", async () => {
    const registry = new Registry();
    let batches = 0;
    const counting: Middleware = (inner) =>
      wrap(inner, {
        layer: 'batching',
        infer: (inputs, options) => {
          batches++;
          return inner.infer(inputs, options);
        },
        stats: () => ({ batches, note: 'not a number' }),
      });
    const model = pipeline(echo('s'), metrics({ registry }), counting);
    await model.infer(x(1));
    await model.infer(x(1));
    const text = (await metricsText(registry)).body;
    expect(text).toMatch(/mlserve_layer_stat\{model="s",version="3",layer="batching",stat="batches"\} 2/);
    expect(text).not.toMatch(/stat="note"/);
    await model.dispose();
    expect((await metricsText(registry)).body).not.toMatch(/layer="batching"/);
  });

  it('creates a context when the caller gave none, so inner layers can write to it', async () => {
    const registry = new Registry();
    let seen: unknown;
    const model = pipeline(
      echo(),
      metrics({ registry }),
      annotate((o) => {
        seen = o.context;
        return {};
      }),
    );
    await model.infer(x(1));
    expect(seen).toMatchObject({ startedAt: expect.any(Number) });
  });
  it('counts kept per model reach every read of the registry: text, get(), two models, after dispose', async () => {
    const registry = new Registry();
    const a = pipeline(echo('a'), metrics({ registry }));
    const b = pipeline(echo('b'), metrics({ registry }));
    await a.infer(x(2));
    await b.infer(x(1));
    await b.infer(x(1));
    const { body } = await metricsText(registry);
    expect(body).toContain('nv_inference_request_success{model="a",version="3"} 1');
    expect(body).toContain('nv_inference_request_success{model="b",version="3"} 2');
    expect(body).toContain('nv_inference_count{model="a",version="3"} 2');
    expect(body).toContain('nv_inference_pending_request_count{model="a",version="3"} 0');
    // In flight: the gauge reads 1 while a request runs.
    let release!: () => void;
    const slow = pipeline(
      fromFunction({
        name: 'slow',
        inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
        outputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
        infer: async ({ x: t }) => {
          await new Promise<void>((r) => {
            release = r;
          });
          return { x: t! };
        },
      }),
      metrics({ registry }),
    );
    const running = slow.infer(x(1));
    expect(await value(registry, 'nv_inference_pending_request_count', { model: 'slow' })).toBe(1);
    release();
    await running;
    expect(await value(registry, 'nv_inference_pending_request_count', { model: 'slow' })).toBe(0);
    // A request that ends after dispose is still counted.
    const late = slow.infer(x(1));
    await slow.dispose();
    release();
    await late.catch(() => {});
    expect(await value(registry, 'nv_inference_request_success', { model: 'slow' })).toBe(2);
    expect(await value(registry, 'nv_inference_pending_request_count', { model: 'slow' })).toBe(0);
  });

  it('counts at once on a counter registered elsewhere (its collect() would not apply ours)', async () => {
    const registry = new Registry();
    const foreign = new Counter({
      name: 'nv_inference_request_success',
      help: 'registered by the application',
      labelNames: ['model', 'version'],
      registers: [registry],
    });
    const model = pipeline(echo(), metrics({ registry }));
    await model.infer(x(1));
    // Read without collect(): the value is already there.
    const values = (foreign as unknown as { hashMap: Record<string, { value: number }> }).hashMap;
    expect(Object.values(values).map((v) => v.value)).toEqual([1]);
    expect(await value(registry, 'nv_inference_count', { model: 'm' })).toBe(1);
  });

  it('histograms match what prom-client observe() gives, also across a registry reset', async () => {
    const registry = new Registry();
    const reference = new Registry();
    const buckets = [0.001, 0.01, 0.1, 1];
    const mirror = new Histogram({
      name: 'mlserve_compute_duration_seconds',
      help: 'Backend compute time of the batch that carried the request',
      labelNames: ['model', 'version'],
      buckets,
      registers: [reference],
    });
    const computeMs = [0.5, 5, 50, 500, 5000, 0.5, 2, 0];
    let i = 0;
    const served = pipeline(
      echo(),
      metrics({ registry, buckets }),
      annotate(() => ({ computeMs: computeMs[i++ % computeMs.length] })),
    );
    const text = async (r: Registry) =>
      (await r.getSingleMetricAsString('mlserve_compute_duration_seconds')).trim();
    for (let k = 0; k < 20; k++) {
      await served.infer(x(1));
      mirror.observe({ model: 'm', version: '3' }, computeMs[k % computeMs.length]! / 1000);
    }
    expect(await text(registry)).toBe(await text(reference));
    // After a reset the series starts afresh, and keeps counting.
    registry.resetMetrics();
    mirror.reset();
    for (let k = 0; k < 5; k++) {
      await served.infer(x(1));
      mirror.observe({ model: 'm', version: '3' }, computeMs[(20 + k) % computeMs.length]! / 1000);
    }
    expect(await text(registry)).toBe(await text(reference));
    expect(await text(registry)).toContain('mlserve_compute_duration_seconds_count{model="m",version="3"} 5');
  });
});
