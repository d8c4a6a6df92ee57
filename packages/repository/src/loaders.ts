import {
  importOptional as importOptionalPeer,
  type Middleware,
  type Model,
  unavailable,
} from '@mlserve/core';

/**
 * A backend's load function, `(source path, options) => Model` (`loadOnnxModel`, `loadTfjsModel`).
 * Options carry `name` and `version`. Not `@mlserve/workers`' `ModelLoader`, the export of a loader
 * module, which also receives the worker's context.
 */
export type BackendLoader = (source: string, options: Record<string, unknown>) => Promise<Model>;

/** @deprecated use {@link BackendLoader} (`ModelLoader` is also `@mlserve/workers`' name for a loader module's export). */
export type ModelLoader = BackendLoader;

/** What a repository passes to {@link Loaders.workerPool}: a subset of `@mlserve/workers`' `WorkerPoolOptions`. */
export interface WorkerPoolLoaderOptions {
  backend: 'onnx' | 'tfjs';
  source: string;
  options: Record<string, unknown>;
  threads: number;
  intraOpThreads?: number;
  maxQueue?: number;
  idleTimeoutMs?: number;
}

/** @deprecated use {@link WorkerPoolLoaderOptions} (`WorkerPoolOptions` is `@mlserve/workers`' pool options). */
export type WorkerPoolOptions = WorkerPoolLoaderOptions;

/**
 * The parts a repository builds pipelines from. Each defaults to a dynamic import of the package
 * that provides it, so only the backends a repository uses need to be installed; replace one to
 * use another implementation (or a test double).
 */
export interface Loaders {
  /** Default: `loadOnnxModel` from `@mlserve/backend-onnx`. */
  onnx?: BackendLoader;
  /** Default: `loadTfjsModel` from `@mlserve/backend-tfjs` (also used for SavedModel directories). */
  tfjs?: BackendLoader;
  /** Default: `workerPool` from `@mlserve/workers`. */
  workerPool?: (options: WorkerPoolLoaderOptions) => Promise<Model>;
  /** Default: `batching` from `@mlserve/batching`. */
  batching?: (options: Record<string, unknown>) => Middleware;
  /** Default: `responseCache` from `@mlserve/cache`. */
  cache?: (options: Record<string, unknown>) => Middleware;
}

const modules = new Map<string, Promise<Record<string, unknown>>>();

/**
 * Imports an optional package once; when it is not installed, rejects with UNAVAILABLE naming the
 * package and the install command.
 *
 * @example
 * ```ts
 * const { loadTfjsModel } = await importOptional('@mlserve/backend-tfjs');
 * ```
 */
export function importOptional(pkg: string): Promise<Record<string, unknown>> {
  let p = modules.get(pkg);
  if (!p) {
    p = importOptionalPeer<Record<string, unknown>>(pkg).catch((err: unknown) => {
      modules.delete(pkg);
      throw err;
    });
    modules.set(pkg, p);
  }
  return p;
}

async function exported<T>(pkg: string, name: string): Promise<T> {
  const mod = await importOptional(pkg);
  const fn = mod[name] ?? (mod.default as Record<string, unknown> | undefined)?.[name];
  if (typeof fn !== 'function')
    throw unavailable(`${pkg} does not export ${name}() (is it an older version?)`);
  return fn as T;
}

/** The default {@link Loaders}: dynamic imports of the mlserve packages. */
export const defaultLoaders: Required<Pick<Loaders, 'onnx' | 'tfjs' | 'workerPool'>> = {
  onnx: async (source, options) =>
    (await exported<BackendLoader>('@mlserve/backend-onnx', 'loadOnnxModel'))(source, options),
  tfjs: async (source, options) =>
    (await exported<BackendLoader>('@mlserve/backend-tfjs', 'loadTfjsModel'))(source, options),
  workerPool: async (options) =>
    (await exported<(o: WorkerPoolLoaderOptions) => Promise<Model>>('@mlserve/workers', 'workerPool'))(
      options,
    ),
};

/**
 * Resolves the middleware factories a config needs (before any model loads, so errors are early).
 *
 * @example
 * ```ts
 * const batching = await middlewareFactory({}, 'batching');
 * const served = pipeline(model, batching({ maxBatchSize: 32 }));
 * ```
 */
export async function middlewareFactory(
  loaders: Loaders,
  kind: 'batching' | 'cache',
): Promise<(options: Record<string, unknown>) => Middleware> {
  const given = loaders[kind];
  if (given) return given;
  return kind === 'batching'
    ? exported('@mlserve/batching', 'batching')
    : exported('@mlserve/cache', 'responseCache');
}
