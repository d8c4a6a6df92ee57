import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import {
  DATA_TYPES,
  type DataType,
  fromFunction,
  ModelRegistry,
  resourceExhausted,
  type Tensor,
  TYPED_ARRAY,
} from '@mlserve/core';
import { V2_DATATYPE } from '@mlserve/protocol';
import { mnistHoldout } from '@mlserve/test-utils';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mlserveRouter } from '../src/index.js';
import { argmax, binaryBody, bytes, loadMnist, readBinary, SERVERS, type TestServer } from './helpers.js';

const DIGITS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];

/** A sample tensor of each type, with values at the edges of the type. */
function sample(type: DataType): Tensor {
  const dims = [2, 2];
  switch (type) {
    case 'string':
      return { type, dims, data: ['héllo', '', 'a:b', '{"x":1}'] };
    case 'bool':
      return { type, dims, data: Uint8Array.from([1, 0, 0, 1]) };
    case 'int64':
      return { type, dims, data: BigInt64Array.from([-(2n ** 53n) + 1n, -1n, 0n, 2n ** 53n - 1n]) };
    case 'uint64':
      return { type, dims, data: BigUint64Array.from([0n, 1n, 2n ** 40n, 2n ** 53n - 1n]) };
    case 'float16':
      return { type, dims, data: Uint16Array.from([0x3c00, 0xc000, 0x0000, 0x3555]) };
    case 'float32':
      return { type, dims, data: Float32Array.from([1.5, -2.25, 3.4028234663852886e38, 1e-7]) };
    case 'float64':
      return { type, dims, data: Float64Array.from([Math.PI, -0.1, 1e300, 5e-324]) };
    default: {
      const ctor = TYPED_ARRAY[type];
      const bits = ctor.BYTES_PER_ELEMENT * 8;
      const signed = type.startsWith('int');
      const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
      const min = signed ? -(2 ** (bits - 1)) : 0;
      return {
        type,
        dims,
        data: (ctor as unknown as { from(a: number[]): unknown }).from([min, max, 0, 1]),
      } as Tensor;
    }
  }
}

function buildRegistry(events: { aborted: number }) {
  const registry = new ModelRegistry();
  for (const type of DATA_TYPES) {
    registry.add(
      fromFunction({
        name: `id_${V2_DATATYPE[type].toLowerCase()}`,
        inputs: [{ name: 'x', type, dims: [-1, -1] }],
        outputs: [{ name: 'y', type, dims: [-1, -1] }],
        infer: ({ x }) => ({ y: x! }),
      }),
    );
  }
  registry.add(
    fromFunction({
      name: 'slow',
      inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
      infer: (inputs, opts) =>
        new Promise((resolve, reject) => {
          const timer = setTimeout(() => resolve({ y: inputs.x! }), 5_000);
          opts.signal?.addEventListener('abort', () => {
            events.aborted++;
            clearTimeout(timer);
            reject(opts.signal?.reason ?? new Error('aborted'));
          });
        }),
    }),
  );
  registry.add(
    fromFunction({
      name: 'busy',
      inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
      infer: () => {
        throw resourceExhausted('queue is full', { retryAfterMs: 1500 });
      },
    }),
  );
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
  registry.add(
    fromFunction({
      name: 'params',
      inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
      outputs: [{ name: 'p', type: 'string', dims: [1] }],
      infer: (_inputs, opts) => ({
        p: {
          type: 'string',
          dims: [1],
          data: [
            JSON.stringify({
              parameters: opts.parameters,
              priority: opts.priority,
              sequence: opts.sequence,
              hasDeadline: opts.deadline !== undefined,
              id: opts.id,
            }),
          ],
        },
      }),
    }),
  );
  registry.add(
    fromFunction({
      name: 'pair',
      inputs: [
        { name: 'a', type: 'float32', dims: [-1, 2] },
        { name: 'b', type: 'string', dims: [-1] },
      ],
      outputs: [
        { name: 'sum', type: 'float32', dims: [-1] },
        { name: 'len', type: 'int32', dims: [-1] },
      ],
      infer: ({ a, b }) => {
        const rows = a!.dims[0]!;
        const av = a!.data as Float32Array;
        const sum = new Float32Array(rows);
        for (let r = 0; r < rows; r++) sum[r] = av[2 * r]! + av[2 * r + 1]!;
        const len = Int32Array.from(b!.data as (string | Uint8Array)[], (s) =>
          typeof s === 'string' ? Buffer.byteLength(s) : s.byteLength,
        );
        return {
          sum: { type: 'float32', dims: [rows], data: sum },
          len: { type: 'int32', dims: [len.length], data: len },
        };
      },
    }),
  );
  return registry;
}

