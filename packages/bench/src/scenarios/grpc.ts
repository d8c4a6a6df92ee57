import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import { ModelRegistry } from '@mlserve/core';
import { loadInferenceProto, serveGrpc } from '@mlserve/grpc';
import { mlservePlugin } from '@mlserve/http';
import { modelPath } from '@mlserve/test-utils';
import Fastify from 'fastify';
import { closedLoop, interleaved, type LoadResult, ratioTable, scenario } from '../harness.js';

type Unary = (
  req: unknown,
  md: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: { raw_output_contents: Buffer[] }) => void,
) => void;

/** POSTs a body on a keep-alive agent; resolves with the response body (rejects on non-200). */
function post(
  agent: Agent,
  port: number,
  path: string,
  body: Buffer,
  headers: Record<string, string>,
): Promise<{ body: Buffer; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        agent,
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        headers: { ...headers, 'content-length': String(body.byteLength) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const out = Buffer.concat(chunks);
          if (res.statusCode !== 200)
            reject(new Error(`HTTP ${res.statusCode}: ${out.toString().slice(0, 200)}`));
          else resolve({ body: out, headers: res.headers });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * KServe V2 over gRPC (raw contents) against REST binary and REST JSON, the same registry and
 * models behind both servers in this process, driven by in-process Node clients (grpc-js for gRPC,
 * node:http keep-alive for REST) that each decode the answer into its output bytes.
 */
export default scenario({
  name: 'grpc',
  title: 'gRPC: KServe V2 raw contents vs REST binary vs REST JSON (in-process clients)',
  async run({ pick, log, chart }) {
    const durationMs = pick(3000, 700);
    const rounds = pick(3, 1);
    const registry = new ModelRegistry();
    const models = [
      {
        file: 'mnist-cnn.onnx' as const,
        name: 'mnist',
        input: 'image',
        output: 'logits',
        dims: [1, 1, 28, 28],
        concurrency: 8,
      },
      {
        file: 'mobilenetv2.onnx' as const,
        name: 'mobilenet',
        input: 'input',
        output: 'output',
        dims: [1, 3, 224, 224],
        concurrency: 4,
      },
    ];
    const measured = pick(models, models.slice(0, 1));
    for (const m of measured) {
      registry.add(
        await loadOnnxModel(modelPath(m.file), {
          name: m.name,
          version: '1',
          intraOpNumThreads: 1,
          interOpNumThreads: 1,
        }),
      );
    }
    const app = Fastify({ logger: false, forceCloseConnections: true });
    await app.register(mlservePlugin, { registry });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const httpPort = (app.server.address() as AddressInfo).port;
    const grpcServer = await serveGrpc({ registry });
    const { GRPCInferenceService } = loadInferenceProto();
    const client = new GRPCInferenceService(
      `127.0.0.1:${grpcServer.port}`,
      grpc.credentials.createInsecure(),
      {
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        'grpc.max_send_message_length': 64 * 1024 * 1024,
      },
    );
    const modelInfer = (client as unknown as { ModelInfer: Unary }).ModelInfer.bind(client);
    const agent = new Agent({ keepAlive: true, maxSockets: 64 });
    const sections: string[] = [
      `Server and clients in one process (Fastify + @mlserve/http for REST, @grpc/grpc-js + @mlserve/grpc for gRPC, one registry; onnxruntime with 1 intra-op thread). Load: closed loop from in-process Node clients (grpc-js client for gRPC, node:http keep-alive agent for REST: the same generator kind for all three, since wrk cannot speak gRPC), ${durationMs / 1000} s per configuration, rounds interleaved (A, B, C, A, B, C, ...) ${rounds} times, the median round kept. Every client decodes the answer to its output bytes. The machine is shared (2 cores, several engineers) and noisy: read ratios within a table, not absolute figures across runs.`,
      '',
    ];
    const bars: { label: string; value: number; highlight?: boolean }[] = [];
    try {
      for (const m of measured) {
        const count = m.dims.reduce((a, b) => a * b, 1);
        const data = new Float32Array(count);
        for (let i = 0; i < count; i++) data[i] = ((i * 7919) % 1000) / 1000;
        const raw = Buffer.from(data.buffer);
        const header = Buffer.from(
          JSON.stringify({
            inputs: [
              {
                name: m.input,
                shape: m.dims,
                datatype: 'FP32',
                parameters: { binary_data_size: raw.byteLength },
              },
            ],
            outputs: [{ name: m.output, parameters: { binary_data: true } }],
          }),
        );
        const binaryBody = Buffer.concat([header, raw]);
        const jsonBody = Buffer.from(
          JSON.stringify({
            inputs: [{ name: m.input, shape: m.dims, datatype: 'FP32', data: Array.from(data) }],
          }),
        );
        const grpcRequest = {
          model_name: m.name,
          inputs: [{ name: m.input, datatype: 'FP32', shape: m.dims }],
          raw_input_contents: [raw],
        };
        const path = `/v2/models/${m.name}/infer`;
        const configs: { name: string; bytes: number; fn: () => Promise<unknown> }[] = [
          {
            name: 'REST JSON',
            bytes: jsonBody.byteLength,
            fn: async () => {
              const res = await post(agent, httpPort, path, jsonBody, { 'content-type': 'application/json' });
              const parsed = JSON.parse(res.body.toString('utf8')) as { outputs: { data: number[] }[] };
              return Float32Array.from(parsed.outputs[0]!.data);
            },
          },
          {
            name: 'REST binary',
            bytes: binaryBody.byteLength,
            fn: async () => {
              const res = await post(agent, httpPort, path, binaryBody, {
                'content-type': 'application/octet-stream',
                'inference-header-content-length': String(header.byteLength),
              });
              const hl = Number(res.headers['inference-header-content-length']);
              JSON.parse(res.body.subarray(0, hl).toString('utf8'));
              return res.body.subarray(hl);
            },
          },
          {
            name: 'gRPC raw contents',
            bytes: GRPCInferenceService.service.ModelInfer!.requestSerialize(grpcRequest).byteLength,
            fn: () =>
              new Promise((resolve, reject) =>
                modelInfer(grpcRequest, new grpc.Metadata(), {}, (err, res) =>
                  err ? reject(err) : resolve(res.raw_output_contents[0]),
                ),
              ),
          },
        ];
        // Correctness first: the three paths give the same bytes.
        const answers = await Promise.all(configs.map((c) => c.fn()));
        const asBytes = (a: unknown) =>
          Buffer.from((a as Uint8Array).buffer, (a as Uint8Array).byteOffset, (a as Uint8Array).byteLength);
        if (
          !asBytes(answers[0]).equals(asBytes(answers[1])) ||
          !asBytes(answers[1]).equals(asBytes(answers[2]))
        ) {
          throw new Error(`${m.name}: the three protocols disagree`);
        }
        const results: LoadResult[] = await interleaved(
          rounds,
          configs.map((c) => ({
            name: c.name,
            run: () => {
              log(`${m.name}: ${c.name}`);
              return closedLoop(c.name, () => c.fn(), {
                concurrency: m.concurrency,
                durationMs,
                warmupMs: 300,
              });
            },
          })),
        );
        for (const [i, r] of results.entries()) r.extra = { 'request bytes': configs[i]!.bytes };
        for (const r of results) {
          bars.push({
            label: `${m.name}: ${r.name}`,
            value: r.throughput / results[0]!.throughput,
            highlight: r === results[0],
          });
        }
        sections.push(
          ratioTable(
            `${m.name} [${m.dims.join(',')}] float32, ${m.concurrency} callers`,
            results[0]!,
            results.slice(1),
          ),
        );
      }
    } finally {
      client.close();
      agent.destroy();
      await grpcServer.close();
      await app.close();
      await registry.close();
    }
    sections.push(
      chart(
        'grpc',
        'gRPC and REST throughput, x REST JSON',
        bars,
        'x the throughput of REST JSON (closed loop)',
        {
          markAt: 1,
        },
      ),
    );
    return sections.join('\n');
  },
});
