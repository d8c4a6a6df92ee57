import * as grpc from '@grpc/grpc-js';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import {
  type DataType,
  fromFunction,
  type Model,
  ModelRegistry,
  resourceExhausted,
  type Tensor,
  tensor,
  tensorsEqual,
} from '@mlserve/core';
import { tensorFromBinary, tensorToBinary, V2_DATATYPE } from '@mlserve/protocol';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGrpcServer, type GrpcServing, serveGrpc } from '../src/index.js';
import { connect, rejection } from './client.js';

type Client = ReturnType<typeof connect>;
type Msg = Record<string, unknown>;

/** One sample tensor per datatype, with the values most likely to break a codec. */
const SAMPLES: Record<DataType, Tensor> = {
  bool: tensor('bool', [true, false, true, true], [2, 2]),
  int8: tensor('int8', [-128, 0, 127, -1], [2, 2]),
  int16: tensor('int16', [-32768, 0, 32767, 7], [2, 2]),
  int32: tensor('int32', [-2147483648, 0, 2147483647, 42], [2, 2]),
  int64: tensor('int64', [-(2n ** 63n), 2n ** 63n - 1n, 9007199254740993n, -1n], [2, 2]),
  uint8: tensor('uint8', [0, 1, 254, 255], [2, 2]),
  uint16: tensor('uint16', [0, 1, 65534, 65535], [2, 2]),
  uint32: tensor('uint32', [0, 1, 4294967294, 4294967295], [2, 2]),
  uint64: tensor('uint64', [0n, 1n, 2n ** 64n - 1n, 2n ** 53n + 1n], [2, 2]),
  float16: tensor('float16', [0.5, -2, 65504, 0], [2, 2]),
  float32: tensor('float32', [1.5, -0, 3.4028234663852886e38, 1e-45], [2, 2]),
  float64: tensor('float64', [Math.PI, -1e308, 5e-324, 0.1], [2, 2]),
  string: {
    type: 'string',
    dims: [2, 2],
    data: [
      new Uint8Array([0xff, 0x00, 0xfe]),
      new Uint8Array(),
      new TextEncoder().encode('héllo'),
      new Uint8Array([10]),
    ],
  },
};
const TYPES = Object.keys(SAMPLES) as DataType[];

function identity(type: DataType, name = `id_${type}`): Model {
  return fromFunction({
    name,
    inputs: [{ name: 'x', type, dims: [-1, 2] }],
    outputs: [{ name: 'y', type, dims: [-1, 2] }],
    infer: ({ x }) => ({ y: x! }),
  });
}

/** Typed contents for a sample, as a Python client would fill them (64-bit as exact strings). */
function typedContents(t: Tensor): Msg {
  const d = t.data as ArrayLike<number | bigint>;
  switch (t.type) {
    case 'bool':
      return { bool_contents: Array.from(d, (v) => v === 1) };
    case 'int8':
    case 'int16':
    case 'int32':
      return { int_contents: Array.from(d) };
    case 'uint8':
    case 'uint16':
    case 'uint32':
      return { uint_contents: Array.from(d) };
    case 'int64':
      return { int64_contents: Array.from(d, String) };
    case 'uint64':
      return { uint64_contents: Array.from(d, String) };
    case 'float32':
      return { fp32_contents: Array.from(d) };
    case 'float64':
      return { fp64_contents: Array.from(d) };
    case 'string':
      return { bytes_contents: t.data };
    default:
      return {};
  }
}

/** The first output of a response, decoded from raw_output_contents. */
function rawOutput(res: Msg, i = 0): Tensor {
  const out = (res.outputs as Msg[])[i]!;
  const type = TYPES.find((t) => V2_DATATYPE[t] === out.datatype)!;
  const dims = (out.shape as string[]).map(Number);
  const count = dims.reduce((a, b) => a * b, 1);
  return tensorFromBinary(type, dims, count, (res.raw_output_contents as Buffer[])[i]!, 'output');
}

function inferRequest(model: string, t: Tensor, raw: boolean, extra: Msg = {}): Msg {
  const input: Msg = {
    name: model === 'mnist' ? 'image' : 'x',
    datatype: V2_DATATYPE[t.type],
    shape: t.dims,
  };
  if (raw) return { model_name: model, inputs: [input], raw_input_contents: [tensorToBinary(t)], ...extra };
  return { model_name: model, inputs: [{ ...input, contents: typedContents(t) }], ...extra };
}

