/**
 * Stateful sequences end to end: V2 sequence parameters as Triton names them, over real HTTP and
 * real gRPC, through batching and a worker pool; and Triton's statistics as perf_analyzer reads
 * them. Lives here because the CLI package already depends on every layer it stacks.
 */
import * as grpc from '@grpc/grpc-js';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import { batching } from '@mlserve/batching';
import { type Model, ModelRegistry, pipeline, sequences, type Tensors } from '@mlserve/core';
import { type GrpcServing, loadInferenceProto, serveGrpc } from '@mlserve/grpc';
import { mlservePlugin } from '@mlserve/http';
import { tensorToBinary } from '@mlserve/protocol';
import { modelPath, STATEFUL_LOADER } from '@mlserve/test-utils';
import { workerPool } from '@mlserve/workers';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

type Params = Record<string, string | number | boolean>;

let registry: ModelRegistry;
let app: FastifyInstance;
let url: string;
let grpcServer: GrpcServing;
let client: grpc.Client;
let reference: Model;

const MAX_SEQUENCES = 6;

beforeAll(async () => {
  registry = new ModelRegistry();
  // The GRU's state rides with each request, so batching may merge different sequences' rows.
  registry.add(
    pipeline(
      await workerPool({ backend: 'onnx', source: modelPath('gru-cell.onnx'), threads: 2 }),
      sequences({ state: [{ input: 'h', output: 'h_next' }], maxSequences: MAX_SEQUENCES }),
      batching({ maxBatchSize: 8, maxDelayMs: 50 }),
    ),
  );
  // The accumulator keeps its state inside its worker: the pool routes each sequence to one worker.
  registry.add(
    pipeline(
      await workerPool({
        backend: { module: STATEFUL_LOADER, export: 'loadAccumulator' },
        source: 'accumulator',
        threads: 2,
        options: { idleTimeoutMs: 300 },
      }),
      batching({ maxDelayMs: 1 }),
    ),
  );
  reference = await loadOnnxModel(modelPath('gru-cell.onnx'), { name: 'reference', intraOpNumThreads: 1 });
  app = Fastify();
  await app.register(mlservePlugin, { registry });
  url = await app.listen({ host: '127.0.0.1', port: 0 });
  grpcServer = await serveGrpc({ registry });
  const { GRPCInferenceService } = loadInferenceProto();
  client = new GRPCInferenceService(`127.0.0.1:${grpcServer.port}`, grpc.credentials.createInsecure());
}, 120_000);

afterAll(async () => {
  client?.close();
  await grpcServer?.close();
  await app?.close();
  await registry?.close();
  await reference?.dispose();
});

/** The GRU's input for step `n` of sequence `k`. */
const xOf = (k: number, n: number) => [k * 0.1, n * 0.2, -0.3, 0.05 * n * k];

/** What the GRU answers for these steps, with the state carried by hand. */
async function expected(steps: number[][]): Promise<number[][]> {
  let h: Tensors['h'] = { type: 'float32', dims: [1, 8], data: new Float32Array(8) };
  const out: number[][] = [];
  for (const x of steps) {
    const r = await reference.infer({ x: { type: 'float32', dims: [1, 4], data: Float32Array.from(x) }, h });
    out.push([...(r.y!.data as Float32Array)]);
    h = r.h_next!;
  }
  return out;
}

