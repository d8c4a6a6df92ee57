import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { fromFunction, ModelRegistry, pipeline } from '@mlserve/core';
import { mlservePlugin } from '@mlserve/http';
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
import { serveGrpc } from '../src/index.js';
import { connect, rejection } from './client.js';

/** What a span recorded (an OpenTelemetry SDK stand-in; the API is the real one). */
interface Recorded {
  name: string;
  parent: SpanContext | undefined;
  attributes: Record<string, unknown>;
  ended: boolean;
}
const recorded: Recorded[] = [];

const tracer = {
  startActiveSpan(name: string, ...args: unknown[]) {
    const fn = args.pop() as (span: Span) => unknown;
    const [options, ctx] = args as [SpanOptions | undefined, Context | undefined];
    const parent = trace.getSpanContext(ctx ?? context.active());
    const rec: Recorded = { name, parent, attributes: { ...(options?.attributes ?? {}) }, ended: false };
    recorded.push(rec);
    const span = {
      spanContext: () => ({
        traceId: parent?.traceId ?? '1'.padStart(32, '0'),
        spanId: '2'.padStart(16, '0'),
        traceFlags: 1,
      }),
      setAttribute(k: string, v: unknown) {
        rec.attributes[k] = v;
        return span;
      },
      setStatus: () => span,
      end() {
        rec.ended = true;
      },
      isRecording: () => true,
    } as unknown as Span;
    return context.with(trace.setSpan(ctx ?? context.active(), span), fn, undefined, span);
  },
} as unknown as Tracer;

beforeAll(() => {
  trace.setGlobalTracerProvider({ getTracer: () => tracer });
  propagation.setGlobalPropagator({
    inject() {},
    extract(ctx: Context, carrier: unknown, getter: TextMapGetter) {
      const tp = getter.get(carrier, 'traceparent');
      const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(typeof tp === 'string' ? tp : '');
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

function double() {
  return fromFunction({
    name: 'double',
    inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
    outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
    infer: ({ x }) => ({
      y: { type: 'float32', dims: x!.dims, data: (x!.data as Float32Array).map((v) => v * 2) },
    }),
  });
}

const request = (id: string) => ({
  model_name: 'double',
  id,
  inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2] }],
  raw_input_contents: [Buffer.from(Float32Array.from([1, 2]).buffer)],
});

describe('observability', () => {
  it('a SERVER span per ModelInfer, continuing the traceparent in the call metadata', async () => {
    const registry = new ModelRegistry();
    registry.add(double());
    const server = await serveGrpc({ registry });
    const c = connect(server.port);
    try {
      const traceId = 'ab'.repeat(16);
      const md = new grpc.Metadata();
      md.set('traceparent', `00-${traceId}-00f067aa0ba902b7-01`);
      recorded.length = 0;
      await c.call('ModelInfer', request('trace-me'), { metadata: md });
      const span = recorded.find((r) => r.name === 'inference.GRPCInferenceService/ModelInfer')!;
      expect(span.parent?.traceId).toBe(traceId);
      expect(span.ended).toBe(true);
      expect(span.attributes).toMatchObject({
        'rpc.system': 'grpc',
        'rpc.method': 'ModelInfer',
        'mlserve.model.name': 'double',
        'mlserve.model.version': '1',
        'mlserve.request_id': 'trace-me',
      });
      await rejection(c.call('ModelInfer', { ...request('bad'), model_name: 'nope' }));
      expect(recorded.at(-1)!.attributes['rpc.grpc.status_code']).toBe(grpc.status.NOT_FOUND);
    } finally {
      c.close();
      await server.close();
      await registry.close();
    }
  });

  it('HTTP and gRPC over one registry count into the same metrics', async () => {
    const prom = new Registry();
    const registry = new ModelRegistry();
    registry.add(pipeline(double(), metrics({ registry: prom })));
    const app = Fastify({ logger: false });
    await app.register(mlservePlugin, { registry, metrics: prom });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const server = await serveGrpc({ registry });
    const c = connect(server.port);
    try {
      const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      const body = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] });
      expect(
        (
          await fetch(`${url}/v2/models/double/infer`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body,
          })
        ).status,
      ).toBe(200);
      const res = await c.call<{ raw_output_contents: Buffer[] }>('ModelInfer', request('m1'));
      const y = res.raw_output_contents[0]!;
      expect([...new Float32Array(y.buffer.slice(y.byteOffset, y.byteOffset + y.byteLength))]).toEqual([
        2, 4,
      ]);
      await c.call('ModelInfer', request('m2'));
      const text = await (await fetch(`${url}/metrics`)).text();
      expect(text).toMatch(/nv_inference_request_success\{model="double",version="1"\} 3/);
    } finally {
      c.close();
      await server.close();
      await app.close();
      await registry.close();
    }
  });
});
