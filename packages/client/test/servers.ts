/**
 * What the client's tests talk to: the real mlserve HTTP plugin (Fastify) and gRPC server over one
 * registry on loopback, with real onnxruntime (mnist-cnn) and small function models for the
 * paths a CNN cannot exercise (BYTES, overload, slow requests). Each HTTP request's headers and
 * each connection are recorded, so tests can see what went over the wire.
 */
import type { AddressInfo } from 'node:net';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import {
  fromFunction,
  type InferOptions,
  type Model,
  ModelRegistry,
  resourceExhausted,
  ServeError,
  type Tensor,
  unavailable,
} from '@mlserve/core';
import { type GrpcServing, serveGrpc } from '@mlserve/grpc';
import { mlservePlugin } from '@mlserve/http';
import { modelPath } from '@mlserve/test-utils';
import Fastify from 'fastify';

export interface SeenRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface Servers {
  url: string;
  grpcAddress: string;
  mnist: Model;
  registry: ModelRegistry;
  /** HTTP requests as they arrived, newest last. */
  seen: SeenRequest[];
  /** Response headers the server sent, newest last. */
  sent: Record<string, unknown>[];
  /** TCP connections the HTTP server accepted. */
  connections: () => number;
  /** What the `slow` model saw of each call's options. */
  slowCalls: { deadline: number | undefined; aborted: Promise<void> }[];
  /** Calls the `flaky` model has answered so far; `flakyFailures` it refuses before succeeding. */
  flaky: {
    calls: number;
    failures: number;
    retryAfterMs: number;
    code: 'RESOURCE_EXHAUSTED' | 'UNAVAILABLE';
  };
  close(): Promise<void>;
}

/** Identity over one tensor named x to y, for any type (BYTES included). */
function identity(name: string, type: Tensor['type']): Model {
  return fromFunction({
    name,
    inputs: [{ name: 'x', type, dims: [-1, -1] }],
    outputs: [{ name: 'y', type, dims: [-1, -1] }],
    infer: ({ x }) => ({ y: x! }),
  });
}

/** Options of {@link startServers}. */
export interface ServerOptions {
  /** Static files the HTTP server also serves (the Chromium test's page), by path. */
  page?: Record<string, { type: string; body: string }>;
}

export async function startServers(options: ServerOptions = {}): Promise<Servers> {
  const registry = new ModelRegistry();
  const mnist = await loadOnnxModel(modelPath('mnist-cnn.onnx'), {
    name: 'mnist',
    version: '1',
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
  registry.add(mnist);
  registry.add(identity('id_bytes', 'string'));
  registry.add(identity('id_f32', 'float32'));
  registry.add(identity('id_i64', 'int64'));
  registry.add(identity('id_f16', 'float16'));
  registry.add(identity('id_bool', 'bool'));
  const slowCalls: Servers['slowCalls'] = [];
  registry.add(
    fromFunction({
      name: 'slow',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, 1] }],
      // Never answers by itself: it ends when the request is cancelled or its deadline passes.
      infer: (_inputs, options?: InferOptions) =>
        new Promise((_resolve, reject) => {
          let timer: ReturnType<typeof setTimeout> | undefined;
          const aborted = new Promise<void>((done) => {
            const fail = () => {
              clearTimeout(timer);
              done();
              reject(options?.signal?.reason ?? new Error('aborted'));
            };
            if (options?.signal?.aborted) fail();
            else options?.signal?.addEventListener('abort', fail, { once: true });
          });
          const deadline = options?.deadline;
          timer = setTimeout(
            () => reject(new ServeError('DEADLINE_EXCEEDED', 'slow: deadline')),
            Math.max(0, (deadline ?? Date.now() + 20_000) - Date.now()),
          );
          slowCalls.push({ deadline, aborted });
        }),
    }),
  );
  const flaky: Servers['flaky'] = { calls: 0, failures: 0, retryAfterMs: 20, code: 'RESOURCE_EXHAUSTED' };
  registry.add(
    fromFunction({
      name: 'flaky',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, 1] }],
      infer: ({ x }) => {
        flaky.calls++;
        if (flaky.calls <= flaky.failures) {
          const opts = { retryAfterMs: flaky.retryAfterMs };
          throw flaky.code === 'UNAVAILABLE'
            ? unavailable('warming up', opts)
            : resourceExhausted('queue full', opts);
        }
        return { y: x! };
      },
    }),
  );

  const seen: SeenRequest[] = [];
  const sent: Record<string, unknown>[] = [];
  const app = Fastify({ logger: false, forceCloseConnections: true });
  let connections = 0;
  app.server.on('connection', () => connections++);
  app.addHook('onRequest', async (req) => {
    seen.push({ method: req.method, url: req.url, headers: { ...req.headers } });
  });
  app.addHook('onSend', async (_req, reply, payload) => {
    sent.push({ ...reply.getHeaders() });
    return payload;
  });
  await app.register(mlservePlugin, { registry });
  for (const [path, file] of Object.entries(options.page ?? {})) {
    app.get(path, async (_req, reply) => reply.type(file.type).send(file.body));
  }
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  const grpc: GrpcServing = await serveGrpc({ registry, shutdownTimeoutMs: 1000 });
  return {
    url: `http://127.0.0.1:${port}`,
    grpcAddress: `127.0.0.1:${grpc.port}`,
    mnist,
    registry,
    seen,
    sent,
    connections: () => connections,
    slowCalls,
    flaky,
    async close() {
      await Promise.all([app.close(), grpc.close()]);
      await registry.close();
    },
  };
}