const aborted: { signal?: AbortSignal; deadline?: number | undefined }[] = [];
let slowStarted: () => void = () => {};

function slowModel(): Model {
  return fromFunction({
    name: 'slow',
    inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
    outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
    infer: ({ x }, options) => {
      aborted.push({ signal: options.signal, deadline: options.deadline });
      slowStarted();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => resolve({ y: x! }), 400);
        options.signal?.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            reject(options.signal?.reason);
          },
          { once: true },
        );
      });
    },
  });
}

let registry: ModelRegistry;
let server: GrpcServing;
let typedServer: GrpcServing;
let plainServer: GrpcServing;
let c: Client;
let typed: Client;
let plain: Client;
let mnistDirect: Model;
const loads: { name: string; parameters: Record<string, unknown> }[] = [];

beforeAll(async () => {
  registry = new ModelRegistry();
  mnistDirect = await loadOnnxModel(modelPath('mnist-cnn.onnx'), { name: 'mnist', intraOpNumThreads: 1 });
  registry.add(mnistDirect);
  for (const type of TYPES) registry.add(identity(type));
  registry.add(slowModel());
  registry.add(
    fromFunction({
      name: 'busy',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
      infer: () => {
        throw resourceExhausted('queue full', { retryAfterMs: 250 });
      },
    }),
  );
  server = await serveGrpc({
    registry,
    management: {
      load: async (name, parameters) => {
        loads.push({ name, parameters });
        registry.add(identity('float32', name));
      },
    },
    token: 's3cret',
  });
  typedServer = await serveGrpc({ registry, outputContents: 'match' });
  plainServer = await serveGrpc({ registry, maxReceiveMessageLength: 4096 });
  c = connect(server.port);
  typed = connect(typedServer.port);
  plain = connect(plainServer.port);
});

afterAll(async () => {
  for (const x of [c, typed, plain]) x?.close();
  await Promise.all([server?.close(), typedServer?.close(), plainServer?.close()]);
  await registry?.close();
});

