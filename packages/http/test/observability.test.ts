import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { fromFunction, ModelRegistry, pipeline } from '@mlserve/core';
import { metrics } from '@mlserve/metrics';
import {
  type Context,
  context,
  propagation,
  type Span,
  type SpanContext,
  type SpanOptions,
  type TextMapGetter,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import Fastify from 'fastify';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { genRequestId, mlservePlugin } from '../src/index.js';
import { loadMnist, SERVERS } from './helpers.js';

/** Node's fetch labels a string body text/plain, which the cross-origin protection refuses (415). */
const JSON_CT = { 'content-type': 'application/json' };

/** A span that records what was set on it (an OpenTelemetry SDK stand-in; the API is the real one). */
interface Recorded {
  name: string;
  parent: SpanContext | undefined;
  attributes: Record<string, unknown>;
  ended: boolean;
  status?: { code: number };
}

const recorded: Recorded[] = [];
let nextId = 1;

function recordingSpan(name: string, options: SpanOptions | undefined, ctx: Context | undefined): Span {
  const parent = ctx ? trace.getSpanContext(ctx) : undefined;
  const rec: Recorded = { name, parent, attributes: { ...(options?.attributes ?? {}) }, ended: false };
  recorded.push(rec);
  const own: SpanContext = {
    traceId: parent?.traceId ?? `${'0'.repeat(31)}1`,
    spanId: (nextId++).toString(16).padStart(16, '0'),
    traceFlags: 1,
  };
  const span = {
    spanContext: () => own,
    setAttribute(k: string, v: unknown) {
      rec.attributes[k] = v;
      return span;
    },
    setAttributes(a: Record<string, unknown>) {
      Object.assign(rec.attributes, a);
      return span;
    },
    setStatus(s: { code: number }) {
      rec.status = s;
      return span;
    },
    end() {
      rec.ended = true;
    },
    isRecording: () => true,
    addEvent: () => span,
    addLink: () => span,
    addLinks: () => span,
    recordException() {},
    updateName: () => span,
  };
  return span as unknown as Span;
}

const tracer = {
  startSpan: (name: string, options?: SpanOptions, ctx?: Context) => recordingSpan(name, options, ctx),
  startActiveSpan(name: string, ...args: unknown[]) {
    const fn = args.pop() as (span: Span) => unknown;
    const [options, ctx] = args as [SpanOptions | undefined, Context | undefined];
    const span = recordingSpan(name, options, ctx ?? context.active());
    return context.with(trace.setSpan(ctx ?? context.active(), span), fn, undefined, span);
  },
} as unknown as Tracer;

beforeAll(() => {
  trace.setGlobalTracerProvider({ getTracer: () => tracer });
  propagation.setGlobalPropagator({
    inject() {},
    extract(ctx: Context, carrier: unknown, getter: TextMapGetter) {
      const tp = getter.get(carrier, 'traceparent');
      const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(
        Array.isArray(tp) ? (tp[0] ?? '') : (tp ?? ''),
      );
      if (!m) return ctx;
      return trace.setSpanContext(ctx, { traceId: m[1]!, spanId: m[2]!, traceFlags: 1, isRemote: true });
    },
    fields: () => ['traceparent'],
  });
});
afterAll(() => {
  trace.disable();
  propagation.disable();
});

describe.each(SERVERS)('%s observability', (_kind, start) => {
  it('metrics() inside, /metrics outside: counts what went through', async () => {
    const prom = new Registry();
    const registry = new ModelRegistry();
    registry.add(pipeline(await loadMnist(), metrics({ registry: prom })));
    const server = await start({ registry, metrics: prom });
    try {
      const body = JSON.stringify({
        inputs: [{ name: 'image', datatype: 'FP32', shape: [2, 1, 28, 28], data: new Array(1568).fill(0) }],
      });
      for (let i = 0; i < 2; i++) {
        expect(
          (await fetch(`${server.url}/v2/models/mnist/infer`, { method: 'POST', headers: JSON_CT, body }))
            .status,
        ).toBe(200);
      }
      const res = await fetch(`${server.url}/metrics`);
      expect(res.headers.get('content-type')).toMatch(/text\/plain/);
      const text = await res.text();
      expect(text).toMatch(/nv_inference_request_success\{model="mnist",version="1"\} 2/);
      expect(text).toMatch(/nv_inference_count\{model="mnist",version="1"\} 4/);
      expect(text).toMatch(/mlserve_request_duration_seconds_count\{model="mnist",version="1"\} 2/);
    } finally {
      await server.close();
      await registry.close();
    }
  });

  it('a SERVER span per request, continuing the caller traceparent', async () => {
    const registry = new ModelRegistry();
    registry.add(await loadMnist());
    const server = await start({ registry });
    try {
      recorded.length = 0;
      const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
      const res = await fetch(`${server.url}/v2/models/mnist/infer`, {
        method: 'POST',
        headers: { ...JSON_CT, traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'x-request-id': 'trace-me' },
        body: JSON.stringify({
          inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: new Array(784).fill(0) }],
        }),
      });
      expect(res.status).toBe(200);
      const span = recorded.find((s) => s.attributes['mlserve.request_id'] === 'trace-me');
      expect(span).toBeDefined();
      expect(span!.name).toBe('POST /v2/models/{}/infer');
      expect(span!.parent?.traceId).toBe(traceId);
      expect(span!.parent?.spanId).toBe('00f067aa0ba902b7');
      expect(span!.attributes).toMatchObject({
        'mlserve.model.name': 'mnist',
        'mlserve.model.version': '1',
        'http.response.status_code': 200,
      });
      expect(span!.ended).toBe(true);
      // backend-onnx writes computeMs: a child span for the compute stage, under the request span.
      const compute = recorded.find((s) => s.name === 'mlserve.compute' && s.parent?.traceId === traceId);
      expect(compute?.attributes['mlserve.computeMs']).toEqual(expect.any(Number));
      expect(compute?.ended).toBe(true);
    } finally {
      await server.close();
      await registry.close();
    }
  });
});

