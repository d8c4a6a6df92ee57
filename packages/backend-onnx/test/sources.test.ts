import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import { tensor, tensorsEqual } from '@mlserve/core';
import { modelPath } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture, rejectsWith } from './helpers.js';

describe('model sources over HTTP (Node entry)', () => {
  let server: Server;
  let base: string;
  const bytes = readFileSync(modelPath('mlp.onnx'));

  beforeAll(async () => {
    server = createServer((req, res) => {
      if (req.url?.split('?')[0] === '/models/mlp.onnx') {
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        res.end(bytes);
      } else if (req.url === '/broken') {
        res.writeHead(500);
        res.end('boom');
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('fetches an http URL, naming the model after its file', async () => {
    const model = await loadOnnxModel(new URL(`${base}/models/mlp.onnx?v=2`), { intraOpNumThreads: 1 });
    expect(model.name).toBe('mlp');
    const local = await loadOnnxModel(modelPath('mlp.onnx'), { intraOpNumThreads: 1 });
    const features = tensor(
      'float32',
      new Float32Array(16).map((_, i) => i / 16),
      [1, 16],
    );
    const a = (await model.infer({ features })).scores!;
    const b = (await local.infer({ features })).scores!;
    expect(tensorsEqual(a, b)).toBe(true);
    await model.dispose();
    await local.dispose();
  });

  it('a missing URL is NOT_FOUND, a failing one UNAVAILABLE', async () => {
    await rejectsWith(loadOnnxModel(`${base}/models/nope.onnx`), 'NOT_FOUND', /HTTP 404/);
    await rejectsWith(loadOnnxModel(`${base}/broken`, { name: 'broken' }), 'UNAVAILABLE', /HTTP 500/);
  });

  it('a directory is not a model file', async () => {
    await rejectsWith(loadOnnxModel(fixture(''), { name: 'dir' }), 'INVALID_ARGUMENT', /is not a file/);
  });
});
