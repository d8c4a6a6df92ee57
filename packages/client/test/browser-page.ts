/**
 * The page script of the Chromium test: the browser build of the client, driven from the test
 * through `window.clientTest`. Bundled by esbuild (platform browser) in browser.test.ts.
 */
import { tensor } from '@mlserve/core';
import { createClient, parseClassification } from '../src/browser.js';

async function run(pixels: number[]) {
  const client = createClient({ url: '/' });
  const image = tensor('float32', Float32Array.from(pixels), [1, 1, 28, 28]);
  const ready = await client.serverReady();
  const out = await client.infer('mnist', { image });
  const top = await client.infer('mnist', { image }, { outputs: ['logits'], classification: 2 });
  const bytes = await client.infer('id_bytes', { x: tensor('string', ['héllo', 'wörld'], [1, 2]) });
  const missing = await client
    .infer('missing', { image })
    .catch((e: { code?: string; status?: number; message?: string }) => ({
      code: e.code,
      status: e.status,
      message: e.message,
    }));
  const controller = new AbortController();
  const slow = client.infer('slow', { x: tensor('float32', [1], [1, 1]) }, { signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  const aborted = await slow.catch((e: { code?: string }) => e.code);
  const deadline = await client
    .infer('slow', { x: tensor('float32', [1], [1, 1]) }, { timeoutMs: 100 })
    .catch((e: { code?: string }) => e.code);
  const gz = createClient({ url: location.origin, compression: 'gzip' });
  const big = tensor('float32', new Float32Array(4096).fill(0.5), [1, 4096]);
  const echoed = (await gz.infer('id_f32', { x: big })).y!;
  return {
    ready,
    logits: Array.from(out.logits!.data as Float32Array),
    top: parseClassification(top.logits!)[0],
    bytes: (bytes.y!.data as (string | Uint8Array)[]).map((e) =>
      typeof e === 'string' ? e : new TextDecoder().decode(e),
    ),
    missing,
    aborted,
    deadline,
    gzipEcho: (echoed.data as Float32Array).every((v) => v === 0.5) && echoed.data.length === 4096,
  };
}

(globalThis as unknown as { clientTest: typeof run }).clientTest = run;
