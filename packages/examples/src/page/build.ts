import { createHash } from 'node:crypto';
import { copyFile, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { brotliCompress, constants, gzip } from 'node:zlib';
import { build } from 'esbuild';
import { ORT_WASM_DIR, PUBLIC_DIR } from '../paths.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const brotli = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

/**
 * Compressed copies are kept here by content hash, so a rebuild (or a test's build) compresses the
 * 14 MB WebAssembly file only once (brotli quality 9 takes several seconds; 11 would take 90).
 */
const CACHE_DIR = fileURLToPath(new URL('../../node_modules/.cache/mlserve-page/', import.meta.url));

/** onnxruntime-web's plain WebAssembly build, the one file its `onnxruntime-web/wasm` entry fetches. */
const ORT_WASM = 'ort-wasm-simd-threaded.wasm';

/** What `buildPage()` wrote: the URL paths of the hashed files, as `index.html` refers to them. */
export interface PageBuild {
  /** The page's script, e.g. `/assets/page-3NQ2XK4B.js`. */
  script: string;
  /** The style sheet, e.g. `/assets/style-Q6B7GJZR.css`. */
  style: string;
  /** onnxruntime-web's WebAssembly, e.g. `/assets/ort-wasm-simd-threaded-1f0c2e9a7b3d4c5e.wasm`. */
  wasm: string;
}

const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex').slice(0, 16);

/** Writes `file.br` and `file.gz` beside `file`, from the cache when this content was compressed before. */
async function precompress(file: string, data: Buffer): Promise<void> {
  const key = sha(data);
  await Promise.all(
    (['br', 'gz'] as const).map(async (ext) => {
      const cached = join(CACHE_DIR, `${key}.${ext}`);
      let out: Buffer;
      try {
        out = await readFile(cached);
      } catch {
        out =
          ext === 'br'
            ? await brotli(data, {
                params: {
                  [constants.BROTLI_PARAM_QUALITY]: 9,
                  [constants.BROTLI_PARAM_SIZE_HINT]: data.length,
                },
              })
            : await gzipAsync(data, { level: 9 });
        // Written under a temporary name, then renamed: a build beside this one never reads half a file.
        const tmp = `${cached}.${process.pid}.${Date.now()}`;
        await writeFile(tmp, out);
        await rename(tmp, cached);
      }
      await writeFile(`${file}.${ext}`, out);
    }),
  );
}

/**
 * Builds the drawing page into `outDir` (default `dist/public`): `index.html`, and under `assets/`
 * the page's script (bundled with onnxruntime-web's plain WebAssembly build and
 * `@mlserve/backend-onnx/web`), its style sheet and onnxruntime-web's `.wasm`, each with its content
 * hash in its name (so it can be cached for a year), each beside a brotli (`.br`) and a gzip (`.gz`)
 * copy for `@fastify/static`'s `preCompressed` option. `npm run build` runs it; the tests run it too.
 *
 * @example
 * ```ts
 * const { script } = await buildPage(); // then createFastifyApp() serves dist/public at /
 * ```
 */
export async function buildPage(outDir: string = PUBLIC_DIR): Promise<PageBuild> {
  const assets = join(outDir, 'assets');
  await rm(assets, { recursive: true, force: true });
  await mkdir(assets, { recursive: true });
  await mkdir(CACHE_DIR, { recursive: true });

  const wasmData = await readFile(join(ORT_WASM_DIR, ORT_WASM));
  const wasm = `/assets/ort-wasm-simd-threaded-${sha(wasmData)}.wasm`;
  await copyFile(join(ORT_WASM_DIR, ORT_WASM), join(outDir, wasm));

  const result = await build({
    entryPoints: { page: join(here, 'main.ts'), style: join(here, 'style.css') },
    outdir: assets,
    entryNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    // onnxruntime-web's plain WebAssembly build (one 14 MB .wasm, 2.7 MB brotli) for the page and
    // @mlserve/backend-onnx/web alike: the package's default entry loads the 28 MB JSEP (WebGPU) build.
    alias: { 'onnxruntime-web': 'onnxruntime-web/wasm' },
    define: { __ORT_WASM_URL__: JSON.stringify(wasm) },
    target: 'es2022',
    minify: true,
    sourcemap: true,
    metafile: true,
    logLevel: 'warning',
  });
  const outputs = Object.keys(result.metafile.outputs).map((path) =>
    path.replace(/^.*\/assets\//, '/assets/'),
  );
  const script = outputs.find((path) => /^\/assets\/page-[^/]+\.js$/.test(path));
  const style = outputs.find((path) => /^\/assets\/style-[^/]+\.css$/.test(path));
  if (!script || !style) throw new Error(`buildPage: esbuild wrote ${outputs.join(', ')}`);

  const html = (await readFile(join(here, 'index.html'), 'utf8'))
    .replace('/assets/style.css', style)
    .replace('/assets/page.js', script);
  await writeFile(join(outDir, 'index.html'), html);

  // Source maps are fetched only by developer tools: not worth compressing.
  const names = (await readdir(assets)).filter((name) => !/\.(map|br|gz)$/.test(name));
  await Promise.all([
    ...names.map(async (name) => precompress(join(assets, name), await readFile(join(assets, name)))),
    precompress(join(outDir, 'index.html'), Buffer.from(html)),
  ]);
  return { script, style, wasm };
}

// `tsx src/page/build.ts [outDir]` (tsup runs it after each build).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await buildPage(process.argv[2]);