describe.each(SERVERS)('%s', (_kind, start) => {
  const events = { aborted: 0 };
  let registry: ModelRegistry;
  let server: TestServer;
  let url: string;
  const holdout = mnistHoldout();

  beforeAll(async () => {
    registry = buildRegistry(events);
    registry.add(await loadMnist());
    server = await start({
      registry,
      labels: { mnist: DIGITS },
      bodyLimit: 1024 * 1024,
      management: { token: 's3cret' },
    });
    url = server.url;
  });
  afterAll(async () => {
    await server.close();
    await registry.close();
  });

  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : body instanceof Uint8Array ? bytes(body) : JSON.stringify(body),
    });

  describe('health and metadata', () => {
    it('answers live, ready and server metadata', async () => {
      expect((await fetch(`${url}/v2/health/live`)).status).toBe(200);
      expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200);
      const meta = await (await fetch(`${url}/v2`)).json();
      expect(meta.extensions).toEqual(
        expect.arrayContaining([
          'binary_tensor_data',
          'classification',
          'model_repository',
          'statistics',
          'sequence',
        ]),
      );
    });

    it('describes a model and its versions, and 404s an unknown one', async () => {
      const meta = await (await fetch(`${url}/v2/models/mnist`)).json();
      expect(meta).toEqual({
        name: 'mnist',
        versions: ['1'],
        platform: 'onnxruntime_onnx',
        inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 28, 28] }],
        outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 10] }],
      });
      expect((await fetch(`${url}/v2/models/mnist/versions/1/ready`)).status).toBe(200);
      const missing = await fetch(`${url}/v2/models/nope`);
      expect(missing.status).toBe(404);
      expect((await missing.json()).error).toMatch(/unknown model "nope"/);
      expect((await fetch(`${url}/v2/models/mnist/versions/7`)).status).toBe(404);
      expect((await fetch(`${url}/v2/models/nope/ready`)).status).toBe(404);
    });

    it('leaves other routes and parsers alone', async () => {
      const res = await post('/echo', { a: 1 });
      expect(await res.json()).toEqual({ a: 1 });
      expect((await fetch(`${url}/v2/nothing/here`)).status).toBe(404);
    });
  });

  describe('V2 inference on mnist-cnn', () => {
    it('classifies held-out digits from JSON, flat and nested', async () => {
      let correct = 0;
      for (let i = 0; i < 10; i++) {
        const img = Array.from(holdout.image(i));
        const nested =
          i % 2 === 0 ? img : [[Array.from({ length: 28 }, (_, r) => img.slice(r * 28, r * 28 + 28))]];
        const res = await post('/v2/models/mnist/infer', {
          id: `req-${i}`,
          inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: nested }],
        });
        expect(res.status).toBe(200);
        const body = await res.json();
        expect(body.id).toBe(`req-${i}`);
        expect(body.model_name).toBe('mnist');
        expect(body.model_version).toBe('1');
        expect(body.outputs[0].shape).toEqual([1, 10]);
        if (argmax(body.outputs[0].data) === holdout.labels[i]) correct++;
      }
      expect(correct).toBeGreaterThanOrEqual(8);
    });

    it('takes binary inputs without a Content-Type and returns binary outputs', async () => {
      const images = holdout.images.slice(0, 4 * 784);
      const { body, headerLength } = binaryBody(
        {
          inputs: [
            {
              name: 'image',
              shape: [4, 1, 28, 28],
              datatype: 'FP32',
              parameters: { binary_data_size: images.byteLength },
            },
          ],
          parameters: { binary_data_output: true },
        },
        new Uint8Array(images.buffer),
      );
      const res = await fetch(`${url}/v2/models/mnist/infer`, {
        method: 'POST',
        headers: { 'inference-header-content-length': String(headerLength) },
        body,
      });
      expect(res.status).toBe(200);
      const { header, rest } = await readBinary(res);
      expect(header.outputs).toEqual([
        { name: 'logits', datatype: 'FP32', shape: [4, 10], parameters: { binary_data_size: 160 } },
      ]);
      const logits = new Float32Array(rest.buffer.slice(rest.byteOffset, rest.byteOffset + 160));
      const preds = [0, 1, 2, 3].map((r) => argmax(logits.subarray(r * 10, r * 10 + 10)));
      expect(preds.filter((p, r) => p === holdout.labels[r]).length).toBeGreaterThanOrEqual(3);
      expect(res.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    });

    it('returns top-k classes with labels (classification extension)', async () => {
      const res = await post('/v2/models/mnist/infer', {
        inputs: [
          {
            name: 'image',
            datatype: 'FP32',
            shape: [2, 1, 28, 28],
            data: Array.from(holdout.images.slice(0, 1568)),
          },
        ],
        outputs: [{ name: 'logits', parameters: { classification: 3 } }],
      });
      const body = await res.json();
      expect(body.outputs[0].datatype).toBe('BYTES');
      expect(body.outputs[0].shape).toEqual([2, 3]);
      const first = body.outputs[0].data[0].split(':');
      expect(first).toHaveLength(3);
      expect(Number(first[1])).toBe(holdout.labels[0]);
      expect(first[2]).toBe(DIGITS[holdout.labels[0]!]);
      expect(Number(first[0])).toBeGreaterThanOrEqual(Number(body.outputs[0].data[1].split(':')[0]));
    });
  });

  describe('Triton model configuration and statistics (what perf_analyzer reads)', () => {
    it('derives the config from the metadata', async () => {
      const config = await (await fetch(`${url}/v2/models/mnist/config`)).json();
      expect(config).toMatchObject({
        name: 'mnist',
        platform: 'onnxruntime_onnx',
        input: [{ name: 'image', data_type: 'TYPE_FP32', dims: [1, 28, 28] }],
        output: [{ name: 'logits', data_type: 'TYPE_FP32', dims: [10] }],
      });
      expect(config.max_batch_size).toBeGreaterThan(0);
      expect((await fetch(`${url}/v2/models/nope/config`)).status).toBe(404);
    });

    it('counts the requests it served, per model', async () => {
      const before = (await (await fetch(`${url}/v2/models/mnist/stats`)).json()).model_stats[0];
      const okBefore = before?.inference_stats.success.count ?? 0;
      const rowsBefore = before?.inference_count ?? 0;
      const res = await post('/v2/models/mnist/infer', {
        inputs: [
          { name: 'image', datatype: 'FP32', shape: [3, 1, 28, 28], data: new Array(3 * 784).fill(0) },
        ],
      });
      expect(res.status).toBe(200);
      await post('/v2/models/boom/infer', {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }],
      });
      const after = (await (await fetch(`${url}/v2/models/mnist/stats`)).json()).model_stats[0];
      expect(after.name).toBe('mnist');
      expect(after.inference_stats.success.count).toBe(okBefore + 1);
      expect(after.inference_count).toBe(rowsBefore + 3);
      expect(after.inference_stats.compute_infer.ns).toBeGreaterThan(0);
      const all = (await (await fetch(`${url}/v2/models/stats`)).json()).model_stats;
      expect(
        all.find((m: { name: string }) => m.name === 'boom').inference_stats.fail.count,
      ).toBeGreaterThanOrEqual(1);
    });
  });

  describe('every datatype round trips', () => {
    for (const type of DATA_TYPES) {
      const dt = V2_DATATYPE[type];
      it(`${dt} as JSON and as binary`, async () => {
        const t = sample(type);
        const model = `/v2/models/id_${dt.toLowerCase()}/infer`;
        // JSON in, JSON out.
        const jsonData =
          t.type === 'string'
            ? t.data
            : t.type === 'bool'
              ? Array.from(t.data as Uint8Array, Boolean)
              : t.type === 'float16'
                ? [1, -2, 0, 0.333251953125]
                : Array.from(t.data as ArrayLike<number | bigint>, Number);
        const res = await post(model, {
          inputs: [{ name: 'x', datatype: dt, shape: [2, 2], data: jsonData }],
        });
        expect(res.status).toBe(200);
        const out = (await res.json()).outputs[0];
        expect(out).toMatchObject({ name: 'y', datatype: dt, shape: [2, 2] });
        expect(out.data).toEqual(jsonData);
        // Binary in, binary out.
        const raw =
          t.type === 'string'
            ? Buffer.concat(
                (t.data as string[]).flatMap((s) => {
                  const b = Buffer.from(s);
                  const n = Buffer.alloc(4);
                  n.writeUInt32LE(b.byteLength);
                  return [n, b];
                }),
              )
            : Buffer.from((t.data as Uint8Array).buffer);
        const { body, headerLength } = binaryBody(
          {
            inputs: [
              { name: 'x', shape: [2, 2], datatype: dt, parameters: { binary_data_size: raw.byteLength } },
            ],
            outputs: [{ name: 'y', parameters: { binary_data: true } }],
          },
          raw,
        );
        const bin = await fetch(`${url}${model}`, {
          method: 'POST',
          headers: { 'inference-header-content-length': String(headerLength) },
          body,
        });
        expect(bin.status).toBe(200);
        const { header, rest } = await readBinary(bin);
        expect(header.outputs[0].parameters.binary_data_size).toBe(raw.byteLength);
        expect(rest.equals(raw)).toBe(true);
      });
    }
  });

  describe('hostile input gets 400 and the server stays up', () => {
    const bad: [string, unknown][] = [
      [
        'huge dims with tiny data',
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [1e9, 1e9], data: [1, 2, 3] }] },
      ],
      [
        'large but safe dims',
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [1e6, 1e6], data: [1, 2, 3] }] },
      ],
      ['negative dim', { inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 3], data: [1, 2, 3] }] }],
      ['fractional dim', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1.5, 2], data: [1, 2, 3] }] }],
      ['NaN dim', { inputs: [{ name: 'x', datatype: 'FP32', shape: ['NaN'], data: [1] }] }],
      ['unknown datatype', { inputs: [{ name: 'x', datatype: 'FP128', shape: [1], data: [1] }] }],
      ['BF16', { inputs: [{ name: 'x', datatype: 'BF16', shape: [1], data: [1] }] }],
      ['too much data', { inputs: [{ name: 'x', datatype: 'FP32', shape: [2], data: [1, 2, 3] }] }],
      [
        'deep nesting',
        {
          inputs: [
            {
              name: 'x',
              datatype: 'FP32',
              shape: [1],
              data: JSON.parse(`${'['.repeat(200)}1${']'.repeat(200)}`),
            },
          ],
        },
      ],
      ['string in FP32', { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: ['1'] }] }],
      ['number in BYTES', { inputs: [{ name: 'x', datatype: 'BYTES', shape: [1], data: [1] }] }],
      ['out of range INT8', { inputs: [{ name: 'x', datatype: 'INT8', shape: [1], data: [300] }] }],
      ['no inputs array', { inputs: 'x' }],
      ['not an object', [1, 2]],
      ['object parameter', { inputs: [], parameters: { a: { b: 1 } } }],
      ['bad timeout', { inputs: [], parameters: { timeout: -5 } }],
      [
        'duplicate input',
        {
          inputs: [
            { name: 'x', datatype: 'FP32', shape: [1], data: [1] },
            { name: 'x', datatype: 'FP32', shape: [1], data: [1] },
          ],
        },
      ],
      [
        'binary size without header',
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } }] },
      ],
    ];
    for (const [what, body] of bad) {
      it(what, async () => {
        const res = await post('/v2/models/id_fp32/infer', body);
        expect(res.status).toBe(400);
        const json = await res.json();
        expect(json.error).toEqual(expect.any(String));
        expect(json.code).toBe('INVALID_ARGUMENT');
      });
    }

    it('__proto__ and constructor names are plain names', async () => {
      const res = await post(
        '/v2/models/id_fp32/infer',
        '{"inputs":[{"name":"__proto__","datatype":"FP32","shape":[1],"data":[1]},{"name":"constructor","datatype":"FP32","shape":[1],"data":[1]}],"parameters":{"__proto__":{"polluted":true}}}',
      );
      expect(res.status).toBe(400);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      const res2 = await post(
        '/v2/models/id_fp32/infer',
        '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":[1]},{"name":"__proto__","datatype":"FP32","shape":[1],"data":[1]}]}',
      );
      expect(res2.status).toBe(400);
      expect((await res2.json()).error).toMatch(/__proto__/);
    });

    it('invalid UTF-8 and invalid JSON', async () => {
      expect((await post('/v2/models/id_fp32/infer', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))).status).toBe(
        400,
      );
      expect((await post('/v2/models/id_fp32/infer', '{"inputs": [')).status).toBe(400);
      expect((await post('/v2/models/id_fp32/infer', '')).status).toBe(400);
    });

    it('binary header length past the end, and data past the end', async () => {
      const { body } = binaryBody(
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } }] },
        Buffer.alloc(4),
      );
      for (const len of [String(body.byteLength + 1), '-1', 'abc', '1e3']) {
        const res = await fetch(`${url}/v2/models/id_fp32/infer`, {
          method: 'POST',
          headers: { 'inference-header-content-length': len },
          body,
        });
        expect(res.status).toBe(400);
      }
      const over = binaryBody(
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 400 } }] },
        Buffer.alloc(4),
      );
      const res = await fetch(`${url}/v2/models/id_fp32/infer`, {
        method: 'POST',
        headers: { 'inference-header-content-length': String(over.headerLength) },
        body: over.body,
      });
      expect(res.status).toBe(400);
      expect((await res.json()).error).toMatch(/past the end/);
      const extra = binaryBody(
        { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], parameters: { binary_data_size: 4 } }] },
        Buffer.alloc(8),
      );
      const res2 = await fetch(`${url}/v2/models/id_fp32/infer`, {
        method: 'POST',
        headers: { 'inference-header-content-length': String(extra.headerLength) },
        body: extra.body,
      });
      expect(res2.status).toBe(400);
    });

    it('BYTES length prefixes past the end, and a huge count in few bytes', async () => {
      const prefix = Buffer.alloc(8);
      prefix.writeUInt32LE(1_000_000, 0);
      for (const [shape, raw] of [
        [[1], prefix],
        [[1e12], Buffer.alloc(16)],
        [[2], Buffer.from([1, 0, 0, 0, 65, 2, 0])],
      ] as [number[], Buffer][]) {
        const { body, headerLength } = binaryBody(
          {
            inputs: [
              { name: 'x', datatype: 'BYTES', shape, parameters: { binary_data_size: raw.byteLength } },
            ],
          },
          raw,
        );
        const res = await fetch(`${url}/v2/models/id_bytes/infer`, {
          method: 'POST',
          headers: { 'inference-header-content-length': String(headerLength) },
          body,
        });
        expect(res.status).toBe(400);
      }
      // Invalid UTF-8 inside BYTES is raw bytes, not an error: it round-trips.
      const raw = Buffer.from([2, 0, 0, 0, 0xff, 0xfe]);
      const { body, headerLength } = binaryBody(
        {
          inputs: [
            { name: 'x', datatype: 'BYTES', shape: [1, 1], parameters: { binary_data_size: raw.byteLength } },
          ],
          parameters: { binary_data_output: true },
        },
        raw,
      );
      const res = await fetch(`${url}/v2/models/id_bytes/infer`, {
        method: 'POST',
        headers: { 'inference-header-content-length': String(headerLength) },
        body,
      });
      expect(res.status).toBe(200);
      expect((await readBinary(res)).rest.equals(raw)).toBe(true);
    });

    it('nesting 100k deep is a 400, not a stack overflow', async () => {
      const deep = `${'['.repeat(100_000)}1${']'.repeat(100_000)}`;
      const v2 = await post(
        '/v2/models/id_fp32/infer',
        `{"inputs":[{"name":"x","datatype":"FP32","shape":[1,1],"data":${deep}}]}`,
      );
      expect(v2.status).toBe(400);
      const v1 = await post('/v1/models/pair:predict', `{"instances":${deep}}`);
      expect(v1.status).toBe(400);
    });

    it('a client that leaves mid-body does not hurt the server', async () => {
      const { connect } = await import('node:net');
      const u = new URL(url);
      const sock = connect(Number(u.port), u.hostname);
      await once(sock, 'connect');
      sock.write(
        `POST ${u.pathname.replace(/\/$/, '')}/v2/models/id_fp32/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{"inputs":`,
      );
      await new Promise((r) => setTimeout(r, 50));
      sock.destroy();
      await new Promise((r) => setTimeout(r, 50));
      const res = await post('/v2/models/id_fp32/infer', {
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: [7] }],
      });
      expect(res.status).toBe(200);
      expect((await res.json()).outputs[0].data).toEqual([7]);
    });

    it('still serves after all that', async () => {
      expect((await fetch(`${url}/v2/health/live`)).status).toBe(200);
    });
  });

  describe('limits, compression, errors', () => {
    it('413 for a body over the limit, declared or streamed', async () => {
      const big = Buffer.alloc(2 * 1024 * 1024, 0x20);
      const res = await post('/v2/models/id_fp32/infer', big);
      expect(res.status).toBe(413);
      expect((await res.json()).error).toEqual(expect.any(String));
      // Chunked: no Content-Length, the limit is hit while streaming.
      const stream = new ReadableStream({
        start(c) {
          for (let i = 0; i < 40; i++) c.enqueue(new Uint8Array(64 * 1024));
          c.close();
        },
      });
      const res2 = await fetch(`${url}/v2/models/id_fp32/infer`, {
        method: 'POST',
        body: stream,
        duplex: 'half',
      } as RequestInit);
      expect(res2.status).toBe(413);
    });

    it('gzip and deflate request bodies, gzip responses', async () => {
      const body = JSON.stringify({
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }],
      });
      for (const [enc, zip] of [
        ['gzip', gzipSync],
        ['deflate', deflateSync],
      ] as const) {
        const res = await post('/v2/models/id_fp32/infer', zip(body), { 'content-encoding': enc });
        expect(res.status).toBe(200);
        expect((await res.json()).outputs[0].data).toEqual([1, 2, 3]);
      }
      expect(
        (await post('/v2/models/id_fp32/infer', Buffer.from('not gzip'), { 'content-encoding': 'gzip' }))
          .status,
      ).toBe(400);
      // A zip bomb: small compressed, over the limit decompressed.
      expect(
        (
          await post('/v2/models/id_fp32/infer', gzipSync(Buffer.alloc(4 * 1024 * 1024)), {
            'content-encoding': 'gzip',
          })
        ).status,
      ).toBe(413);
      // Response compression, checked on the raw bytes.
      const big = JSON.stringify({
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2000], data: new Array(2000).fill(1) }],
      });
      const { request } = await import('node:http');
      const raw = await new Promise<{ enc: string | undefined; body: Buffer }>((resolve, reject) => {
        const u = new URL(`${url}/v2/models/id_fp32/infer`);
        const req = request(
          u,
          { method: 'POST', headers: { 'accept-encoding': 'gzip', 'content-type': 'application/json' } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () =>
              resolve({ enc: res.headers['content-encoding'], body: Buffer.concat(chunks) }),
            );
          },
        );
        req.on('error', reject);
        req.end(big);
      });
      expect(raw.enc).toBe('gzip');
      expect(JSON.parse(gunzipSync(raw.body).toString()).outputs[0].data).toHaveLength(2000);
    });

    it('429 with Retry-After on overload; 500 with a JSON error for a crash', async () => {
      const body = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] };
      const res = await post('/v2/models/busy/infer', body);
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('2');
      expect(await res.json()).toMatchObject({ error: 'queue is full', code: 'RESOURCE_EXHAUSTED' });
      const boom = await post('/v2/models/boom/infer', body);
      expect(boom.status).toBe(500);
      expect((await boom.json()).error).toBe('kaboom');
      expect((await post('/v2/models/nope/infer', body)).status).toBe(404);
    });
  });

  describe('deadlines, cancellation, parameters, ids', () => {
    const body = { inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] };

    it('the V2 timeout parameter (µs) and the header become the deadline', async () => {
      const t0 = Date.now();
      const res = await post('/v2/models/slow/infer', { ...body, parameters: { timeout: 100_000 } });
      expect(res.status).toBe(504);
      const res2 = await post('/v2/models/slow/infer', body, { 'x-request-timeout-ms': '100' });
      expect(res2.status).toBe(504);
      expect(Date.now() - t0).toBeLessThan(4_000);
      expect((await post('/v2/models/slow/infer', body, { 'x-request-timeout-ms': 'soon' })).status).toBe(
        400,
      );
    });

    it('a client that disconnects aborts its request', async () => {
      const before = events.aborted;
      const ac = new AbortController();
      const pending = post('/v2/models/slow/infer', body, {}).catch(() => undefined);
      void pending;
      const p = fetch(`${url}/v2/models/slow/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: ac.signal,
      }).catch((e: Error) => e);
      await new Promise((r) => setTimeout(r, 200));
      ac.abort();
      expect(await p).toBeInstanceOf(Error);
      const until = Date.now() + 2_000;
      while (events.aborted === before && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(events.aborted).toBeGreaterThan(before);
    });

    it('passes parameters, priority and sequence; echoes or generates the id', async () => {
      const res = await post(
        '/v2/models/params/infer',
        {
          ...body,
          parameters: {
            temperature: 0.5,
            mode: 'fast',
            priority: 2,
            sequence_id: 7,
            sequence_start: true,
            sequence_end: false,
            timeout: 5_000_000,
          },
        },
        { 'x-request-id': 'abc-123' },
      );
      expect(res.status).toBe(200);
      const out = await res.json();
      expect(out.id).toBe('abc-123');
      expect(res.headers.get('x-request-id')).toBe('abc-123');
      const seen = JSON.parse(out.outputs[0].data[0]);
      expect(seen).toEqual({
        parameters: { temperature: 0.5, mode: 'fast' },
        priority: 2,
        sequence: { id: 7, start: true, end: false },
        hasDeadline: true,
        id: 'abc-123',
      });
      // An id that is no safe header value stays in the body; the header gets a generated one.
      const odd = await post('/v2/models/params/infer', { ...body, id: 'línea\nnueva' });
      expect(odd.status).toBe(200);
      expect((await odd.json()).id).toBe('línea\nnueva');
      expect(odd.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
      // timeout 0 means none (Triton's convention).
      expect((await post('/v2/models/params/infer', { ...body, parameters: { timeout: 0 } })).status).toBe(
        200,
      );
      const gen = await (await post('/v2/models/params/infer', body)).json();
      expect(gen.id).toMatch(/^[0-9a-f-]{36}$/);
    });
  });

  describe('TensorFlow Serving REST', () => {
    it('predicts in the row format (single input) and the columnar format', async () => {
      const img = Array.from(holdout.image(0));
      const res = await post('/v1/models/mnist:predict', {
        instances: [
          [img.slice(0, 784)].map((r) => [
            Array.from({ length: 28 }, (_, i) => r.slice(i * 28, i * 28 + 28)),
          ])[0],
        ],
      });
      expect(res.status).toBe(200);
      const rows = await res.json();
      expect(rows.predictions).toHaveLength(1);
      expect(argmax(rows.predictions[0])).toBe(holdout.labels[0]);
      const cols = await (
        await post('/v1/models/mnist/versions/1:predict', {
          inputs: [[Array.from({ length: 28 }, (_, i) => img.slice(i * 28, i * 28 + 28))]],
        })
      ).json();
      expect(argmax(cols.outputs[0])).toBe(holdout.labels[0]);
    });

    it('handles named inputs, b64 strings and several outputs', async () => {
      const res = await post('/v1/models/pair:predict', {
        instances: [
          { a: [1, 2], b: 'hey' },
          { a: [3, 4], b: { b64: Buffer.from([1, 2, 3, 4, 5]).toString('base64') } },
        ],
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        predictions: [
          { sum: 3, len: 3 },
          { sum: 7, len: 5 },
        ],
      });
      const cols = await (
        await post('/v1/models/pair:predict', { inputs: { a: [[1, 1]], b: ['xy'] } })
      ).json();
      expect(cols).toEqual({ outputs: { sum: [2], len: [2] } });
    });

    it('rejects ragged and mistyped instances with 400', async () => {
      expect(
        (
          await post('/v1/models/pair:predict', {
            instances: [
              { a: [1, 2], b: 'x' },
              { a: [1], b: 'y' },
            ],
          })
        ).status,
      ).toBe(400);
      expect((await post('/v1/models/pair:predict', { instances: [{ a: [1, 'x'], b: 'x' }] })).status).toBe(
        400,
      );
      expect((await post('/v1/models/pair:predict', { instances: [], inputs: {} })).status).toBe(400);
      expect((await post('/v1/models/pair:predict', { inputs: { zzz: [1] } })).status).toBe(400);
      expect((await post('/v1/models/nope:predict', { instances: [1] })).status).toBe(404);
    });

    it('serves status, metadata and label paths', async () => {
      registry.setLabel('mnist', 'stable', '1');
      const status = await (await fetch(`${url}/v1/models/mnist`)).json();
      expect(status).toEqual({
        model_version_status: [
          { version: '1', state: 'AVAILABLE', status: { error_code: 'OK', error_message: '' } },
        ],
      });
      expect((await fetch(`${url}/v1/models/mnist/versions/1`)).status).toBe(200);
      const meta = await (await fetch(`${url}/v1/models/mnist/metadata`)).json();
      expect(meta.metadata.signature_def.signature_def.serving_default.inputs.image.dtype).toBe('DT_FLOAT');
      const labelled = await post('/v1/models/mnist/labels/stable:predict', {
        inputs: [[Array.from({ length: 28 }, () => new Array(28).fill(0))]],
      });
      expect(labelled.status).toBe(200);
    });
  });

  describe('error codes', () => {
    it('405 is METHOD_NOT_ALLOWED and 415 UNSUPPORTED_MEDIA_TYPE, code and status agreeing', async () => {
      const get = await fetch(`${url}/v2/models/mnist/infer`);
      expect(get.status).toBe(405);
      expect(await get.json()).toMatchObject({ code: 'METHOD_NOT_ALLOWED' });
      const br = await post('/v2/models/mnist/infer', {}, { 'content-encoding': 'br' });
      expect(br.status).toBe(415);
      expect(await br.json()).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE' });
    });
  });

  describe('model repository extension', () => {
    it('needs the token, lists and unloads', async () => {
      const missing = await post('/v2/repository/index', {});
      expect(missing.status).toBe(401);
      expect(await missing.json()).toMatchObject({ code: 'UNAUTHENTICATED' });
      // A token of the same length, a prefix and a longer one are all refused (compared in constant time).
      for (const wrong of ['Bearer s3crex', 'Bearer s3cre', 'Bearer s3crets', 'bearer s3cret'])
        expect((await post('/v2/repository/index', {}, { authorization: wrong })).status).toBe(401);
      const auth = { authorization: 'Bearer s3cret' };
      const index = await (await post('/v2/repository/index', {}, auth)).json();
      expect(index).toEqual(
        expect.arrayContaining([{ name: 'boom', version: '1', state: 'READY', reason: '' }]),
      );
      expect((await post('/v2/repository/models/boom/load', {}, auth)).status).toBe(501);
      expect((await post('/v2/repository/models/boom/unload', {}, auth)).status).toBe(200);
      expect((await fetch(`${url}/v2/models/boom`)).status).toBe(404);
    });
  });
});

describe.each(SERVERS)('%s: options', (_kind, start) => {
  it('repository endpoints are off by default; prefix mounts; /metrics when given', async () => {
    const registry = new ModelRegistry();
    const server = await start({
      registry,
      prefix: '/api',
      metrics: { contentType: 'text/plain; version=0.0.4', metrics: async () => 'mlserve_up 1\n' },
    });
    try {
      expect((await fetch(`${server.url}/v2/repository/index`, { method: 'POST' })).status).toBe(404);
      expect((await fetch(`${server.url}/v2/health/live`)).status).toBe(200);
      const m = await fetch(`${server.url}/metrics`);
      expect(await m.text()).toBe('mlserve_up 1\n');
    } finally {
      await server.close();
    }
  });

  it('serves extra model actions and unloads through the repository hook', async () => {
    const registry = new ModelRegistry();
    registry.add(
      fromFunction({
        name: 'm',
        inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
        infer: ({ x }) => ({ y: x! }),
      }),
    );
    const unloaded: string[] = [];
    const server = await start({
      registry,
      management: { unload: async (name) => void unloaded.push(name) },
      modelActions: {
        feedback: ({ name, version, body }) => ({ name, version, got: (body as { label?: unknown }).label }),
      },
    });
    try {
      const post = (path: string, body: string) =>
        fetch(`${server.url}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
      const res = await post('/v2/models/m/versions/1/feedback', '{"label":3}');
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ name: 'm', version: '1', got: 3 });
      expect((await fetch(`${server.url}/v2/models/m/feedback`)).status).toBe(405);
      const unknown = await post('/v2/models/m/other', '{}');
      expect(unknown.status).toBe(404);
      expect((await post('/v2/models/m/feedback', '{bad')).status).toBe(400);
      expect((await post('/v2/repository/models/m/unload', '')).status).toBe(200);
      expect(unloaded).toEqual(['m']);
    } finally {
      await server.close();
      await registry.close();
    }
  });

  it('readiness turns 503 as soon as the registry starts closing', async () => {
    const registry = new ModelRegistry();
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    registry.add(
      fromFunction({
        name: 'held',
        inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
        infer: async ({ x }) => {
          await gate;
          return { y: x! };
        },
      }),
    );
    const server = await start({ registry });
    try {
      const inflight = fetch(`${server.url}/v2/models/held/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }] }),
      });
      await new Promise((r) => setTimeout(r, 100));
      const closing = registry.close();
      expect((await fetch(`${server.url}/v2/health/ready`)).status).toBe(503);
      expect((await fetch(`${server.url}/v2/models/held/ready`)).status).toBe(503);
      release();
      expect((await inflight).status).toBe(200);
      await closing;
    } finally {
      await server.close();
    }
  });
});

describe('express: behind a JSON body parser', () => {
  it('uses what express.json() already parsed', async () => {
    const registry = new ModelRegistry();
    registry.add(
      fromFunction({
        name: 'id',
        inputs: [{ name: 'x', type: 'float32', dims: [-1, -1] }],
        outputs: [{ name: 'x', type: 'float32', dims: [-1, -1] }],
        infer: ({ x }) => ({ x: x! }),
      }),
    );
    const app = express();
    app.use(express.json());
    app.use(mlserveRouter({ registry }));
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const res = await fetch(
        `http://127.0.0.1:${(server.address() as AddressInfo).port}/v2/models/id/infer`,
        {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] }),
        },
      );
      expect(res.status).toBe(200);
      expect((await res.json()).outputs[0].data).toEqual([1, 2]);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await registry.close();
    }
  });
});
