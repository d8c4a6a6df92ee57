/**
 * The servers the HTTP scenario compares, one per child process (so the load generator and the
 * parent never share their event loop). Usage: `node --import tsx http-server.ts <kind>`; the
 * process listens on a free loopback port, prints `{"port": N}` on stdout and serves until killed.
 *
 * Every server serves mnist-cnn (`mnist`) and mobilenetv2 (`mobilenet`) from the bundled copies.
 * - `mlserve-fastify`: Fastify + `mlservePlugin` (KServe V2 JSON and binary, TF Serving REST).
 * - `mlserve-express`: Express 5 + `mlserveRouter`.
 *   Both serve `pipeline(loadOnnxModel(1 intra-op thread), metrics(), batching({ maxDelayMs: 'auto' }))`.
 * - `hand-fastify-default`, `hand-fastify-threads`, `hand-express-default`, `hand-express-threads`:
 *   what a user writes by hand: parse the JSON body, `session.run`, answer JSON. `default` keeps
 *   onnxruntime's default session options (every core), `threads` sets 1 intra-op thread.
 * - `ceiling`: Fastify parsing the same JSON body and answering a constant (no model at all).
 * - `ceiling-binary`: Fastify reading the same V2 binary body (as a Buffer) and answering a constant.
 */

import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const kind = process.argv[2] ?? '';
const MODELS = [
  { name: 'mnist', file: 'mnist-cnn.onnx' as const, input: 'image', output: 'logits' },
  { name: 'mobilenet', file: 'mobilenetv2.onnx' as const, input: 'input', output: 'output' },
];

interface V2JsonBody {
  inputs?: { name?: string; shape?: number[]; data?: number[] }[];
}

async function handWritten(threads: boolean) {
  const ort = await import('onnxruntime-node');
  const { modelPath } = await import('@mlserve/test-utils');
  const options = threads ? { intraOpNumThreads: 1, interOpNumThreads: 1 } : {};
  const sessions = new Map<string, { session: import('onnxruntime-node').InferenceSession; input: string }>();
  for (const m of MODELS) {
    sessions.set(m.name, {
      session: await ort.InferenceSession.create(modelPath(m.file), options),
      input: m.input,
    });
  }
  /** The handler a user writes: JSON in, session.run, JSON out (400 on a malformed body). */
  return async (model: string, body: V2JsonBody): Promise<{ status: number; json: unknown }> => {
    const entry = sessions.get(model);
    const input = body?.inputs?.[0];
    if (!entry) return { status: 404, json: { error: `no model ${model}` } };
    if (!input || !Array.isArray(input.data) || !Array.isArray(input.shape)) {
      return { status: 400, json: { error: 'expected inputs[0].data and shape' } };
    }
    const tensor = new ort.Tensor('float32', Float32Array.from(input.data), input.shape);
    const out = await entry.session.run({ [entry.input]: tensor });
    return {
      status: 200,
      json: {
        model_name: model,
        outputs: Object.entries(out).map(([name, t]) => ({
          name,
          shape: t.dims,
          datatype: 'FP32',
          data: Array.from(t.data as Float32Array),
        })),
      },
    };
  };
}

async function mlserveRegistry() {
  const { ModelRegistry, pipeline } = await import('@mlserve/core');
  const { loadOnnxModel } = await import('@mlserve/backend-onnx');
  const { metrics } = await import('@mlserve/metrics');
  const { batching } = await import('@mlserve/batching');
  const { modelPath } = await import('@mlserve/test-utils');
  const { Registry } = await import('prom-client');
  const registry = new ModelRegistry();
  const prom = new Registry();
  for (const m of MODELS) {
    const model = await loadOnnxModel(modelPath(m.file), {
      name: m.name,
      version: '1',
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
    });
    registry.add(
      pipeline(model, metrics({ registry: prom }), batching({ maxBatchSize: 16, maxDelayMs: 'auto' })),
    );
  }
  return registry;
}

async function start(): Promise<Server> {
  const limit = 64 * 1024 * 1024;
  if (kind === 'mlserve-fastify' || kind.startsWith('ceiling') || kind.startsWith('hand-fastify')) {
    const { default: Fastify } = await import('fastify');
    const app = Fastify({ logger: false, bodyLimit: limit });
    if (kind === 'mlserve-fastify') {
      const { mlservePlugin } = await import('@mlserve/http');
      await app.register(mlservePlugin, { registry: await mlserveRegistry() });
    } else if (kind === 'ceiling') {
      app.post('/predict/:model', async () => ({ model_name: 'ceiling', outputs: [] }));
    } else if (kind === 'ceiling-binary') {
      // The V2 binary body read whole, as the server reads it before it splits header and tensor.
      app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) =>
        done(null, body),
      );
      app.post<{ Body: Buffer }>('/predict/:model', async (req) => ({
        model_name: 'ceiling',
        outputs: [],
        bytes: req.body.byteLength,
      }));
    } else {
      const handle = await handWritten(kind.endsWith('threads'));
      app.post<{ Params: { model: string }; Body: V2JsonBody }>('/predict/:model', async (req, reply) => {
        const { status, json } = await handle(req.params.model, req.body);
        return reply.code(status).send(json);
      });
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    return app.server;
  }
  if (kind === 'mlserve-express' || kind.startsWith('hand-express')) {
    const { default: express } = await import('express');
    const app = express();
    if (kind === 'mlserve-express') {
      const { mlserveRouter } = await import('@mlserve/http');
      app.use(mlserveRouter({ registry: await mlserveRegistry() }));
    } else {
      const handle = await handWritten(kind.endsWith('threads'));
      app.post('/predict/:model', express.json({ limit }), async (req, res) => {
        try {
          const { status, json } = await handle(String(req.params.model), req.body as V2JsonBody);
          res.status(status).json(json);
        } catch (err) {
          res.status(500).json({ error: String(err) });
        }
      });
    }
    // A body cut off when the load generator stops (wrk closes its connections mid-request) is
    // answered 400 quietly instead of Express's default handler printing a stack trace.
    app.use((err: unknown, _req: unknown, res: { status(n: number): { end(): void } }, _next: unknown) => {
      res.status(400).end();
      void err;
    });
    return await new Promise<Server>((resolve) => {
      const server = app.listen(0, '127.0.0.1', () => resolve(server));
    });
  }
  throw new Error(`unknown server kind ${kind}`);
}

const server = await start();
process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
process.on('SIGTERM', () => process.exit(0));
