/**
 * The browser build: what a bundler makes of it (size, and nothing from Node in it), and the client
 * running in real Chromium against the real server on loopback.
 */
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { tensor } from '@mlserve/core';
import { launchChromium, mnistHoldout, requireService } from '@mlserve/test-utils';
import { build, type Plugin } from 'esbuild';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Servers, startServers } from './servers.js';

const packagesDir = fileURLToPath(new URL('../../', import.meta.url));

/** Resolves @mlserve/x to its source, as the tests do (the published build resolves to dist). */
const sources: Plugin = {
  name: 'mlserve-sources',
  setup(b) {
    b.onResolve({ filter: /^@mlserve\/[a-z0-9-]+$/ }, (args) => ({
      path: `${packagesDir}${args.path.slice('@mlserve/'.length)}/src/index.ts`,
    }));
  },
};

async function bundle(entry: string | { contents: string }): Promise<string> {
  const result = await build({
    ...(typeof entry === 'string'
      ? { entryPoints: [entry] }
      : {
          stdin: {
            contents: entry.contents,
            resolveDir: fileURLToPath(new URL('.', import.meta.url)),
            loader: 'ts',
          },
        }),
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    plugins: [sources],
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

describe('browser bundle', () => {
  it('an app using the HTTP client stays under 15 kB minified and gzipped, with nothing from Node', async () => {
    // What an app that uses every call pulls in (tree-shaken as a bundler does it).
    const js = await bundle({
      contents: `
        import { createClient, parseClassification } from '../src/browser.ts';
        const c = createClient({ url: '/' });
        export async function main(image) {
          await c.serverReady(); await c.modelMetadata('m'); await c.model('m');
          return parseClassification((await c.infer('m', { image }, { outputs: ['y'], classification: 1 })).y);
        }`,
    });
    const gz = gzipSync(js, { level: 9 }).byteLength;
    console.log(`browser bundle: ${js.length} bytes minified, ${gz} bytes gzipped`);
    expect(gz).toBeLessThan(15 * 1024);
    expect(js).not.toMatch(/from\s*["'](node:|undici|@grpc)/);
    expect(js).not.toMatch(/require\(["'](node:|undici|@grpc)/);
  });
});

const haveChromium = requireService('chromium', 'apt-get install -y chromium');

describe.runIf(haveChromium)('in Chromium', () => {
  let s: Servers;
  let browser: Browser;
  beforeAll(async () => {
    const js = await bundle(fileURLToPath(new URL('./browser-page.ts', import.meta.url)));
    s = await startServers({
      page: {
        '/client-test.html': {
          type: 'text/html',
          body: '<!doctype html><script type="module" src="/client-test.js"></script>',
        },
        '/client-test.js': { type: 'text/javascript', body: js },
      },
    });
    browser = await launchChromium();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await s?.close();
  });

  it('runs every call against the loopback server, binary tensors by default', async () => {
    const page = await browser.newPage();
    await page.goto(`${s.url}/client-test.html`);
    await page.waitForFunction(() => 'clientTest' in globalThis);
    const pixels = Array.from(mnistHoldout().image(1));
    const r = await page.evaluate(
      (p) => (globalThis as unknown as { clientTest: (p: number[]) => Promise<unknown> }).clientTest(p),
      pixels,
    );
    const direct = await s.mnist.infer({
      image: tensor('float32', Float32Array.from(pixels), [1, 1, 28, 28]),
    });
    expect(r).toMatchObject({
      ready: true,
      logits: Array.from(direct.logits!.data as Float32Array),
      bytes: ['héllo', 'wörld'],
      missing: { code: 'NOT_FOUND', status: 404, message: 'unknown model "missing"' },
      aborted: 'CANCELLED',
      deadline: 'DEADLINE_EXCEEDED',
      gzipEcho: true,
    });
    expect((r as { top: { index: number }[] }).top[0]!.index).toBe(mnistHoldout().labels[1]);
    // The browser sent the binary extension, and gzip where asked.
    const infers = s.seen.filter((q) => q.url === '/v2/models/mnist/infer');
    expect(infers.some((q) => q.headers['inference-header-content-length'] !== undefined)).toBe(true);
    const gz = s.seen.filter((q) => q.url === '/v2/models/id_f32/infer').at(-1)!;
    expect(gz.headers['content-encoding']).toBe('gzip');
    await page.close();
  });
});
