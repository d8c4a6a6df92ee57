import type { AddressInfo } from 'node:net';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import { createClient } from '@mlserve/client';
import { createGrpcClient } from '@mlserve/client/grpc';
import { ModelRegistry, type Tensors, tensor } from '@mlserve/core';
import { loadInferenceProto, serveGrpc } from '@mlserve/grpc';
import { mlservePlugin } from '@mlserve/http';
import { modelPath } from '@mlserve/test-utils';
import Fastify from 'fastify';
import { closedLoop, interleaved, type LoadResult, ratioTable, scenario } from '../harness.js';

/**
 * KServe V2 over gRPC (raw contents) against REST binary and REST JSON, the same registry and
 * models behind both servers in this process, driven by @mlserve/client (its gRPC client on grpc-js,
 * its HTTP client on undici, binary tensors on or off), which decodes each answer into tensors.
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
    const httpUrl = `http://127.0.0.1:${httpPort}`;
    const restJson = createClient({ url: httpUrl, binary: false, connections: 64 });
    const restBinary = createClient({ url: httpUrl, binary: true, connections: 64 });
    const client = createGrpcClient({ url: `127.0.0.1:${grpcServer.port}` });
    const sections: string[] = [
      `Server and clients in one process (Fastify + @mlserve/http for REST, @grpc/grpc-js + @mlserve/grpc for gRPC, one registry; onnxruntime with 1 intra-op thread). Load: closed loop from in-process @mlserve/client instances (its gRPC client on grpc-js, its HTTP client on undici's pool with binary tensors on or off: the same client library for all three, since wrk cannot speak gRPC), ${durationMs / 1000} s per configuration, rounds interleaved (A, B, C, A, B, C, ...) ${rounds} times, the median round kept. Every client decodes the answer into core tensors. The machine is shared (2 cores, several engineers) and noisy: read ratios within a table, not absolute figures across runs.`,
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
        const inputs: Tensors = { [m.input]: tensor('float32', data, m.dims) };
        const first = (out: Tensors) => out[m.output]!.data as Float32Array;
        const configs: { name: string; bytes: number; fn: () => Promise<unknown> }[] = [
          {
            name: 'REST JSON',
            bytes: jsonBody.byteLength,
            fn: async () => first(await restJson.infer(m.name, inputs, { outputs: [m.output] })),
          },
          {
            name: 'REST binary',
            bytes: binaryBody.byteLength,
            fn: async () => first(await restBinary.infer(m.name, inputs, { outputs: [m.output] })),
          },
          {
            name: 'gRPC raw contents',
            bytes: GRPCInferenceService.service.ModelInfer!.requestSerialize(grpcRequest).byteLength,
            fn: async () => first(await client.infer(m.name, inputs, { outputs: [m.output] })),
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
      await Promise.all([client.close(), restJson.close(), restBinary.close()]);
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