describe('health and metadata', () => {
  it('answers ServerLive, ServerReady and ServerMetadata', async () => {
    expect(await c.call('ServerLive', {})).toEqual({ live: true });
    expect(await c.call('ServerReady', {})).toEqual({ ready: true });
    const meta = await c.call('ServerMetadata', {});
    expect(meta.name).toBe('mlserve');
    expect(meta.extensions).toContain('model_repository');
    expect(meta.extensions).toEqual(expect.arrayContaining(['sequence', 'statistics', 'classification']));
    expect((await plain.call('ServerMetadata', {})).extensions).not.toContain('model_repository');
  });

  it("answers ModelStatistics in Triton's shape, per batch size, for one model or all", async () => {
    const before = await c.call<{ model_stats: Msg[] }>('ModelStatistics', { name: 'id_float32' });
    const prev = (before.model_stats[0] as { inference_count?: string } | undefined)?.inference_count ?? '0';
    const x = (n: number) => ({
      model_name: 'id_float32',
      inputs: [
        { name: 'x', datatype: 'FP32', shape: [n, 2], contents: { fp32_contents: new Array(2 * n).fill(1) } },
      ],
    });
    await c.call('ModelInfer', x(1));
    await c.call('ModelInfer', x(4));
    const res = await c.call<{ model_stats: Msg[] }>('ModelStatistics', { name: 'id_float32', version: '' });
    const s = res.model_stats[0] as {
      name: string;
      version: string;
      inference_count: string;
      execution_count: string;
      last_inference: string;
      inference_stats: { success: { count: string; ns: string } };
      batch_stats: { batch_size: string; compute_infer: { count: string; ns: string } }[];
    };
    expect(s.name).toBe('id_float32');
    expect(s.version).toBe('1');
    expect(Number(s.inference_count) - Number(prev)).toBe(5);
    expect(Number(s.last_inference)).toBeGreaterThan(Date.now() - 600_000);
    expect(Number(s.inference_stats.success.count)).toBeGreaterThanOrEqual(2);
    const four = s.batch_stats.find((b) => b.batch_size === '4');
    expect(Number(four?.compute_infer.count)).toBeGreaterThanOrEqual(1);
    expect(Number(four?.compute_infer.ns)).toBeGreaterThan(0);
    const all = await c.call<{ model_stats: { name: string }[] }>('ModelStatistics', {});
    expect(all.model_stats.map((m) => m.name)).toContain('id_float32');
    const err = await rejection(c.call('ModelStatistics', { name: 'nope' }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
  });

  it('answers ModelReady, NOT_FOUND for an unknown model or version', async () => {
    expect(await c.call('ModelReady', { name: 'mnist' })).toEqual({ ready: true });
    expect(await c.call('ModelReady', { name: 'mnist', version: '1' })).toEqual({ ready: true });
    expect((await rejection(c.call('ModelReady', { name: 'nope' }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await rejection(c.call('ModelReady', { name: 'mnist', version: '9' }))).code).toBe(
      grpc.status.NOT_FOUND,
    );
  });

  it('answers ModelMetadata with V2 datatypes and shapes', async () => {
    const meta = await c.call('ModelMetadata', { name: 'mnist' });
    expect(meta).toMatchObject({ name: 'mnist', versions: ['1'], platform: 'onnxruntime_onnx' });
    expect(meta.inputs).toEqual([{ name: 'image', datatype: 'FP32', shape: ['-1', '1', '28', '28'] }]);
    expect(meta.outputs).toEqual([{ name: 'logits', datatype: 'FP32', shape: ['-1', '10'] }]);
    const id = await c.call('ModelMetadata', { name: 'id_uint64', version: '1' });
    expect((id.inputs as Msg[])[0]!.datatype).toBe('UINT64');
    expect((await rejection(c.call('ModelMetadata', { name: 'nope' }))).code).toBe(grpc.status.NOT_FOUND);
  });
});

describe('ModelConfig', () => {
  it("answers Triton's config subset: batch dim left out when max_batch_size > 0", async () => {
    const { config } = await c.call<{ config: Msg }>('ModelConfig', { name: 'mnist' });
    expect(config).toMatchObject({ name: 'mnist', platform: 'onnxruntime_onnx' });
    expect(config.max_batch_size).toBeGreaterThan(0);
    expect(config.input).toEqual([
      {
        name: 'image',
        data_type: 'TYPE_FP32',
        format: 'FORMAT_NONE',
        dims: ['1', '28', '28'],
        optional: false,
      },
    ]);
    expect(config.output).toEqual([
      { name: 'logits', data_type: 'TYPE_FP32', dims: ['10'], label_filename: '' },
    ]);
    const bytes = await c.call<{ config: Msg }>('ModelConfig', { name: 'id_string', version: '1' });
    expect((bytes.config.input as Msg[])[0]!.data_type).toBe('TYPE_STRING');
    expect((await rejection(c.call('ModelConfig', { name: 'nope' }))).code).toBe(grpc.status.NOT_FOUND);
  });
});

describe('ModelInfer', () => {
  it('runs mnist-cnn from raw contents, the same logits as the model itself', async () => {
    const holdout = mnistHoldout();
    const n = 8;
    const images = holdout.images.slice(0, n * 784);
    const res = await c.call(
      'ModelInfer',
      inferRequest('mnist', tensor('float32', images, [n, 1, 28, 28]), true, { id: 'req-1' }),
    );
    expect(res).toMatchObject({ model_name: 'mnist', model_version: '1', id: 'req-1' });
    const logits = rawOutput(res);
    expect(logits.dims).toEqual([n, 10]);
    const direct = await mnistDirect.infer({ image: tensor('float32', images, [n, 1, 28, 28]) });
    expect(tensorsEqual(logits, direct.logits!)).toBe(true);
    let correct = 0;
    for (let i = 0; i < n; i++) {
      const row = Array.from((logits.data as Float32Array).subarray(i * 10, i * 10 + 10));
      if (row.indexOf(Math.max(...row)) === holdout.labels[i]) correct++;
    }
    expect(correct).toBeGreaterThanOrEqual(6);
  });

  it('runs mnist-cnn from typed fp32_contents', async () => {
    const image = mnistHoldout().image(3);
    const res = await c.call(
      'ModelInfer',
      inferRequest('mnist', tensor('float32', image, [1, 1, 28, 28]), false),
    );
    const direct = await mnistDirect.infer({ image: tensor('float32', image, [1, 1, 28, 28]) });
    expect(tensorsEqual(rawOutput(res), direct.logits!)).toBe(true);
  });

  it.each(TYPES)('round-trips %s exactly through raw contents', async (type) => {
    const t = SAMPLES[type];
    const res = await c.call('ModelInfer', inferRequest(`id_${type}`, t, true));
    expect((res.outputs as Msg[])[0]).toMatchObject({ name: 'y', datatype: V2_DATATYPE[type] });
    expect(tensorsEqual(rawOutput(res), t)).toBe(true);
  });

  it.each(TYPES.filter((t) => t !== 'float16'))(
    'round-trips %s exactly through typed contents (raw and typed answers)',
    async (type) => {
      const t = SAMPLES[type];
      const res = await c.call('ModelInfer', inferRequest(`id_${type}`, t, false));
      expect(tensorsEqual(rawOutput(res), t)).toBe(true);
      const back = await typed.call('ModelInfer', inferRequest(`id_${type}`, t, false));
      expect(back.raw_output_contents).toEqual([]);
      const contents = (back.outputs as Msg[])[0]!.contents as Msg;
      const expected = typedContents(t);
      const field = Object.keys(expected)[0]!;
      if (type === 'float32') {
        expect(Float32Array.from(contents[field] as number[])).toEqual(t.data);
      } else if (type === 'string') {
        expect((contents[field] as Buffer[]).map((b) => [...b])).toEqual(
          (t.data as Uint8Array[]).map((b) => [...b]),
        );
      } else {
        expect(contents[field]).toEqual(expected[field]);
      }
    },
  );

  it('answers FP16 in raw contents even when typed contents are asked for, and refuses typed FP16 input', async () => {
    const t = SAMPLES.float16;
    const res = await typed.call('ModelInfer', inferRequest('id_float16', t, true));
    expect(tensorsEqual(rawOutput(res), t)).toBe(true);
    const err = await rejection(
      c.call('ModelInfer', {
        model_name: 'id_float16',
        inputs: [{ name: 'x', datatype: 'FP16', shape: [2, 2], contents: { fp32_contents: [1, 2, 3, 4] } }],
      }),
    );
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/raw_input_contents/);
  });

  it('returns only the outputs asked for, and top-k classes with classification', async () => {
    const image = mnistHoldout().image(0);
    const res = await c.call('ModelInfer', {
      ...inferRequest('mnist', tensor('float32', image, [1, 1, 28, 28]), true),
      outputs: [{ name: 'logits', parameters: { classification: { int64_param: '3' } } }],
    });
    const out = rawOutput(res);
    expect(out.type).toBe('string');
    expect(out.dims).toEqual([1, 3]);
    const top = new TextDecoder().decode((out.data as Uint8Array[])[0]);
    expect(top).toMatch(new RegExp(`^[-\\d.e]+:${mnistHoldout().labels[0]}$`));
  });

  it('passes non-reserved parameters to the model and keeps the id', async () => {
    let seen: unknown;
    registry.add(
      fromFunction({
        name: 'params',
        inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
        infer: ({ x }, o) => {
          seen = { ...o.parameters, priority: o.priority, sequence: o.sequence };
          return { y: x! };
        },
      }),
    );
    await c.call('ModelInfer', {
      ...inferRequest('params', SAMPLES.float32, true),
      parameters: {
        temperature: { double_param: 0.5 },
        mode: { string_param: 'fast' },
        big: { int64_param: '7' },
        flag: { bool_param: true },
        priority: { int64_param: '2' },
        sequence_id: { int64_param: '42' },
        sequence_start: { bool_param: true },
      },
    });
    expect(seen).toEqual({
      temperature: 0.5,
      mode: 'fast',
      big: 7,
      flag: true,
      priority: 2,
      sequence: { id: 42, start: true },
    });
  });
});

describe('errors', () => {
  const x = SAMPLES.float32;

  it('maps an unknown model to NOT_FOUND, whatever the inputs', async () => {
    const err = await rejection(c.call('ModelInfer', { model_name: 'nope', inputs: [{ name: 'x' }] }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.metadata.get('mlserve-error-code')).toEqual(['NOT_FOUND']);
    expect((await rejection(c.call('ModelInfer', { model_name: '' }))).code).toBe(
      grpc.status.INVALID_ARGUMENT,
    );
  });

  it('maps bad shapes, datatypes and raw sizes to INVALID_ARGUMENT', async () => {
    const cases: Msg[] = [
      // shape [3,2] needs 24 bytes, 16 sent
      {
        model_name: 'id_float32',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 2] }],
        raw_input_contents: [tensorToBinary(x)],
      },
      // the model takes [-1,2]
      {
        model_name: 'id_float32',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [4] }],
        raw_input_contents: [tensorToBinary(x)],
      },
      // typed count differs from the shape
      {
        model_name: 'id_float32',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1e6, 1e6], contents: { fp32_contents: [1] } }],
      },
      // wrong datatype for the model, and an unknown one
      inferRequest('id_float32', SAMPLES.float64, true),
      {
        model_name: 'id_float32',
        inputs: [{ name: 'x', datatype: 'BF16', shape: [1, 2] }],
        raw_input_contents: [Buffer.alloc(4)],
      },
      // more raw entries than inputs
      {
        model_name: 'id_float32',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 2] }],
        raw_input_contents: [tensorToBinary(x), Buffer.alloc(1)],
      },
      // typed data in the wrong field
      {
        model_name: 'id_int64',
        inputs: [{ name: 'x', datatype: 'INT64', shape: [1, 2], contents: { int_contents: [1, 2] } }],
      },
      // out of range for INT8
      {
        model_name: 'id_int8',
        inputs: [{ name: 'x', datatype: 'INT8', shape: [1, 2], contents: { int_contents: [1, 300] } }],
      },
      // BYTES length prefix past the end
      {
        model_name: 'id_string',
        inputs: [{ name: 'x', datatype: 'BYTES', shape: [1, 1] }],
        raw_input_contents: [Buffer.from([9, 0, 0, 0, 1])],
      },
      // a negative dim
      {
        model_name: 'id_float32',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 2] }],
        raw_input_contents: [Buffer.alloc(0)],
      },
    ];
    for (const req of cases) {
      const err = await rejection(c.call('ModelInfer', req));
      expect(err.code, JSON.stringify(req).slice(0, 120)).toBe(grpc.status.INVALID_ARGUMENT);
    }
  });

  it('gives the call deadline to the model and answers DEADLINE_EXCEEDED', async () => {
    aborted.length = 0;
    const before = Date.now();
    const err = await rejection(c.call('ModelInfer', inferRequest('slow', x, true), { deadlineMs: 100 }));
    expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    const seen = aborted[0]!;
    expect(seen.deadline).toBeGreaterThanOrEqual(before + 50);
    expect(seen.deadline).toBeLessThanOrEqual(Date.now() + 100);
  });

  it('answers DEADLINE_EXCEEDED from the server for the timeout parameter (microseconds)', async () => {
    const err = await rejection(
      c.call(
        'ModelInfer',
        inferRequest('slow', x, true, { parameters: { timeout: { int64_param: '50000' } } }),
      ),
    );
    expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(err.metadata.get('mlserve-error-code')).toEqual(['DEADLINE_EXCEEDED']);
  });

  it('aborts the request the model is running when the client cancels', async () => {
    aborted.length = 0;
    const started = new Promise<void>((resolve) => {
      slowStarted = resolve;
    });
    let call: grpc.ClientUnaryCall | undefined;
    const pending = rejection(
      c.call('ModelInfer', inferRequest('slow', x, true), {
        onCall: (k) => {
          call = k;
        },
      }),
    );
    await started;
    call!.cancel();
    expect((await pending).code).toBe(grpc.status.CANCELLED);
    const signal = aborted[0]!.signal!;
    await expect.poll(() => signal.aborted, { timeout: 2000 }).toBe(true);
  });

  it('answers RESOURCE_EXHAUSTED past maxReceiveMessageLength, and for overload with a retry hint', async () => {
    const big = tensor('float32', new Float32Array(4096), [2048, 2]);
    const err = await rejection(plain.call('ModelInfer', inferRequest('id_float32', big, true)));
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    // The same server still answers small requests.
    expect(rawOutput(await plain.call('ModelInfer', inferRequest('id_float32', x, true))).dims).toEqual([
      2, 2,
    ]);
    const busy = await rejection(c.call('ModelInfer', inferRequest('busy', x, true)));
    expect(busy.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(busy.metadata.get('retry-after-ms')).toEqual(['250']);
  });
});

