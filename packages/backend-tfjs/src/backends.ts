import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { importOptional, isModuleNotFound, ServeError, unavailable } from '@mlserve/core';
import * as tf from '@tensorflow/tfjs';

/** Backends `loadTfjsModel` can be asked for. `auto` picks the best one installed. */
export type TfjsBackendName = 'auto' | 'tensorflow' | 'wasm' | 'cpu' | 'webgl' | 'webgpu' | (string & {});

/** Imports a module by name: `import()` by default; tests pass a stand-in. */
export type ModuleLoader = (specifier: string) => Promise<unknown>;

/** The backend that ended up active, and the npm package that provides it. */
export interface ActiveBackend {
  /** The tfjs backend name (`tensorflow`, `wasm`, `cpu`, ...). */
  name: string;
  /** The npm package that registered it (`@tensorflow/tfjs-node-gpu`, `@tensorflow/tfjs` for cpu). */
  package: string;
  /** The module the package exported (tfjs-node's `node` namespace lives here). */
  module?: unknown;
}

/** Options of {@link activateBackend}. */
export interface BackendOptions {
  /** How optional packages are imported (default: dynamic `import()`). */
  loader?: ModuleLoader;
  /** Where the wasm backend finds its `.wasm` files (default: the installed package's `dist/`). */
  wasmPaths?: string;
  /** Threads for the wasm backend (only used by the threaded build; default tfjs's choice). */
  wasmThreads?: number;
}

/** The packages that provide each backend, in the order `auto` tries them. */
export const BACKEND_PACKAGES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  tensorflow: ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'],
  wasm: ['@tensorflow/tfjs-backend-wasm'],
  cpu: ['@tensorflow/tfjs'],
  webgl: ['@tensorflow/tfjs-backend-webgl'],
  webgpu: ['@tensorflow/tfjs-backend-webgpu'],
});

/** The order `auto` tries: native TensorFlow (GPU, then CPU), then wasm, then the pure-JS cpu backend. */
export const AUTO_ORDER: readonly string[] = Object.freeze(['tensorflow', 'wasm', 'cpu']);

function localRequire(): NodeJS.Require {
  // In the CJS build `require` exists; in ESM, make one from this module's URL.
  // (Loaders such as tsx define a `require` without `resolve` in ESM: check for it.)
  return typeof require === 'function' && typeof require.resolve === 'function'
    ? require
    : createRequire(import.meta.url);
}

/**
 * The directory holding tfjs-backend-wasm's `.wasm` files, with a trailing slash.
 *
 * @example
 * ```ts
 * import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
 * setWasmPaths(defaultWasmPaths()); // what loadTfjsModel does before it starts the wasm backend
 * ```
 */
export function defaultWasmPaths(): string {
  const entry = localRequire().resolve('@tensorflow/tfjs-backend-wasm');
  // entry: .../tfjs-backend-wasm/dist/index.js (or dist/tf-backend-wasm.node.js): the .wasm files sit beside it.
  return `${dirname(entry)}/`;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

async function trySetBackend(name: string): Promise<void> {
  if (!tf.findBackendFactory(name)) throw new Error(`no tfjs backend named "${name}" is registered`);
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (err) {
    throw new Error(`backend "${name}" failed to initialize: ${message(err)}`);
  }
  if (!ok) throw new Error(`backend "${name}" failed to initialize`);
  await tf.ready();
}

let wasmConfigured = false;

async function activateOne(name: string, options: BackendOptions): Promise<ActiveBackend> {
  const loader = options.loader;
  const packages = BACKEND_PACKAGES[name];
  if (name === 'cpu') {
    await trySetBackend('cpu');
    return { name, package: '@tensorflow/tfjs' };
  }
  if (!packages) {
    // A backend some other package registered (a custom one): use it when it is there.
    if (!tf.findBackendFactory(name)) {
      throw unavailable(
        `tfjs backend "${name}" is not registered; import the package that provides it first`,
      );
    }
    await trySetBackend(name);
    return { name, package: 'unknown' };
  }
  const failures: string[] = [];
  for (const pkg of packages) {
    let mod: unknown;
    try {
      mod = await importOptional(pkg, { loader });
    } catch (err) {
      // One reason per package here; the install commands of all of them close the message.
      const cause = (err as ServeError).cause ?? err;
      failures.push(
        isModuleNotFound(cause, pkg) ? `${pkg} is not installed` : `${pkg} failed to load: ${message(cause)}`,
      );
      continue;
    }
    try {
      if (name === 'wasm' && !wasmConfigured && tf.getBackend() !== 'wasm') {
        const wasm = mod as {
          setWasmPaths?: (p: string) => void;
          setThreadsCount?: (n: number) => void;
        };
        wasm.setWasmPaths?.(options.wasmPaths ?? defaultWasmPaths());
        if (options.wasmThreads !== undefined) wasm.setThreadsCount?.(options.wasmThreads);
        wasmConfigured = true;
      }
      await trySetBackend(name);
      return { name, package: pkg, module: mod };
    } catch (err) {
      failures.push(`${pkg}: ${message(err)}`);
    }
  }
  const install = packages.map((p) => `npm install ${p}`).join(' or ');
  throw unavailable(`tfjs backend "${name}" is unavailable (${failures.join('; ')}); run \`${install}\``, {
    details: { backend: name, install: [...packages], failures },
  });
}

/**
 * Makes a tfjs backend the active one, importing the package that provides it, and says which
 * package that was. `auto` tries tfjs-node-gpu, tfjs-node, tfjs-backend-wasm, then cpu.
 *
 * Note: tfjs has one active backend per process; every model of this package switches to its own
 * before it runs (see {@link loadTfjsModel}).
 *
 * @example
 * ```ts
 * const active = await activateBackend('wasm'); // { name: 'wasm', package: '@tensorflow/tfjs-backend-wasm' }
 * ```
 */
export async function activateBackend(
  requested: TfjsBackendName,
  options: BackendOptions = {},
): Promise<ActiveBackend> {
  if (typeof requested !== 'string' || requested.length === 0) {
    throw new ServeError('INVALID_ARGUMENT', 'loadTfjsModel: options.backend must be a backend name');
  }
  if (requested !== 'auto') return activateOne(requested, options);
  const failures: string[] = [];
  for (const name of AUTO_ORDER) {
    try {
      return await activateOne(name, options);
    } catch (err) {
      failures.push(message(err));
    }
  }
  throw unavailable(`no tfjs backend could start: ${failures.join('; ')}`);
}

/** Switches the process's tfjs engine to `name` when another backend is active (cheap once initialized). */
export async function ensureBackend(name: string): Promise<void> {
  if (tf.getBackend() !== name) {
    const ok = await tf.setBackend(name);
    if (!ok) throw unavailable(`tfjs backend "${name}" is no longer available`);
  }
}
