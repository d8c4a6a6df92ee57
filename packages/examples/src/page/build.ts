import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { PUBLIC_DIR } from '../paths.js';

const here = fileURLToPath(new URL('.', import.meta.url));

/**
 * Builds the drawing page into `outDir` (default `dist/public`): `index.html`, `style.css` and
 * `page.js`, the page's script bundled with onnxruntime-web and `@mlserve/backend-onnx/web`.
 * `npm run build` runs it; the tests run it too.
 *
 * @example
 * ```ts
 * await buildPage(); // then createFastifyApp() serves dist/public at /
 * ```
 */
export async function buildPage(outDir: string = PUBLIC_DIR): Promise<void> {
  await mkdir(outDir, { recursive: true });
  await build({
    entryPoints: [join(here, 'main.ts')],
    outfile: join(outDir, 'page.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    // onnxruntime-web's plain WebAssembly build (one 14 MB .wasm, 2.7 MB brotli) for the page and
    // @mlserve/backend-onnx/web alike: the package's default entry loads the 28 MB JSEP (WebGPU) build.
    alias: { 'onnxruntime-web': 'onnxruntime-web/wasm' },
    target: 'es2022',
    minify: true,
    sourcemap: true,
    logLevel: 'warning',
  });
  await copyFile(join(here, 'index.html'), join(outDir, 'index.html'));
  await copyFile(join(here, 'style.css'), join(outDir, 'style.css'));
}

// `tsx src/page/build.ts [outDir]` (tsup runs it after each build).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await buildPage(process.argv[2]);
