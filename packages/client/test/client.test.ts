import { type Tensor, tensor, tensorsEqual } from '@mlserve/core';
import { mnistHoldout, rejection } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { type Client, createClient, parseClassification } from '../src/index.js';
import { type Servers, startServers } from './servers.js';

let s: Servers;
const clients: Client[] = [];
function make(mode: Mode, extra: Partial<Parameters<typeof createClient>[0]> = {}): Client {
  const c =
    mode === 'grpc'
      ? createClient({ url: s.grpcAddress, transport: 'grpc', ...extra })
      : createClient({ url: s.url, binary: mode === 'http-binary' ? 'auto' : false, ...extra });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  s = await startServers();
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await s?.close();
});

const digit = (i: number) => tensor('float32', mnistHoldout().image(i), [1, 1, 28, 28]);
const argmax = (t: Tensor) => {
  const d = t.data as Float32Array;
  let best = 0;
  for (let i = 1; i < d.length; i++) if (d[i]! > d[best]!) best = i;
  return best;
};

type Mode = 'http-binary' | 'http-json' | 'grpc';
const MODES: Mode[] = ['http-binary', 'http-json', 'grpc'];

describe.each(MODES)('%s', (mode) => {
  let c: Client;
  beforeAll(() => {
    c = make(mode);
  });

  it('reports liveness, readiness and metadata', async () => {
    expect(await c.serverLive()).toBe(true);
    expect(await c.serverReady()).toBe(true);
    expect(await c.modelReady('mnist')).toBe(true);
    expect(await c.modelReady('mnist', { version: '1' })).toBe(true);
    const server = await c.serverMetadata();
    expect(server.name).toBe('mlserve');
    expect(server.extensions).toContain(mode === 'grpc' ? 'classification' : 'binary_tensor_data');
    const meta = await c.modelMetadata('mnist');
    expect(meta).toMatchObject({ name: 'mnist', versions: ['1'], platform: 'onnxruntime_onnx' });
    expect(meta.inputs).toEqual([
      { name: 'image', datatype: 'FP32', type: 'float32', shape: [-1, 1, 28, 28] },
    ]);
    expect(meta.outputs[0]).toMatchObject({ name: 'logits', type: 'float32', shape: [-1, 10] });
    const missing = await rejection(c.modelReady('missing'));
    expect(missing.code).toBe('NOT_FOUND');
  });

  it('runs mnist-cnn: the same logits as the model in process, the right digits', async () => {
    const holdout = mnistHoldout();
    for (let i = 0; i < 8; i++) {
      const out = await c.infer('mnist', { image: digit(i) });
      const direct = await s.mnist.infer({ image: digit(i) });
      expect(tensorsEqual(out.logits!, direct.logits!)).toBe(true);
      expect(argmax(out.logits!)).toBe(holdout.labels[i]);
    }
    // A batch of 4 rows in one request.
    const batch = tensor('float32', holdout.images.slice(0, 4 * 784), [4, 1, 28, 28]);
    const out = await c.infer('mnist', { image: batch }, { version: '1', outputs: ['logits'], id: 'req-7' });
    expect(out.logits!.dims).toEqual([4, 10]);
  });

  it('round-trips BYTES, int64, float16 and bool exactly', async () => {
    const text = tensor('string', ['héllo', '', 'a:b'], [1, 3]);
    const y = (await c.infer('id_bytes', { x: text })).y!;
    expect(y.type).toBe('string');
    expect(y.dims).toEqual([1, 3]);
    const asText = (y.data as (string | Uint8Array)[]).map((e) =>
      typeof e === 'string' ? e : new TextDecoder().decode(e),
    );
    expect(asText).toEqual(['héllo', '', 'a:b']);
    // JSON numbers are doubles: exact int64 past 2^53 needs binary (or gRPC).
    const big =
      mode === 'http-json'
        ? tensor('int64', [2n ** 53n - 1n, -(2n ** 53n), 0n], [1, 3])
        : tensor('int64', [2n ** 62n + 1n, -(2n ** 63n), 0n], [1, 3]);
    expect(tensorsEqual((await c.infer('id_i64', { x: big })).y!, big)).toBe(true);
    const bools = tensor('bool', [true, false, true, true], [2, 2]);
    expect(tensorsEqual((await c.infer('id_bool', { x: bools })).y!, bools)).toBe(true);
    const half = tensor('float16', [0.5, -2, 65504], [1, 3]);
    expect(tensorsEqual((await c.infer('id_f16', { x: half })).y!, half)).toBe(true);
  });

  if (mode !== 'http-json') {
    it('round-trips BYTES that are not UTF-8', async () => {
      const raw = tensor(
        'string',
        [new Uint8Array([0xff, 0x00, 0xfe]), new Uint8Array([])] as Uint8Array[],
        [1, 2],
      );
      const y = (await c.infer('id_bytes', { x: raw })).y!;
      expect((y.data as Uint8Array[]).map((b) => Array.from(b))).toEqual([[0xff, 0, 0xfe], []]);
    });
  }

  it('answers the classification extension', async () => {
    const out = await c.infer('mnist', { image: digit(3) }, { outputs: ['logits'], classification: 3 });
    const rows = parseClassification(out.logits!);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toHaveLength(3);
    expect(rows[0]![0]!.index).toBe(mnistHoldout().labels[3]);
    expect(rows[0]![0]!.score).toBeGreaterThanOrEqual(rows[0]![1]!.score);
  });

  it("types results by the model's signature and checks it against the server", async () => {
    const mnist = await c.model('mnist', {
      signature: { inputs: { image: 'float32' }, outputs: { logits: 'float32' } },
    });
    const out = await mnist.infer({ image: digit(0) });
    expectTypeOf(out.logits.data).toEqualTypeOf<Float32Array>();
    // @ts-expect-error: no output "logitz"
    expect(out.logitz).toBeUndefined();
    expect(out.logits.data).toBeInstanceOf(Float32Array);
    expect(mnist.metadata().inputs[0]).toMatchObject({ name: 'image', type: 'float32', batched: true });
    const wrong = await rejection(
      c.model('mnist', { signature: { inputs: { image: 'float64' }, outputs: { logits: 'float32' } } }),
    );
    expect(wrong.code).toBe('INVALID_ARGUMENT');
    expect(wrong.message).toContain('FP32');
  });

  it("passes the server's errors as ServeErrors with its code and message", async () => {
    const missing = await rejection(c.infer('missing', { image: digit(0) }));
    expect(missing.code).toBe('NOT_FOUND');
    expect(missing.message).toBe('unknown model "missing"');
    const bad = await rejection(
      c.infer('mnist', { image: tensor('float32', new Float32Array(10), [1, 10]) }),
    );
    expect(bad.code).toBe('INVALID_ARGUMENT');
    expect(bad.message).toContain('image');
    if (mode !== 'grpc') expect(bad.status).toBe(400);
  });

  it("retries RESOURCE_EXHAUSTED and UNAVAILABLE after the server's retry hint, then succeeds", async () => {
    for (const code of ['RESOURCE_EXHAUSTED', 'UNAVAILABLE'] as const) {
      Object.assign(s.flaky, { calls: 0, failures: 2, retryAfterMs: 20, code });
      const x = tensor('float32', [1, 2], [2, 1]);
      const out = await c.infer('flaky', { x });
      expect(tensorsEqual(out.y!, x)).toBe(true);
      expect(s.flaky.calls).toBe(3);
    }
    Object.assign(s.flaky, { calls: 0, failures: 2, code: 'RESOURCE_EXHAUSTED' });
    const off = await rejection(c.infer('flaky', { x: tensor('float32', [1], [1, 1]) }, { retry: false }));
    expect(off.code).toBe('RESOURCE_EXHAUSTED');
    expect(off.retryAfterMs).toBe(20);
    expect(s.flaky.calls).toBe(1);
    // Requests of a sequence change state: never sent twice.
    Object.assign(s.flaky, { calls: 0, failures: 1 });
    await rejection(
      c.infer('flaky', { x: tensor('float32', [1], [1, 1]) }, { sequence: { id: 5, start: true } }),
    );
    expect(s.flaky.calls).toBe(1);
    // A hint longer than the client will wait: the error at once.
    Object.assign(s.flaky, { calls: 0, failures: 1, retryAfterMs: 60_000 });
    const long = await rejection(c.infer('flaky', { x: tensor('float32', [1], [1, 1]) }));
    expect(long.code).toBe('RESOURCE_EXHAUSTED');
    expect(s.flaky.calls).toBe(1);
    // Bounded: at most `retries` more attempts.
    Object.assign(s.flaky, { calls: 0, failures: 100, retryAfterMs: 1 });
    const bounded = make(mode, { retry: { retries: 2 } });
    await rejection(bounded.infer('flaky', { x: tensor('float32', [1], [1, 1]) }));
    expect(s.flaky.calls).toBe(3);
    s.flaky.failures = 0;
  });

  it('sends the deadline to the server and fails with DEADLINE_EXCEEDED when it passes', async () => {
    const before = s.slowCalls.length;
    const t0 = Date.now();
    const e = await rejection(c.infer('slow', { x: tensor('float32', [1], [1, 1]) }, { timeoutMs: 1000 }));
    expect(e.code).toBe('DEADLINE_EXCEEDED');
    const call = s.slowCalls[before]!;
    expect(call.deadline).toBeDefined();
    expect(call.deadline!).toBeGreaterThan(t0);
    expect(call.deadline!).toBeLessThanOrEqual(Date.now() + 50);
    if (mode !== 'grpc') {
      const req = s.seen.filter((r) => r.url.includes('/slow/')).at(-1)!;
      const ms = Number(req.headers['x-request-timeout-ms']);
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThanOrEqual(1000);
    }
  });

  it('cancels on abort: CANCELLED here, the request cancelled on the server', async () => {
    const before = s.slowCalls.length;
    const controller = new AbortController();
    const p = c.infer('slow', { x: tensor('float32', [1], [1, 1]) }, { signal: controller.signal });
    while (s.slowCalls.length === before) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    const e = await rejection(p);
    expect(e.code).toBe('CANCELLED');
    // The server side saw the disconnect (it would hang here otherwise: the test's timeout).
    await s.slowCalls[before]!.aborted;
    const pre = await rejection(c.infer('mnist', { image: digit(0) }, { signal: AbortSignal.abort() }));
    expect(pre.code).toBe('CANCELLED');
  });
});

