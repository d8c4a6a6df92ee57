/**
 * A small Express 5 app with routes of its own (`/`, `/hello`) that mounts mlserve: the MNIST CNN in
 * two worker threads, behind dynamic batching, a response cache, request validation and Prometheus
 * metrics, over KServe V2 and TF Serving REST.
 *
 *   npx turbo run build --filter=@mlserve/examples... && node packages/examples/dist/express-app.js
 */
import type { Server } from 'node:http';
import { batching } from '@mlserve/batching';
import { responseCache } from '@mlserve/cache';
import { ModelRegistry, pipeline, validation } from '@mlserve/core';
import { mlserveRouter } from '@mlserve/http';
import { metrics } from '@mlserve/metrics';
import { workerPool } from '@mlserve/workers';
import express, { type Express } from 'express';
import { Registry } from 'prom-client';
import { type ExampleApp, type ExampleAppOptions, HOST, listen } from './app.js';
import { isMain, MODEL_FILE } from './paths.js';

/**
 * Builds the Express example: `/`, `/hello`, the V2 and TF Serving APIs for model `mnist`, and
 * `/metrics`. Resolves once both workers have loaded the model. `close()` drains the registry and
 * ends the workers; close your `http.Server` first.
 *
 * @example
 * ```ts
 * const { app, close } = await createExpressApp();
 * const server = app.listen(8000);
 * // curl localhost:8000/v2/models/mnist
 * server.close();
 * await close();
 * ```
 */
export async function createExpressApp(options: ExampleAppOptions = {}): Promise<ExampleApp<Express>> {
  const { modelFile = MODEL_FILE, threads = 2 } = options;
  const prom = new Registry();
  const pool = await workerPool({
    backend: 'onnx', // each worker loads the model with @mlserve/backend-onnx
    source: modelFile,
    options: { name: 'mnist', version: '1', spinning: false },
    threads, // two requests (or batches) compute at once, off the event loop
    intraOpThreads: 1, // threads x intra-op threads stays within the cores
  });
  const registry = new ModelRegistry();
  registry.add(
    pipeline(
      pool,
      metrics({ registry: prom }), // outermost: counts every request, cache hits included
      validation(), // a malformed request is a 400 before it costs a cache lookup or a queue slot
      responseCache({ max: 10_000 }), // the same digit twice is answered from memory
      batching({ maxBatchSize: 32, maxDelayMs: 2 }), // concurrent requests share one model run
    ),
  );

  const app = express();
  // Before any body parser: the router reads the V2 bodies (JSON or binary) itself.
  app.use(mlserveRouter({ registry, metrics: prom, validate: false, bodyLimit: 1024 * 1024 }));
  app.use(express.json());
  app.get('/', (_req, res) => {
    res
      .type('text/plain')
      .send('mlserve on Express: GET /hello, /v2/models/mnist, /metrics; POST /v2/models/mnist/infer\n');
  });
  app.get('/hello', (_req, res) => {
    res.json({ hello: 'from Express', models: registry.names() });
  });
  app.post('/hello', (req, res) => {
    res.json({ hello: String(req.body?.name ?? 'you') }); // parsed by express.json(), not by mlserve
  });
  return { app, registry, close: () => registry.close() };
}

/** `node dist/express-app.js [port]`: listens and prints what to curl. */
export async function main(port = Number(process.argv[2] ?? process.env.PORT ?? 8001)): Promise<Server> {
  const { app, close } = await createExpressApp();
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(port, HOST, (err?: Error) => (err ? reject(err) : resolve(s)));
  });
  listen(
    'Express',
    port,
    async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await close();
    },
    false,
  );
  return server;
}

if (isMain(import.meta.url)) await main();
