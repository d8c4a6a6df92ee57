import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExampleApp } from '../src/app.js';
import { createFastifyApp } from '../src/fastify-app.js';
import { buildPage } from '../src/page/build.js';
import { checkServing } from './serving.js';

describe('the Fastify example', () => {
  let example: ExampleApp<Awaited<ReturnType<typeof createFastifyApp>>['app']>;
  let base: string;
  let publicDir: string;

  beforeAll(async () => {
    // Its own copy of the page: a build running beside the tests may be rewriting dist/.
    publicDir = await mkdtemp(join(tmpdir(), 'mlserve-page-'));
    await buildPage(publicDir);
    example = await createFastifyApp({ publicDir });
    const port = await freePort();
    await example.app.listen({ port, host: '127.0.0.1' });
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await example?.close();
    await rm(publicDir, { recursive: true, force: true });
  });

  it('serves MNIST over V2 and TF Serving with validation, cache, batching and metrics', async () => {
    await checkServing(base, 'Fastify');
  });

  it('serves the page, its script, the model file and onnxruntime-web wasm', async () => {
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/text\/html/);
    expect(await page.text()).toContain('<canvas id="pad"');
    const script = await fetch(`${base}/assets/page.js`);
    expect(script.headers.get('content-type')).toMatch(/javascript/);
    expect((await script.text()).length).toBeGreaterThan(10_000);
    const wasm = await fetch(`${base}/ort/ort-wasm-simd-threaded.wasm`);
    expect(wasm.status).toBe(200);
    expect(wasm.headers.get('content-type')).toBe('application/wasm');
    const head = new Uint8Array(await wasm.arrayBuffer()).subarray(0, 4);
    expect(Array.from(head)).toEqual([0x00, 0x61, 0x73, 0x6d]); // "\0asm"
    const model = await fetch(`${base}/models/mnist.onnx`);
    expect(model.status).toBe(200);
    expect((await model.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
  });

  it('never sends a file outside its folders', async () => {
    for (const path of [
      '/assets/..%2Fpackage.json',
      '/assets/.env',
      '/ort/..%2F..%2Fpackage.json',
      '/assets/nope.js',
    ]) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { code: string }).code).toBe('NOT_FOUND');
    }
  });
});