describe('ModelStreamInfer', () => {
  it('answers 100 requests in order with their ids, an error in the middle without ending the stream', async () => {
    const stream = c.stream();
    const got: Msg[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (m: Msg) => got.push(m));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    for (let i = 0; i < 100; i++) {
      const t = tensor('int64', [BigInt(i), -(2n ** 63n) + BigInt(i)], [1, 2]);
      if (i === 50) stream.write({ model_name: 'nope', id: `r${i}`, inputs: [] });
      else stream.write(inferRequest('id_int64', t, i % 2 === 0, { id: `r${i}` }));
    }
    stream.end();
    await done;
    expect(got.map((m) => (m.infer_response as Msg).id)).toEqual(
      Array.from({ length: 100 }, (_, i) => `r${i}`),
    );
    for (let i = 0; i < 100; i++) {
      const m = got[i]!;
      if (i === 50) {
        expect(m.error_message).toMatch(/unknown model "nope"/);
        expect((m.infer_response as Msg).parameters).toMatchObject({
          'mlserve-error-code': { string_param: 'NOT_FOUND' },
        });
        continue;
      }
      expect(m.error_message).toBe('');
      const out = rawOutput(m.infer_response as Msg);
      expect([...(out.data as BigInt64Array)]).toEqual([BigInt(i), -(2n ** 63n) + BigInt(i)]);
    }
  });

  it('runs at most maxStreamInFlight requests of a stream at once, and still answers all in order', async () => {
    const own = new ModelRegistry();
    let running = 0;
    let peak = 0;
    own.add(
      fromFunction({
        name: 'gate',
        inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
        infer: async ({ x }) => {
          running++;
          peak = Math.max(peak, running);
          await new Promise((r) => setTimeout(r, 20));
          running--;
          return { y: x! };
        },
      }),
    );
    const s = await serveGrpc({ registry: own, maxStreamInFlight: 3 });
    const client = connect(s.port);
    try {
      const stream = client.stream();
      const ids: string[] = [];
      const done = new Promise<void>((resolve, reject) => {
        stream.on('data', (m: Msg) => ids.push((m.infer_response as Msg).id as string));
        stream.on('end', resolve);
        stream.on('error', reject);
      });
      for (let i = 0; i < 12; i++) stream.write(inferRequest('gate', SAMPLES.float32, true, { id: `g${i}` }));
      stream.end();
      await done;
      expect(ids).toEqual(Array.from({ length: 12 }, (_, i) => `g${i}`));
      expect(peak).toBeGreaterThan(1);
      expect(peak).toBeLessThanOrEqual(3);
    } finally {
      client.close();
      await s.close();
      await own.close();
    }
  });

  it('cancelling the stream aborts the requests it is running', async () => {
    aborted.length = 0;
    const started = new Promise<void>((resolve) => {
      slowStarted = resolve;
    });
    const stream = c.stream();
    const ended = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    stream.on('data', () => {});
    stream.write(inferRequest('slow', SAMPLES.float32, true, { id: 's1' }));
    await started;
    stream.cancel();
    expect((await ended).code).toBe(grpc.status.CANCELLED);
    await expect.poll(() => aborted[0]?.signal?.aborted, { timeout: 2000 }).toBe(true);
  });
});

