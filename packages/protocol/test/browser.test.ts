import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { describe, expect, it } from 'vitest';

const entry = fileURLToPath(new URL('../src/index.ts', import.meta.url));
const core = fileURLToPath(new URL('../../core/src/index.ts', import.meta.url));

// The main entry is what browser clients (@mlserve/client) import: it must bundle for the browser
// with nothing from Node (esbuild fails on a `node:` import when the platform is 'browser') and
// must not touch the Buffer global (which browsers lack, and bundlers no longer polyfill).
describe('the main entry in a browser bundle', () => {
  it('bundles for the browser with @mlserve/core and uses no Node API', async () => {
    const out = await build({
      entryPoints: [entry],
      bundle: true,
      platform: 'browser',
      format: 'esm',
      minify: true,
      write: false,
      logLevel: 'silent',
      alias: { '@mlserve/core': core },
    });
    const text = out.outputFiles[0]!.text;
    expect(text.length).toBeGreaterThan(1000);
    expect(text).not.toMatch(/\bBuffer\b/);
    expect(text).not.toMatch(/\bprocess\./);
    expect(text).not.toMatch(/require\(/);
  });

  it('the server entry is not browser-safe, and the main entry does not pull it in', async () => {
    const text = (
      await build({
        entryPoints: [entry],
        bundle: true,
        platform: 'neutral',
        format: 'esm',
        write: false,
        logLevel: 'silent',
        alias: { '@mlserve/core': core },
      })
    ).outputFiles[0]!.text;
    expect(text).not.toMatch(/node:/);
    expect(text).not.toMatch(/@opentelemetry/);
  });
});