describe('fastify logs', () => {
  let lines: Record<string, unknown>[];
  let url: string;
  let close: () => Promise<void>;
  beforeAll(async () => {
    lines = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
        cb();
      },
    });
    const registry = new ModelRegistry();
    registry.add(
      fromFunction({
        name: 'boom',
        inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
        infer: () => {
          throw new Error('kaboom');
        },
      }),
    );
    const app = Fastify({ logger: { level: 'info', stream }, forceCloseConnections: true });
    await app.register(mlservePlugin, { registry });
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    close = async () => {
      await app.close();
      await registry.close();
    };
  });
  afterAll(() => close());

  it('logs failures through request.log with the request id', async () => {
    const res = await fetch(`${url}/v2/models/boom/infer`, {
      method: 'POST',
      headers: { ...JSON_CT, 'x-request-id': 'log-me' },
      body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] }),
    });
    expect(res.status).toBe(500);
    const line = lines.find((l) => l.requestId === 'log-me');
    expect(line).toMatchObject({ level: 50, code: 'INTERNAL', msg: 'kaboom' });
    // Fastify's own request id is on the same line (request.log is a child logger).
    expect(line?.reqId).toEqual(expect.any(String));
  });
});

describe('genRequestId: one request id in the logs and the answer', () => {
  let lines: Record<string, unknown>[];
  let url: string;
  let close: () => Promise<void>;
  beforeAll(async () => {
    lines = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
        cb();
      },
    });
    const registry = new ModelRegistry();
    registry.add(
      fromFunction({
        name: 'boom',
        inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
        infer: () => {
          throw new Error('kaboom');
        },
      }),
    );
    const app = Fastify({
      logger: { level: 'info', stream },
      genReqId: genRequestId,
      forceCloseConnections: true,
    });
    await app.register(mlservePlugin, { registry });
    await app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    close = async () => {
      await app.close();
      await registry.close();
    };
  });
  afterAll(() => close());

  const boom = (headers: Record<string, string>, id?: string) =>
    fetch(`${url}/v2/models/boom/infer`, {
      method: 'POST',
      headers: { ...JSON_CT, ...headers },
      body: JSON.stringify({
        ...(id && { id }),
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }],
      }),
    });

  it('Fastify reqId is the x-request-id, the answer echoes it, and no second id is logged', async () => {
    const res = await boom({ 'x-request-id': 'one-id' });
    expect(res.status).toBe(500);
    expect(res.headers.get('x-request-id')).toBe('one-id');
    const line = lines.find((l) => l.msg === 'kaboom' && l.reqId === 'one-id');
    expect(line).toMatchObject({ level: 50, code: 'INTERNAL' });
    expect(line).not.toHaveProperty('requestId');
    // Fastify's own request lines carry the same id.
    expect(lines.filter((l) => l.reqId === 'one-id').length).toBeGreaterThanOrEqual(2);
  });

  it('without x-request-id, a UUID; a V2 body id becomes the request id', async () => {
    const gen = await boom({});
    expect(gen.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    expect(lines.some((l) => l.reqId === gen.headers.get('x-request-id'))).toBe(true);
    const body = await boom({ 'x-request-id': 'header-id' }, 'body-id');
    expect(body.headers.get('x-request-id')).toBe('body-id');
    expect(await body.json()).toMatchObject({ code: 'INTERNAL' });
  });
});