describe('model repository extension', () => {
  const auth = () => {
    const md = new grpc.Metadata();
    md.set('authorization', 'Bearer s3cret');
    return md;
  };

  it('is UNIMPLEMENTED when management is off', async () => {
    for (const m of ['RepositoryIndex', 'RepositoryModelLoad', 'RepositoryModelUnload']) {
      expect((await rejection(plain.call(m, { model_name: 'mnist' }))).code).toBe(grpc.status.UNIMPLEMENTED);
    }
  });

  it('needs the bearer token when one is set', async () => {
    expect((await rejection(c.call('RepositoryIndex', {}))).code).toBe(grpc.status.UNAUTHENTICATED);
    const md = new grpc.Metadata();
    md.set('authorization', 'Bearer wrong');
    expect((await rejection(c.call('RepositoryIndex', {}, { metadata: md }))).code).toBe(
      grpc.status.UNAUTHENTICATED,
    );
    // Same length, a prefix, a longer one: all refused (compared in constant time, as over HTTP).
    for (const wrong of ['Bearer s3crex', 'Bearer s3cre', 'Bearer s3crets']) {
      md.set('authorization', wrong);
      const e = await rejection(c.call('RepositoryIndex', {}, { metadata: md }));
      expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(e.metadata.get('mlserve-error-code')).toEqual(['UNAUTHENTICATED']);
    }
  });

  it('indexes, loads (with parameters) and unloads', async () => {
    const index = await c.call<{ models: Msg[] }>('RepositoryIndex', {}, { metadata: auth() });
    expect(index.models).toContainEqual({ name: 'mnist', version: '1', state: 'READY', reason: '' });
    await c.call(
      'RepositoryModelLoad',
      {
        model_name: 'extra',
        parameters: {
          config: { string_param: '{}' },
          'file:1/model.onnx': { bytes_param: Buffer.from([1, 2]) },
        },
      },
      { metadata: auth() },
    );
    expect(loads.at(-1)!.name).toBe('extra');
    expect(loads.at(-1)!.parameters.config).toBe('{}');
    expect([...(loads.at(-1)!.parameters['file:1/model.onnx'] as Uint8Array)]).toEqual([1, 2]);
    expect(await c.call('ModelReady', { name: 'extra' })).toEqual({ ready: true });
    await c.call('RepositoryModelUnload', { model_name: 'extra' }, { metadata: auth() });
    expect((await rejection(c.call('ModelReady', { name: 'extra' }))).code).toBe(grpc.status.NOT_FOUND);
    expect(
      (await rejection(c.call('RepositoryModelUnload', { model_name: 'gone' }, { metadata: auth() }))).code,
    ).toBe(grpc.status.NOT_FOUND);
  });

  it("unloads through the repository's unload hook when it has one (with the parameters)", async () => {
    const own = new ModelRegistry();
    own.add(identity('float32', 'kept'));
    const unloads: { name: string; parameters: Record<string, unknown> }[] = [];
    const s = await serveGrpc({
      registry: own,
      management: { unload: async (name, parameters) => void unloads.push({ name, parameters }) },
    });
    const client = connect(s.port);
    try {
      await client.call('RepositoryModelUnload', {
        model_name: 'kept',
        parameters: { unload_dependents: { bool_param: true } },
      });
      expect(unloads).toEqual([{ name: 'kept', parameters: { unload_dependents: true } }]);
      expect(await client.call('ModelReady', { name: 'kept' })).toEqual({ ready: true });
    } finally {
      client.close();
      await s.close();
      await own.close();
    }
  });
});

