/**
 * What runs on the worker side, in a thread (worker.ts) or a child process (child.ts): resolves
 * the loader, loads the model once, runs load and infer tasks.
 * @internal
 */
import { importOptional, internal, type Model, throwIfExpired } from '@mlserve/core';
import {
  type InferResult,
  type InferTask,
  type LoadResult,
  type LoadTask,
  type ModelLoader,
  toWireError,
  type WorkerData,
} from './protocol.js';
import { prepareTransfer } from './transfer.js';

// Kept in variables so bundlers leave these optional peers to run-time resolution.
const ONNX_PACKAGE = '@mlserve/backend-onnx';
const TFJS_PACKAGE = '@mlserve/backend-tfjs';

async function resolveLoader(backend: WorkerData['description']['backend']): Promise<ModelLoader> {
  if (backend === 'onnx') {
    const mod = await importOptional<{
      loadOnnxModel: (source: unknown, options: unknown) => Promise<Model>;
    }>(ONNX_PACKAGE, { neededBy: "workerPool backend 'onnx'" });
    return (source, options, ctx) =>
      mod.loadOnnxModel(source, { intraOpNumThreads: ctx.intraOpThreads, ...options });
  }
  if (backend === 'tfjs') {
    const mod = await importOptional<{
      loadTfjsModel: (source: unknown, options: unknown) => Promise<Model>;
    }>(TFJS_PACKAGE, { neededBy: "workerPool backend 'tfjs'" });
    return (source, options) => mod.loadTfjsModel(source, options);
  }
  const mod = (await import(backend.module)) as Record<string, unknown>;
  const name = backend.export ?? 'default';
  let fn = mod[name];
  // A CommonJS module imported as ESM puts module.exports on `default`.
  if (typeof fn !== 'function' && name !== 'default') {
    fn = (mod.default as Record<string, unknown> | undefined)?.[name];
  }
  if (typeof fn !== 'function') {
    throw internal(`loader module ${backend.module} has no function export "${name}"`);
  }
  return fn as ModelLoader;
}

/** Loads the described model with this worker's id (a threadId, or a pid in process isolation). */
export async function load(data: WorkerData, workerId: number): Promise<Model> {
  const { description, intraOpThreads } = data;
  const loader = await resolveLoader(description.backend);
  const model = await loader(description.source, description.options ?? {}, {
    threadId: workerId,
    intraOpThreads,
  });
  if (!model || typeof model.infer !== 'function' || typeof model.metadata !== 'function') {
    throw internal('the loader did not return a Model (an object with infer() and metadata())');
  }
  return model;
}

export type Loaded = { model: Model; error?: undefined } | { model?: undefined; error: unknown };

export async function runLoad(task: LoadTask, loaded: Loaded, threadId: number): Promise<LoadResult> {
  const { barrier, parties, timeoutMs } = task;
  let warmupError: unknown;
  if (task.warmup && loaded.model?.warmup) {
    try {
      await loaded.model.warmup();
    } catch (err) {
      warmupError = err;
    }
  }
  Atomics.add(barrier, 0, 1);
  Atomics.notify(barrier, 0);
  if (!loaded.model) return { ok: false, threadId, error: toWireError(loaded.error) };
  if (warmupError !== undefined) return { ok: false, threadId, error: toWireError(warmupError) };
  // Hold this thread until every thread has taken a load task, so that each one lands on a
  // different thread (a thread runs one task at a time).
  const end = Date.now() + timeoutMs;
  for (let seen = Atomics.load(barrier, 0); seen < parties; seen = Atomics.load(barrier, 0)) {
    const left = end - Date.now();
    if (left <= 0) {
      return {
        ok: false,
        threadId,
        error: toWireError(
          internal(`only ${seen} of ${parties} worker threads started within ${timeoutMs} ms`),
        ),
      };
    }
    Atomics.wait(barrier, 0, seen, left);
  }
  return { ok: true, threadId, metadata: loaded.model.metadata() };
}

/** Only primitive annotations cross back: anything else could fail to clone and kill the thread. */
function plainContext(context: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(context)) {
    if (v === null || ['string', 'number', 'boolean', 'bigint'].includes(typeof v)) out[k] = v;
  }
  return out;
}

export async function runInfer(
  task: InferTask,
  model: Model,
  threadId: number,
): Promise<{ result: InferResult; transferList: ArrayBuffer[] }> {
  const context = {};
  let result: InferResult;
  let transferList: ArrayBuffer[] = [];
  const t0 = performance.now();
  try {
    throwIfExpired(task.options);
    const outputs = await model.infer(task.inputs, { ...task.options, context });
    const computeMs = performance.now() - t0;
    const prepared = prepareTransfer(outputs);
    transferList = prepared.transferList;
    result = { ok: true, outputs: prepared.tensors, threadId, computeMs, context: plainContext(context) };
  } catch (err) {
    result = { ok: false, threadId, error: toWireError(err) };
  }
  return { result, transferList };
}
