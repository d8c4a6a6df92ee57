/**
 * The server of the overload soak, in a process of its own so its RSS is its own and the load
 * generator does not share its event loop: mnist-cnn in a one-thread worker pool behind a bounded
 * batcher, on the adapter named
 * by argv[2] (`fastify` or `express`), on a free loopback port printed as `READY <port>`.
 *
 * Run from the repository root: `node --import tsx packages/reliability/suite/soak-server.ts fastify`.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { batching } from '@mlserve/batching';
import { ModelRegistry, pipeline } from '@mlserve/core';
import { mlservePlugin, mlserveRouter } from '@mlserve/http';
import { modelPath } from '@mlserve/test-utils';
import { workerPool } from '@mlserve/workers';
import express from 'express';
import Fastify from 'fastify';

const adapter = process.argv[2] === 'express' ? 'express' : 'fastify';
/** Items (rows) that may wait in the batcher: beyond this, 429 with Retry-After. */
export const MAX_QUEUE = Number(process.env.SOAK_MAX_QUEUE ?? 64);

// The model runs in a worker thread, as a production server would run it: onnxruntime-node's run()
// blocks the thread it runs on, and a refusal is only fast if the event loop is free to send it.
const model = await workerPool({
  backend: 'onnx',
  source: modelPath('mnist-cnn.onnx'),
  options: { name: 'mnist', version: '1' },
  threads: 1,
  intraOpThreads: 1,
});
const registry = new ModelRegistry();
registry.add(
  pipeline(model, batching({ maxBatchSize: 32, maxDelayMs: 0, maxQueue: MAX_QUEUE, rejectStatus: 429 })),
);

let port: number;
let close: () => Promise<void>;
if (adapter === 'fastify') {
  const app = Fastify({ logger: false });
  await app.register(mlservePlugin, { registry, bodyLimit: 4 * 1024 * 1024 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  port = (app.server.address() as AddressInfo).port;
  close = () => app.close();
} else {
  const app = express();
  app.use(mlserveRouter({ registry, bodyLimit: 4 * 1024 * 1024 }));
  const server = app.listen(0, '127.0.0.1');
  // Node's default keep-alive timeout is 5 s (Fastify's 72 s): a pooled client reusing a socket just
  // as the server closes it for idleness gets ECONNRESET. Under a long soak that race shows (about
  // 1 request in 1,500 in a 150 s run), so keep idle sockets longer than clients do, as behind any
  // load balancer; headersTimeout must exceed it.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  close = () => new Promise((r) => server.close(() => r()));
}
process.stdout.write(`READY ${port}\n`);
process.on('SIGTERM', () => {
  void close().then(() => registry.close().then(() => process.exit(0)));
});
