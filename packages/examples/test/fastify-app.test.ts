import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExampleApp } from '../src/app.js';
import { createFastifyApp } from '../src/fastify-app.js';
import { buildPage, type PageBuild } from '../src/page/build.js';
import { checkServing } from './serving.js';

describe('the Fastify example', () => {
  let example: ExampleApp<Awaited<ReturnType<typeof createFastifyApp>>['app']>;
  let base: string;
  let publicDir: string;
  let built: PageBuild;

  beforeAll(async () => {
    // Its own copy of the page: a build running beside the tests may be rewriting dist/.
    publicDir = await mkdtemp(join(tmpdir(), 'mlserve-page-'));
    built = await buildPage(publicDir);
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
    expect(page.headers.get('cache-control')).toBe('no-cache');
    const html = await page.text();
    expect(html).toContain('<canvas id="pad"');
    expect(html).toContain(`src="${built.script}"`);
    expect(html).toContain(`href="${built.style}"`);
    const script = await fetch(`${base}${built.script}`);
    expect(script.headers.get('content-type')).toMatch(/javascript/);
    expect(script.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const code = await script.text();
    expect(code.length).toBeGreaterThan(10_000);
    expect(code).toContain(built.wasm); // ort.env.wasm.wasmPaths
    const wasm = await fetch(`${base}${built.wasm}`);
    expect(wasm.status).toBe(200);
    expect(wasm.headers.get('content-type')).toBe('application/wasm');
    expect(wasm.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const head = new Uint8Array(await wasm.arrayBuffer()).subarray(0, 4);
    expect(Array.from(head)).toEqual([0x00, 0x61, 0x73, 0x6d]); // "\0asm"
    const model = await fetch(`${base}/models/mnist.onnx`);
    expect(model.status).toBe(200);
    expect(model.headers.get('cache-control')).toBe('no-cache');
    expect((await model.arrayBuffer()).byteLength).toBeGreaterThan(100_000);
  });

  it('sends the hashed files compressed, and answers a revalidation of the page and the model with a 304', async () => {
    for (const [encoding, most] of [
      ['br', 3_000_000],
      ['gzip', 4_000_000],
    ] as const) {
      const wasm = await fetch(`${base}${built.wasm}`, { headers: { 'accept-encoding': encoding } });
      expect(wasm.headers.get('content-encoding')).toBe(encoding);
      expect(Number(wasm.headers.get('content-length'))).toBeLessThan(most); // 14.2 MB uncompressed
      await wasm.arrayBuffer();
    }
    for (const path of ['/', '/models/mnist.onnx']) {
      const first = await fetch(`${base}${path}`);
      const etag = first.headers.get('etag');
      expect(etag, path).toBeTruthy();
      await first.arrayBuffer();
      const again = await fetch(`${base}${path}`, {
        // What a browser's reload sends (fetch() would add `cache-control: no-cache`, which forbids a 304).
        headers: { 'if-none-match': etag!, 'cache-control': 'max-age=0' },
      });
      expect(again.status, path).toBe(304);
    }
  });

  it('never sends a file outside its folders', async () => {
    for (const path of [
      '/assets/..%2F..%2Fpackage.json',
      '/assets/..%2Findex.html',
      '/assets/.env',
      '/assets/%2e%2e/%2e%2e/package.json',
      '/ort/ort-wasm-simd-threaded.wasm',
      '/assets/nope.js',
    ]) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { code: string }).code).toBe('NOT_FOUND');
    }
  });
});
