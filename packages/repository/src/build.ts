/**
 * Pipeline building: from a version's files and its config to a served model,
 * `[extra middleware] -> validation -> cache -> batching -> model`, warmed up. Returns what it
 * built; the caller decides what to record.
 */
import { readFile, realpath } from 'node:fs/promises';
import { join, relative } from 'node:path';
import {
  invalidArgument,
  type Middleware,
  type Model,
  type ModelMetadata,
  pipeline,
  validation,
  wrap,
} from '@mlserve/core';
import type { CacheRedisConfig, ModelConfig } from './config.js';
import { defaultServing, rowsIndependent } from './defaults.js';
import { defaultLoaders, importOptional, type Loaders, middlewareFactory } from './loaders.js';
import { isInside } from './paths.js';
import { runWarmup } from './warmup.js';

/** What a pipeline is built with, beyond the version's config. */
export interface BuildContext {
  /** The repository's real path (class-label files must lie inside it). */
  root: string;
  loaders?: Loaders;
  /** Extra outermost layers per version (metrics, tracing), before validation. */
  middleware?: (name: string, version: string) => Middleware[];
  /**
   * ONNX intra-op threads of sessions whose config does not set them (default from
   * {@link defaultServing}: never the event loop's core).
   */
  intraOpThreads?: number;
  /**
   * Worker threads for models whose config has no `workers` (0: in the main thread). Default from
   * {@link defaultServing}: one worker on 3 or more CPUs for ONNX models loaded by the default
   * loader, the main thread otherwise.
   */
  workers?: number;
  /** The CPUs the defaults may use (default {@link cpuBudget}): a process of a cluster passes its share. */
  cpus?: number;
  /** Decisions the defaults made (placement, batching or not, and why). */
  info?: (message: string, fields: Record<string, unknown>) => void;
  /** False turns warmup off everywhere. */
  warmup?: boolean;
  /** The response cache's store for a model (see `RepositoryOptions.cacheStore`). */
  cacheStore?: (name: string, redis: CacheRedisConfig | undefined) => object | undefined;
  /** Stops warmups (the repository is closing). */
  signal?: AbortSignal;
  /** Warmup progress: once when warmup starts (no `progress`), then after each step. */
  onWarmup?: (backend: string, progress?: { done: number; total: number; batchSize: number }) => void;
  /** Debug log of the warmup's figures. */
  debug?: (message: string, fields: Record<string, unknown>) => void;
}

/** The version to build. */
export interface BuildRequest {
  name: string;
  version: string;
  /** The version directory. */
  dir: string;
  /** The model file (or SavedModel directory). */
  file: string;
  backend: 'onnx' | 'tfjs';
  config: ModelConfig;
}

/** What {@link buildPipeline} built. */
export interface BuiltPipeline {
  /** The served model: the whole pipeline, warmed up. */
  model: Model;
  /** The innermost model (what warmup and shadow timing run on): backend, name and version, class labels. */
  base: Model;
  /** What runs it (`onnxruntime-node/cpu`, `worker-pool(onnx)`). */
  backend: string;
  platform: string | undefined;
  /** {@link pipelineKey} of the config it was built from. */
  key: string;
}

/**
 * The config fields that shape a version's pipeline (routing fields apply without a rebuild).
 *
 * @example
 * ```ts
 * if (pipelineKey(next) !== built.key) await rebuild();
 * ```
 */
export function pipelineKey(config: ModelConfig): string {
  const {
    labels: _l,
    traffic: _t,
    rollout: _r,
    versionPolicy: _v,
    description: _d,
    pinned: _p,
    ...rest
  } = config;
  return JSON.stringify(rest);
}

/**
 * Loads a version and builds its pipeline from its config, then warms it up. Middleware packages
 * are resolved first, so a missing one fails before a model is loaded; on any failure what was
 * loaded is disposed.
 *
 * @example
 * ```ts
 * const built = await buildPipeline({ root }, { name: 'mnist', version: '1', dir, file,
 *   backend: 'onnx', config: parseModelConfig({}, 'mnist/config.json') });
 * registry.add(built.model);
 * ```
 */