describe('shutdown', () => {
  it('close() lets a call in flight finish, and ServerReady turns false once the registry closes', async () => {
    const own = new ModelRegistry();
    own.add(slowModel());
    const s = await serveGrpc({ registry: own, shutdownTimeoutMs: 5000 });
    const client = connect(s.port);
    try {
      const started = new Promise<void>((resolve) => {
        slowStarted = resolve;
      });
      const pending = client.call('ModelInfer', inferRequest('slow', SAMPLES.float32, true));
      await started;
      const closing = own.close();
      expect(await client.call('ServerReady', {})).toEqual({ ready: false });
      await s.close();
      expect(rawOutput(await pending).dims).toEqual([2, 2]);
      await closing;
    } finally {
      client.close();
      await s.close();
    }
  });
});

describe('options', () => {
  it('refuses bad options with exact messages, and a taken port with UNAVAILABLE', async () => {
    const own = new ModelRegistry();
    expect(() => createGrpcServer({ registry: own, maxReceiveMessageLength: 0 })).toThrow(
      'options.maxReceiveMessageLength must be a positive integer',
    );
    expect(() => createGrpcServer({ registry: own, maxStreamInFlight: 1.5 })).toThrow(
      'options.maxStreamInFlight must be a positive integer',
    );
    expect(() => createGrpcServer({ registry: own, outputContents: 'json' as 'raw' })).toThrow(
      /outputContents/,
    );
    await expect(serveGrpc({ registry: own, port: 70000 })).rejects.toThrow(/options.port/);
    await expect(serveGrpc({ registry: own, port: server.port })).rejects.toMatchObject({
      name: 'ServeError',
      code: 'UNAVAILABLE',
    });
  });
});