async function httpInfer(model: string, inputs: object[], parameters: Params) {
  const res = await fetch(`${url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs, parameters }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const gruInput = (x: number[]) => ({ name: 'x', datatype: 'FP32', shape: [1, 4], data: x });

function rpc<T = Record<string, unknown>>(method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    type Unary = (req: unknown, cb: (err: grpc.ServiceError | null, res: T) => void) => void;
    const fn = (client as unknown as Record<string, Unary>)[method]!.bind(client);
    fn(req, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function rpcError(method: string, req: unknown): Promise<grpc.ServiceError> {
  try {
    await rpc(method, req);
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

/** gRPC parameters as tritonclient sends them: sequence_id int64, start/end bool. */
function grpcSequence(id: number | string, start = false, end = false) {
  return {
    sequence_id: typeof id === 'number' ? { int64_param: String(id) } : { string_param: id },
    sequence_start: { bool_param: start },
    sequence_end: { bool_param: end },
  };
}

describe('stateful sequences over HTTP and gRPC', () => {
  it('HTTP: the server carries the GRU state per sequence; sequences batch together without mixing', async () => {
    const steps = 5;
    const ids = [11, 12, 13, 14];
    const got = await Promise.all(
      ids.map(async (id) => {
        const ys: number[][] = [];
        for (let n = 0; n < steps; n++) {
          const r = await httpInfer('gru-cell', [gruInput(xOf(id, n))], {
            sequence_id: id,
            sequence_start: n === 0,
            sequence_end: n === steps - 1,
          });
          expect(r.status).toBe(200);
          const outputs = r.body.outputs as { name: string; data: number[] }[];
          // The state output stays on the server.
          expect(outputs.map((o) => o.name)).toEqual(['y']);
          ys.push(outputs[0]!.data);
        }
        return ys;
      }),
    );
    for (const [i, id] of ids.entries()) {
      const want = await expected(Array.from({ length: steps }, (_, n) => xOf(id, n)));
      got[i]!.forEach((y, n) => {
        for (const [j, v] of y.entries()) expect(v).toBeCloseTo(want[n]![j]!, 5);
      });
    }
    // Requests of different sequences shared batches (Triton's statistics say so).
    const stats = (await (await fetch(`${url}/v2/models/gru-cell/stats`)).json()) as {
      model_stats: { batch_stats: { batch_size: number; compute_infer: { count: number } }[] }[];
    };
    const sizes = stats.model_stats[0]!.batch_stats;
    expect(sizes.reduce((n, b) => n + b.batch_size * b.compute_infer.count, 0)).toBeGreaterThanOrEqual(
      ids.length * steps,
    );
    expect(sizes.some((b) => b.batch_size > 1)).toBe(true);
  });

  it('gRPC: sequence_id / sequence_start / sequence_end as Triton sends them', async () => {
    const id = 77;
    const ys: number[][] = [];
    for (let n = 0; n < 3; n++) {
      const res = await rpc<{ outputs: { name: string }[]; raw_output_contents: Buffer[] }>('ModelInfer', {
        model_name: 'gru-cell',
        inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: xOf(id, n) } }],
        parameters: grpcSequence(id, n === 0, n === 2),
      });
      expect(res.outputs.map((o) => o.name)).toEqual(['y']);
      const raw = res.raw_output_contents[0]!;
      ys.push([...new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength))]);
    }
    const want = await expected([0, 1, 2].map((n) => xOf(id, n)));
    ys.forEach((y, n) => {
      for (const [j, v] of y.entries()) expect(v).toBeCloseTo(want[n]![j]!, 5);
    });
  });

  it('a sequence that is not open: HTTP 400 and gRPC FAILED_PRECONDITION with the code', async () => {
    const r = await httpInfer('gru-cell', [gruInput(xOf(1, 1))], { sequence_id: 9999 });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('FAILED_PRECONDITION');
    expect(String(r.body.error)).toMatch(/sequence 9999 .* is not open.*sequence_start/);
    const e = await rpcError('ModelInfer', {
      model_name: 'gru-cell',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: xOf(1, 1) } }],
      parameters: grpcSequence('never-started'),
    });
    expect(e.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(e.metadata.get('mlserve-error-code')).toEqual(['FAILED_PRECONDITION']);
  });

  it('a start beyond maxSequences: HTTP 429 and gRPC RESOURCE_EXHAUSTED; ends free the room', async () => {
    const open: number[] = [];
    for (let i = 0; i < MAX_SEQUENCES; i++) {
      const r = await httpInfer('gru-cell', [gruInput(xOf(i, 0))], {
        sequence_id: 500 + i,
        sequence_start: true,
      });
      expect(r.status).toBe(200);
      open.push(500 + i);
    }
    const r = await httpInfer('gru-cell', [gruInput(xOf(1, 0))], { sequence_id: 600, sequence_start: true });
    expect(r.status).toBe(429);
    expect(r.body.code).toBe('RESOURCE_EXHAUSTED');
    const e = await rpcError('ModelInfer', {
      model_name: 'gru-cell',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: xOf(1, 0) } }],
      parameters: grpcSequence(601, true),
    });
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    for (const id of open) {
      expect(
        (await httpInfer('gru-cell', [gruInput(xOf(1, 1))], { sequence_id: id, sequence_end: true })).status,
      ).toBe(200);
    }
    expect(
      (
        await httpInfer('gru-cell', [gruInput(xOf(1, 0))], {
          sequence_id: 600,
          sequence_start: true,
          sequence_end: true,
        })
      ).status,
    ).toBe(200);
  });

  it('state kept inside a worker: the pool keeps each sequence on its worker, over HTTP and gRPC', async () => {
    const x = (v: number) => [{ name: 'x', datatype: 'FP32', shape: [1], data: [v] }];
    const ids = ['alpha', 'beta', 'gamma', 'delta'];
    const runs = await Promise.all(
      ids.map(async (id, k) => {
        const totals: number[] = [];
        const workers = new Set<number>();
        for (let n = 1; n <= 4; n++) {
          const r = await httpInfer('accumulator', x(n * (k + 1)), {
            sequence_id: id,
            sequence_start: n === 1,
          });
          expect(r.status).toBe(200);
          const outs = r.body.outputs as { name: string; data: number[] }[];
          totals.push(outs.find((o) => o.name === 'total')!.data[0]!);
          workers.add(outs.find((o) => o.name === 'worker')!.data[0]!);
        }
        return { totals, workers };
      }),
    );
    runs.forEach((r, k) => {
      expect(r.totals).toEqual([1, 3, 6, 10].map((t) => t * (k + 1)));
      expect(r.workers.size).toBe(1);
    });
    expect(new Set(runs.map((r) => [...r.workers][0])).size).toBe(2);
    // The same sequences go on over gRPC, on the same workers.
    const res = await rpc<{ outputs: { name: string }[]; raw_output_contents: Buffer[] }>('ModelInfer', {
      model_name: 'accumulator',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [1], contents: { fp32_contents: [5] } }],
      parameters: grpcSequence('alpha', false, true),
    });
    const total = res.raw_output_contents[res.outputs.findIndex((o) => o.name === 'total')]!;
    expect(total.readFloatLE(0)).toBe(15);
  });

  it('an idle sequence times out and frees its state', async () => {
    const x = [{ name: 'x', datatype: 'FP32', shape: [1], data: [1] }];
    expect((await httpInfer('accumulator', x, { sequence_id: 'sleepy', sequence_start: true })).status).toBe(
      200,
    );
    // The model's idleTimeoutMs is 300 ms: wait until a request finds the sequence gone.
    let r = await httpInfer('accumulator', x, { sequence_id: 'sleepy' });
    const until = Date.now() + 20_000;
    while (r.status === 200 && Date.now() < until) {
      await new Promise((res) => setTimeout(res, 400));
      r = await httpInfer('accumulator', x, { sequence_id: 'sleepy' });
    }
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('FAILED_PRECONDITION');
  });
});

describe("Triton's statistics, as perf_analyzer reads them", () => {
  it('metadata, config, statistics before and after a run of binary requests, over gRPC and HTTP', async () => {
    const server = await rpc<{ extensions: string[] }>('ServerMetadata', {});
    expect(server.extensions).toEqual(
      expect.arrayContaining(['statistics', 'sequence', 'model_configuration']),
    );
    const meta = await rpc<{ inputs: { name: string }[] }>('ModelMetadata', {
      name: 'gru-cell',
      version: '',
    });
    expect(meta.inputs.map((i) => i.name)).toEqual(['x']);
    const config = await rpc<{ config: { max_batch_size: number } }>('ModelConfig', {
      name: 'gru-cell',
      version: '',
    });
    expect(config.config.max_batch_size).toBeGreaterThan(0);
    type S = {
      model_stats: {
        inference_count: string;
        execution_count: string;
        inference_stats: { success: { count: string } };
        batch_stats: { batch_size: string; compute_infer: { count: string } }[];
      }[];
    };
    const before = (await rpc<S>('ModelStatistics', { name: 'gru-cell', version: '' })).model_stats[0]!;
    const n = 12;
    const x = tensorToBinary({
      type: 'float32',
      dims: [1, 4],
      data: Float32Array.from([0.1, 0.2, 0.3, 0.4]),
    });
    await Promise.all(
      Array.from({ length: n }, () =>
        rpc('ModelInfer', {
          model_name: 'gru-cell',
          inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 4] }],
          raw_input_contents: [Buffer.from(x.buffer, x.byteOffset, x.byteLength)],
        }),
      ),
    );
    const after = (await rpc<S>('ModelStatistics', { name: 'gru-cell', version: '' })).model_stats[0]!;
    expect(Number(after.inference_count) - Number(before.inference_count)).toBe(n);
    expect(Number(after.inference_stats.success.count) - Number(before.inference_stats.success.count)).toBe(
      n,
    );
    const executed = (s: typeof after) =>
      s.batch_stats.reduce((t, b) => t + Number(b.batch_size) * Number(b.compute_infer.count), 0);
    expect(executed(after) - executed(before)).toBe(n);
    expect(Number(after.execution_count)).toBeGreaterThan(Number(before.execution_count));
    const http = (await (await fetch(`${url}/v2/models/gru-cell/versions/1/stats`)).json()) as {
      model_stats: { batch_stats: { batch_size: number; compute_infer: { count: number } }[] }[];
    };
    expect(http.model_stats[0]!.batch_stats.map((b) => [b.batch_size, b.compute_infer.count])).toEqual(
      after.batch_stats.map((b) => [Number(b.batch_size), Number(b.compute_infer.count)]),
    );
  });
});