export async function buildPipeline(ctx: BuildContext, req: BuildRequest): Promise<BuiltPipeline> {
  const { name, version, config } = req;
  const loaders = ctx.loaders ?? {};
  // Middleware first: a missing package fails before a model is loaded.
  const cache = config.cache ? await middlewareFactory(loaders, 'cache') : undefined;
  const batching = config.batching ? await middlewareFactory(loaders, 'batching') : undefined;
  const opts: Record<string, unknown> = { name, version, ...config.backendOptions };
  if (config.padValues) opts.padValues = config.padValues;
  const classLabels = await readClassLabels(ctx.root, [req.dir, join(req.dir, '..')], config.labelsFile);
  const defaults = defaultServing(ctx.cpus);
  let workers = config.workers ?? (ctx.workers ? { threads: ctx.workers } : undefined);
  // The default placement (nothing in config.json, no flag): off the main thread on two or more
  // CPUs, for ONNX models the default loader would load (a custom loader cannot move to a worker).
  const placedByDefault =
    !workers &&
    config.workersByDefault === true &&
    ctx.workers === undefined &&
    defaults.workers > 0 &&
    req.backend === 'onnx' &&
    !loaders.onnx &&
    (await workersAvailable(loaders));
  if (placedByDefault) {
    const threads = config.backendOptions.intraOpNumThreads;
    workers = {
      threads: defaults.workers,
      intraOpThreads: typeof threads === 'number' ? threads : (ctx.intraOpThreads ?? defaults.intraOpThreads),
    };
  }
  let base: Model;
  if (workers) {
    const pool = loaders.workerPool ?? defaultLoaders.workerPool;
    base = await pool({
      backend: req.backend,
      source: req.file,
      options: opts,
      threads: workers.threads,
      ...(workers.intraOpThreads !== undefined && { intraOpThreads: workers.intraOpThreads }),
      ...(workers.maxQueue !== undefined && { maxQueue: workers.maxQueue }),
      ...(workers.idleTimeoutMs !== undefined && { idleTimeoutMs: workers.idleTimeoutMs }),
    });
  } else {
    if (req.backend === 'onnx' && opts.intraOpNumThreads === undefined) {
      opts.intraOpNumThreads = ctx.intraOpThreads ?? defaults.inThreadIntraOpThreads;
    }
    const loader = loaders[req.backend] ?? defaultLoaders[req.backend];
    base = await loader(req.file, opts);
  }
  try {
    base = identity(base, name, version, classLabels);
    const meta = base.metadata();
    const backend = meta.backend ?? req.backend;
    let batchingOptions = config.batching;
    if (!batchingOptions && config.batchingByDefault) {
      batchingOptions = await defaultBatching(base, loaders, (message, fields) =>
        ctx.info?.(`${name}/${version}: ${message}`, { model: name, version, ...fields }),
      );
    }
    const batcher = batchingOptions && (batching ?? (await middlewareFactory(loaders, 'batching')));
    const layers: Middleware[] = [...(ctx.middleware?.(name, version) ?? [])];
    // One validation per request: @mlserve/batching checks every request before it queues (the
    // same checks as validation()), so when it is the next layer, validation() would only repeat it.
    const batcherValidates = batcher && !cache && !loaders.batching;
    if (config.validation.enabled && !(batcherValidates && config.validation.maxBatchSize === undefined)) {
      layers.push(
        validation(config.validation.maxBatchSize ? { maxBatchSize: config.validation.maxBatchSize } : {}),
      );
    }
    if (cache) {
      let cacheOptions = config.cache!;
      const store = ctx.cacheStore?.(name, config.cacheRedis);
      if (store) {
        const { max: _max, maxSize: _maxSize, ...rest } = cacheOptions;
        cacheOptions = { ttlMs: 600_000, ...rest, store };
      } else if (config.cacheRedis) {
        throw invalidArgument(
          `${name}/config.json: cache.redis needs a server that connects to Redis (mlserve serve does)`,
        );
      }
      layers.push(cache(cacheOptions));
    }
    // The batcher never merges requests that carry sequence parameters (each runs alone).
    if (batcher) layers.push(batcher(batchingOptions!));
    if (placedByDefault) {
      ctx.info?.(
        `${name}/${version}: in ${workers!.threads} worker thread(s) x ${workers!.intraOpThreads} intra-op thread(s) (${defaults.cpus} CPUs; default)`,
        { model: name, version, workers: workers!.threads, intraOpThreads: workers!.intraOpThreads },
      );
    }
    const model = pipeline(base, ...layers);
    if (ctx.warmup !== false && config.warmup.enabled) {
      await model.warmup?.();
      ctx.onWarmup?.(backend);
      const report = await runWarmup(base, config.warmup, {
        ...(batchingOptions && { batching: batchingOptions }),
        file: join(name, 'config.json'),
        ...(ctx.signal && { signal: ctx.signal }),
        onProgress: (done, total, batchSize) => ctx.onWarmup?.(backend, { done, total, batchSize }),
      });
      ctx.debug?.(
        `${name}/${version} warmed up: ${report.requests} requests in ${Math.round(report.ms)} ms`,
        {
          model: name,
          version,
          batchSizes: report.batchSizes,
          truncated: report.truncated,
        },
      );
    }
    return { model, base, backend, platform: meta.platform, key: pipelineKey(config) };
  } catch (err) {
    await base.dispose().catch(() => undefined);
    throw err;
  }
}

