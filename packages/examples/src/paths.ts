import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

// src/ and dist/ are both one level below the package, so these resolve the same from either.

/** The MNIST CNN of the demo model repository (`model-repository/mnist/1/model.onnx`). */
export const MODEL_FILE = fileURLToPath(new URL('../model-repository/mnist/1/model.onnx', import.meta.url));

/** Where the page is built to (`npm run build`, or `buildPage()`): `dist/public`. */
export const PUBLIC_DIR = fileURLToPath(new URL('../dist/public/', import.meta.url));

/** onnxruntime-web's `dist/` folder, which holds the WebAssembly files the page's runtime fetches. */
export const ORT_WASM_DIR = dirname(
  createRequire(import.meta.url).resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'),
);

/** Whether this module's file is the script Node was started with (`node dist/fastify-app.js`). */
export function isMain(url: string): boolean {
  return process.argv[1] !== undefined && fileURLToPath(url) === process.argv[1];
}

/** A held-out MNIST "7" as a KServe V2 JSON request, for curl (`-d @requests/digit-7.json`). */
export const SAMPLE_REQUEST = fileURLToPath(new URL('../requests/digit-7.json', import.meta.url));
