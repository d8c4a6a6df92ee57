/**
 * A small Fastify 5 app with routes of its own (`/` is the drawing page, `/hello`) that mounts
 * mlserve: the MNIST CNN in two worker threads, behind dynamic batching, a response cache, request
 * validation and Prometheus metrics, over KServe V2 and TF Serving REST.
 *
 *   npx turbo run build --filter=@mlserve/examples... && node packages/examples/dist/fastify-app.js
 */
import { basename, dirname, join } from 'node:path';
import fastifyStatic from '@fastify/static';
import { batching } from '@mlserve/batching';
import { responseCache } from '@mlserve/cache';
import { ModelRegistry, pipeline, validation } from '@mlserve/core';
import { mlservePlugin } from '@mlserve/http';
import { metrics } from '@mlserve/metrics';
import { workerPool } from '@mlserve/workers';
import Fastify, { type FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { type ExampleApp, type ExampleAppOptions, HOST, listen } from './app.js';
import { isMain, MODEL_FILE, PUBLIC_DIR } from './paths.js';

/**
 * Builds the Fastify example: the page at `/`, `/hello`, the V2 and TF Serving APIs for model
 * `mnist`, and `/metrics`. Resolves once both workers have loaded the model.
 *
 * @example
 * ```ts
 * const { app, close } = await createFastifyApp();
 * await app.listen({ port: 8000 });
 * // curl localhost:8000/v2/models/mnist
 * await close();
 * ```
 */
export async function createFastifyApp(
  options: ExampleAppOptions = {},
): Promise<ExampleApp<FastifyInstance>> {
  const { modelFile = MODEL_FILE, threads = 2, publicDir = PUBLIC_DIR } = options;
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

  const app = Fastify({ logger: options.logger ?? false });
  // `validate: false`: the pipeline's validation() layer already checks every request.
  await app.register(mlservePlugin, { registry, metrics: prom, validate: false, bodyLimit: 1024 * 1024 });
  app.get('/hello', async () => ({ hello: 'from Fastify', models: registry.names() }));
  // Fastify's own JSON parser: the plugin's raw-body parser is encapsulated to its routes.
  app.post<{ Body: { name?: string } }>('/hello', async (req) => ({
    hello: String(req.body?.name ?? 'you'),
  }));

  // The page and the model file it runs in the browser: `no-cache` + ETag, so a reload revalidates
  // them (a 304 when unchanged). Its script, style sheet and onnxruntime-web's WebAssembly have their
  // content hash in their names: cached for a year, never revalidated; each is sent brotli or gzip
  // compressed as the browser accepts, from the copies `buildPage()` wrote beside it.
  await app.register(fastifyStatic, {
    root: join(publicDir, 'assets'),
    prefix: '/assets/',
    preCompressed: true,
    maxAge: '365d',
    immutable: true,
    index: false,
    wildcard: true,
  });
  const revalidate = { cacheControl: false, preCompressed: true } as const;
  app.get('/', (_req, reply) =>
    reply.header('cache-control', 'no-cache').sendFile('index.html', publicDir, revalidate),
  );
  app.get('/models/mnist.onnx', (_req, reply) =>
    reply
      .header('cache-control', 'no-cache')
      .type('application/octet-stream')
      .sendFile(basename(modelFile), dirname(modelFile), { cacheControl: false }),
  );
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: `${req.method} ${req.url.split('?')[0]} not found`, code: 'NOT_FOUND' }),
  );

  app.addHook('onClose', () => registry.close());
  return { app, registry, close: () => app.close() };
}

/** `node dist/fastify-app.js [port]`: listens and prints what to open and curl. */
export async function main(port = Number(process.argv[2] ?? process.env.PORT ?? 8000)): Promise<void> {
  const { app, close } = await createFastifyApp({ logger: false });
  await app.listen({ port, host: HOST });
  listen('Fastify', port, close, true);
}

if (isMain(import.meta.url)) await main();