/** Whether `@mlserve/workers` can be loaded (it is an optional peer). */
async function workersAvailable(loaders: Loaders): Promise<boolean> {
  if (loaders.workerPool) return true;
  try {
    await importOptional('@mlserve/workers');
    return true;
  } catch {
    return false;
  }
}

/**
 * The batching a model gets when config.json says nothing: `maxDelayMs: 'auto'` when its batch dim
 * is dynamic and a batch of distinct rows equals those rows run alone ({@link rowsIndependent}),
 * and `@mlserve/batching` is installed; otherwise none.
 */
async function defaultBatching(
  base: Model,
  loaders: Loaders,
  info: (message: string, fields: Record<string, unknown>) => void,
): Promise<Record<string, unknown> | undefined> {
  const meta = base.metadata();
  if (!(meta.maxBatchSize > 1) || !meta.inputs.every((i) => i.batched)) return undefined;
  if (!loaders.batching) {
    try {
      await importOptional('@mlserve/batching');
    } catch {
      info('not batched: @mlserve/batching is not installed', {});
      return undefined;
    }
  }
  const check = await rowsIndependent(base);
  if (!check.independent) {
    info(`not batched by default: ${check.why}`, { batching: false });
    return undefined;
  }
  info(
    `batched by default (maxDelayMs 'auto'; rows independent, max difference ${check.maxDiff.toExponential(1)})`,
    {
      batching: true,
    },
  );
  return { maxDelayMs: 'auto' };
}

/**
 * The class labels file of a version (first) or its model directory, one label a line.
 *
 * @example
 * ```ts
 * const labels = await readClassLabels(root, [versionDir, modelDir], 'labels.txt');
 * ```
 */
export async function readClassLabels(
  root: string,
  dirs: string[],
  file: string,
): Promise<string[] | undefined> {
  for (const dir of dirs) {
    const path = join(dir, file);
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      continue;
    }
    if (!isInside(root, real))
      throw invalidArgument(`${relative(root, path)} resolves outside the model repository`);
    const text = await readFile(real, 'utf8');
    const lines = text.split(/\r?\n/);
    while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
    return lines.map((l) => l.trim());
  }
  return undefined;
}

/** Makes a loaded model answer to the repository's name and version, with its class labels. */
function identity(base: Model, name: string, version: string, labels: string[] | undefined): Model {
  if (base.name === name && base.version === version && !labels) return base;
  let meta: ModelMetadata | undefined;
  const model = wrap(base, {
    layer: 'repository',
    metadata: () => {
      meta ??= (() => {
        const m = base.metadata();
        const out: ModelMetadata = { ...m, name, version };
        if (labels) out.extra = { ...m.extra, labels };
        return out;
      })();
      return structuredClone(meta);
    },
  });
  return Object.defineProperties(model, {
    name: { value: name, enumerable: true },
    version: { value: version, enumerable: true },
  });
}