describe('http specifics', () => {
  it('sends binary tensors by default (the server lists binary_tensor_data), JSON when told', async () => {
    const c = make('http-binary');
    await c.infer('mnist', { image: digit(0) });
    const bin = s.seen.filter((r) => r.url === '/v2/models/mnist/infer').at(-1)!;
    expect(bin.headers['inference-header-content-length']).toBeDefined();
    expect(Number(bin.headers['content-length'])).toBeLessThan(3136 + 300);
    const j = make('http-json');
    await j.infer('mnist', { image: digit(0) });
    const json = s.seen.filter((r) => r.url === '/v2/models/mnist/infer').at(-1)!;
    expect(json.headers['inference-header-content-length']).toBeUndefined();
    expect(json.headers['content-type']).toBe('application/json');
  });

  it('reuses keep-alive connections for sequential calls', async () => {
    const c = make('http-binary');
    const before = s.connections();
    for (let i = 0; i < 30; i++) await c.infer('mnist', { image: digit(i % 8) });
    // undici may open a second socket while the first finishes its answer; never one per call.
    expect(s.connections() - before).toBeLessThanOrEqual(2);
  });

  it('gzips requests and inflates gzip answers when compression is on', async () => {
    const c = make('http-binary', { compression: 'gzip' });
    const x = tensor('float32', new Float32Array(4096).fill(0.25), [1, 4096]);
    const out = await c.infer('id_f32', { x });
    expect(tensorsEqual(out.y!, x)).toBe(true);
    const req = s.seen.filter((r) => r.url === '/v2/models/id_f32/infer').at(-1)!;
    expect(req.headers['content-encoding']).toBe('gzip');
    expect(Number(req.headers['content-length'])).toBeLessThan(4096);
    expect(s.sent.at(-1)!['content-encoding']).toBe('gzip');
  });

  it('keeps a path prefix and sends the client and call headers', async () => {
    const c = make('http-binary', { headers: { 'x-team': 'a' } });
    await c.infer('mnist', { image: digit(0) }, { headers: { 'x-call': 'b' }, id: 'abc' });
    const req = s.seen.filter((r) => r.url === '/v2/models/mnist/infer').at(-1)!;
    expect(req.headers['x-team']).toBe('a');
    expect(req.headers['x-call']).toBe('b');
    const prefixed = make('http-binary', { url: `${s.url}/nothing-here` });
    expect((await rejection(prefixed.serverMetadata())).status).toBe(404);
  });

  it('refuses bad calls before sending anything', async () => {
    const c = make('http-binary');
    expect((await rejection(c.infer('', { image: digit(0) }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(c.infer('mnist', { image: digit(0) }, { classification: 3 }))).message).toContain(
      'outputs',
    );
    expect(
      (await rejection(c.infer('mnist', { image: digit(0) }, { parameters: { timeout: 5 } }))).code,
    ).toBe('INVALID_ARGUMENT');
  });

  it('rejects calls after close with UNAVAILABLE', async () => {
    const c = createClient({ url: s.url });
    await c.close();
    expect((await rejection(c.serverLive())).code).toBe('UNAVAILABLE');
  });

  it('reports a server that is not there as UNAVAILABLE after bounded retries', async () => {
    const c = make('http-binary', { url: 'http://127.0.0.1:1', retry: { retries: 2, minDelayMs: 1 } });
    const e = await rejection(c.serverMetadata());
    expect(e.code).toBe('UNAVAILABLE');
  });
});
