import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResourceLimits } from 'node:worker_threads';
import {
  assertTensor,
  checkSignature,
  type InferOptions,
  invalidArgument,
  type Model,
  type ModelMetadata,
  raceExpiry,
  renamedOption,
  ServeError,
  type Signature,
  type Tensors,
  type TensorTypes,
  throwIfExpired,
  toServeError,
  unavailable,
} from '@mlserve/core';
import { Piscina } from 'piscina';
import { acquire, drain, gate, type PoolSlot } from './budget.js';
import { ProcessPool } from './processes.js';
import {
  fromWireError,
  type InferResult,
  type InferTask,
  type LoadResult,
  type ModelDescription,
  type WireOptions,
  type WorkerData,
} from './protocol.js';
import { prepareTransfer } from './transfer.js';

/** Options of {@link workerPool}. `I` and `O` are the declared {@link signature}'s. */
export interface WorkerPoolOptions<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes>
  extends ModelDescription {
  /**
   * The model's inputs and outputs by name and element type (`{ inputs: { image: 'float32' },
   * outputs: { logits: 'float32' } }`): types the pool as `Model<I, O>`, checked against the loaded
   * model's metadata once every worker has loaded it (INVALID_ARGUMENT naming the first difference;
   * the pool is disposed). Without it the pool is an untyped `Model`.
   */
  signature?: Signature<I, O>;
  /** Worker threads, each with its own copy of the model. Default: the compute budget (the cores). */
  threads?: number;
  /** Intra-op threads each worker's backend may use. Default: budget / threads, at least 1. */
  intraOpThreads?: number;
  /** Requests that may wait for a thread; beyond that RESOURCE_EXHAUSTED. Default 1024. */
  maxQueue?: number;
  /** HTTP status of the RESOURCE_EXHAUSTED rejection: 429 (default) or 503. */
  rejectStatus?: 429 | 503;
  /** Threads kept loaded even when idle. Default `threads` (all of them). */
  minThreads?: number;
  /** How long a thread above `minThreads` may idle before it exits, ms. Default: never. */
  idleTimeoutMs?: number;
  /** @deprecated use `idleTimeoutMs` */
  idleTimeout?: number;
  /** Copy input arrays instead of moving them to the worker (the caller keeps its data). Default false. */
  copyInputs?: boolean;
  /** Heap limits per worker (`maxOldGenerationSizeMb`, ...): a worker over them fails its request and is replaced. */
  resourceLimits?: ResourceLimits;
  /** How long every thread may take to load the model, ms. Default 120000. */
  loadTimeoutMs?: number;
  /**
   * How long the pool remembers which worker a sequence (`options.sequence`) runs on after its
   * last request, ms. Default 600000. Keep it at least the model's own idle timeout: a sequence
   * the pool forgot goes to any worker, where its state is not.
   */
  sequenceIdleTimeoutMs?: number;
  /**
   * `'thread'` (default): Piscina worker threads, tensors moved without copies. `'process'`: child
   * processes, so a native crash in the backend fails one request instead of the whole server, at
   * the cost of a copy of every tensor each way.
   */
  isolation?: 'thread' | 'process';
}

/** What runs the tasks: Piscina threads or child processes. @internal */
interface Engine {
  metadata: ModelMetadata;
  /** Runs a task; `pin` (a worker id) keeps it on that worker while the worker lives. */
  run(task: InferTask, transferList: ArrayBuffer[], pin?: number): Promise<InferResult>;
  /** The ids of the workers that can take tasks now (threadIds, or pids). */
  ids(): number[];
  destroy(): Promise<void>;
  utilization(): number;
  deaths(): number;
  /** Workers alive now. */
  live(): number;
  /** Runs the model's warmup() once in every worker. */
  warmup(): Promise<void>;
}

/** Counters of a pool, under `stats().workers`. */
export interface WorkerPoolStats {
  threads: number;
  intraOpThreads: number;
  running: number;
  queued: number;
  completed: number;
  failed: number;
  /** Worker threads that died (heap limit, exit) and were replaced. */
  workerDeaths: number;
  /** Workers alive now (below `threads` after idle ones exited, see `idleTimeoutMs`). */
  liveWorkers: number;
  /** Piscina's utilization: the share of thread time spent running tasks. */
  utilization: number;
  /** Sequences the pool routes to one worker each (`options.sequence`), by worker id. */
  sequences: { open: number; byWorker: Record<string, number> };
}

type PiscinaLoadBalancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']>;

/** A sequence the pool keeps on one worker. */
interface Pin {
  worker: number;
  /** The sequence's last request: its requests go to the worker one at a time, in order. */
  tail: Promise<unknown>;
  pending: number;
  lastUsed: number;
}

/**
 * Piscina's balancer with sticky tasks: a task that names a worker (a sequence's) runs there once it
 * is free, or anywhere if that worker is gone; others go to an idle worker.
 */
function stickyBalancer(
  task: Parameters<PiscinaLoadBalancer>[0],
  workers: Parameters<PiscinaLoadBalancer>[1],
): ReturnType<PiscinaLoadBalancer> {
  const pin = (task[Piscina.queueOptionsSymbol as keyof typeof task] as { worker?: number } | null)?.worker;
  if (pin !== undefined) {
    const w = workers.find((x) => x.id === pin && !x.terminating && !x.destroyed);
    if (w !== undefined) return w.currentUsage === 0 ? w : null;
  }
  for (const w of workers) if (w.currentUsage === 0 && !w.terminating) return w;
  return null;
}

function positiveInt(name: string, v: unknown): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || (v as number) < 1)) {
    throw new TypeError(`workerPool: options.${name} must be a positive integer`);
  }
}

/** dist/worker.js (or child.js), next to the built index, or (when running from source) the package's dist. */
export function workerFile(file: 'worker.js' | 'child.js' = 'worker.js'): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, file), join(here, '..', 'dist', file)];
  for (const file of candidates) if (existsSync(file)) return file;
  throw unavailable(
    `@mlserve/workers: the worker script is missing (looked for ${candidates.join(', ')}); build the package ` +
      'first: npx turbo run build --filter=@mlserve/workers...',
  );
}

function describeBackend(backend: ModelDescription['backend']): string {
  return typeof backend === 'string' ? backend : backend.module;
}

function checkDescription(options: WorkerPoolOptions): ModelDescription {
  const { backend, source } = options;
  const okBackend =
    backend === 'onnx' ||
    backend === 'tfjs' ||
    (typeof backend === 'object' &&
      backend !== null &&
      typeof backend.module === 'string' &&
      backend.module.length > 0 &&
      (backend.export === undefined || typeof backend.export === 'string'));
  if (!okBackend) {
    throw invalidArgument(
      "workerPool: options.backend must be 'onnx', 'tfjs' or { module: string, export?: string }",
    );
  }
  if (!(typeof source === 'string' || source instanceof Uint8Array)) {
    throw invalidArgument('workerPool: options.source must be a path, a URL string or bytes');
  }
  let resolved = backend;
  if (typeof backend === 'object' && (backend.module.startsWith('.') || backend.module.startsWith('/'))) {
    // Paths are resolved here, against the current directory, and sent as file URLs.
    const abs = backend.module.startsWith('/') ? backend.module : join(process.cwd(), backend.module);
    resolved = { ...backend, module: new URL(`file://${abs}`).href };
  }
  const description: ModelDescription = { backend: resolved, source };
  if (options.options !== undefined) {
    try {
      description.options = structuredClone(options.options);
    } catch (err) {
      throw invalidArgument(
        `workerPool: options.options must be structured-cloneable (no functions): ${toServeError(err).message}`,
      );
    }
  }
  return description;
}

function isWorkerDeath(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  return (
    e?.code === 'ERR_WORKER_OUT_OF_MEMORY' ||
    (typeof e?.message === 'string' && e.message.startsWith('worker exited'))
  );
}

function mapRunError(err: unknown, name: string, disposed: boolean): ServeError {
  if (err instanceof ServeError) return err;
  const e = err as { code?: string; message?: string; name?: string } | undefined;
  if (e?.code === 'ERR_WORKER_OUT_OF_MEMORY') {
    return unavailable(
      `model "${name}": the worker thread ran out of memory (resourceLimits) and was replaced`,
      {
        cause: err,
      },
    );
  }
  if (disposed || e?.message === 'Terminating worker thread') {
    return unavailable(`model "${name}" is disposed`, { cause: err });
  }
  if (typeof e?.message === 'string' && e.message.startsWith('worker exited')) {
    return unavailable(`model "${name}": the worker thread exited (${e.message}) and was replaced`, {
      cause: err,
    });
  }
  return toServeError(err);
}

async function startThreads(
  data: WorkerData,
  settings: {
    threads: number;
    minThreads: number;
    loadTimeoutMs: number;
    idleTimeoutMs: number;
    options: WorkerPoolOptions;
  },
): Promise<Engine> {
  const { threads, minThreads, loadTimeoutMs, idleTimeoutMs, options } = settings;
  const { description } = data;
  let deaths = 0;
  const piscina = new Piscina({
    filename: workerFile(),
    minThreads,
    maxThreads: threads,
    concurrentTasksPerWorker: 1,
    idleTimeout: idleTimeoutMs,
    workerData: data,
    loadBalancer: stickyBalancer,
    ...(options.resourceLimits ? { resourceLimits: options.resourceLimits } : {}),
  });
  // A worker that dies between tasks is replaced by Piscina; count it instead of crashing the process.
  piscina.on('error', () => {
    deaths++;
  });

  // One load task per thread; each holds its thread until all have arrived, so all threads load.
  const barrier = new Int32Array(new SharedArrayBuffer(4));
  let loads: LoadResult[];
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the threads did not load the model within ${loadTimeoutMs} ms`)),
        loadTimeoutMs,
      );
    });
    const all = Promise.all(
      Array.from(
        { length: threads },
        () =>
          piscina.run({
            kind: 'load',
            barrier,
            parties: threads,
            timeoutMs: loadTimeoutMs,
          }) as Promise<LoadResult>,
      ),
    );
    all.catch(() => {});
    loads = await Promise.race([all, timeout]);
  } catch (err) {
    await piscina.destroy().catch(() => {});
    throw unavailable(
      `worker pool for ${describeBackend(description.backend)}: ${toServeError(err).message}`,
      { cause: err },
    );
  } finally {
    clearTimeout(timer);
  }
  const failed = loads.find((r) => !r.ok);
  if (failed && !failed.ok) {
    await piscina.destroy().catch(() => {});
    throw fromWireError(failed.error);
  }
  const ids = new Set(loads.map((r) => r.threadId));
  const first = loads[0];
  if (ids.size !== threads || !first?.ok) {
    await piscina.destroy().catch(() => {});
    throw new ServeError('INTERNAL', `worker pool: ${ids.size} of ${threads} threads loaded the model`);
  }
  return {
    metadata: first.metadata,
    run: (task, transferList, pin) =>
      (
        piscina.run(
          pin === undefined ? task : Object.assign(task, { [Piscina.queueOptionsSymbol]: { worker: pin } }),
          { transferList },
        ) as Promise<InferResult>
      ).catch((err: unknown) => {
        if (isWorkerDeath(err)) deaths++;
        throw err;
      }),
    ids: () => piscina.threads.map((t) => t.threadId),
    destroy: () => piscina.destroy(),
    utilization: () => piscina.utilization,
    deaths: () => deaths,
    live: () => piscina.threads.length,
    async warmup() {
      const warm = new Int32Array(new SharedArrayBuffer(4));
      const results = await Promise.all(
        Array.from(
          { length: piscina.threads.length },
          () =>
            piscina.run({
              kind: 'load',
              barrier: warm,
              parties: piscina.threads.length,
              timeoutMs: loadTimeoutMs,
              warmup: true,
            }) as Promise<LoadResult>,
        ),
      );
      const failed = results.find((r) => !r.ok);
      if (failed && !failed.ok) throw fromWireError(failed.error);
    },
  };
}

async function startProcesses(
  data: WorkerData,
  processes: number,
  maxOldGenerationSizeMb: number | undefined,
  loadTimeoutMs: number,
): Promise<Engine> {
  const pool = new ProcessPool({
    file: workerFile('child.js'),
    processes,
    data,
    maxOldGenerationSizeMb,
    loadTimeoutMs,
  });
  const metadata = await pool.start();
  return {
    metadata,
    run: (task, _transferList, pin) => pool.run(task, pin),
    ids: () => pool.ids(),
    destroy: () => pool.destroy(),
    utilization: () => pool.utilization,
    deaths: () => pool.deaths,
    live: () => pool.live,
    warmup: () => pool.warmup(),
  };
}

/**
 * Serves a model from Piscina worker threads, so inference never blocks the event loop: health
 * checks, cache hits and other models keep answering while the workers compute. Resolves once every
 * thread has loaded the model.
 *
 * A Model cannot cross threads, so the pool is built from a description each worker loads:
 * `'onnx'` (`loadOnnxModel` of @mlserve/backend-onnx), `'tfjs'` (`loadTfjsModel` of
 * @mlserve/backend-tfjs), or `{ module, export }`, a module whose export is a
 * `(source, options, { threadId, intraOpThreads }) => Promise<Model>` loader.
 *
 * Input arrays that span their whole buffer are moved to the worker (the caller's array is
 * detached afterwards) unless `copyInputs` is set; views into larger buffers are copied.
 * Outputs come back moved, never copied.
 *
 * @example
 * ```ts
 * import { workerPool } from '@mlserve/workers';
 * const model = await workerPool({ backend: 'onnx', source: './models/mobilenetv2.onnx', threads: 2 });
 * const { output } = await model.infer({ input: { type: 'float32', dims: [1, 3, 224, 224], data } });
 * await model.dispose();
 * ```
 */
export async function workerPool<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes>(
  options: WorkerPoolOptions<I, O>,
): Promise<Model<I, O>> {
  const pool = await startPool(options);
  if (options.signature !== undefined) {
    try {
      checkSignature(pool.metadata(), options.signature);
    } catch (err) {
      await pool.dispose();
      throw err;
    }
  }
  return pool as unknown as Model<I, O>;
}

async function startPool(options: WorkerPoolOptions): Promise<Model> {
  if (typeof options !== 'object' || options === null)
    throw new TypeError('workerPool: options must be an object');
  const description = checkDescription(options);
  for (const k of ['threads', 'intraOpThreads', 'minThreads', 'loadTimeoutMs'] as const)
    positiveInt(k, options[k]);
  if (options.maxQueue !== undefined && !(Number.isSafeInteger(options.maxQueue) && options.maxQueue >= 0)) {
    throw new TypeError('workerPool: options.maxQueue must be a non-negative integer');
  }
  if (options.sequenceIdleTimeoutMs !== undefined && !(options.sequenceIdleTimeoutMs > 0)) {
    throw new TypeError(
      'workerPool: options.sequenceIdleTimeoutMs must be a positive number of milliseconds',
    );
  }
  for (const k of ['idleTimeoutMs', 'idleTimeout'] as const) {
    if (options[k] !== undefined && !((options[k] as number) >= 0)) {
      throw new TypeError(`workerPool: options.${k} must be a non-negative number of milliseconds`);
    }
  }
  const idleTimeoutMs =
    renamedOption(options, 'idleTimeoutMs', 'idleTimeout', 'workerPool') ?? Number.POSITIVE_INFINITY;
  const budget = gate().total;
  const threads = options.threads ?? budget;
  const fromOptions = description.options?.intraOpNumThreads;
  const intraOpThreads =
    options.intraOpThreads ??
    (typeof fromOptions === 'number' && fromOptions >= 1
      ? fromOptions
      : Math.max(1, Math.floor(budget / threads)));
  const minThreads = Math.min(options.minThreads ?? threads, threads);
  const maxQueue = options.maxQueue ?? 1024;
  const rejectStatus = options.rejectStatus ?? 429;
  const copyInputs = options.copyInputs ?? false;
  const loadTimeoutMs = options.loadTimeoutMs ?? 120_000;
  if (options.isolation !== undefined && options.isolation !== 'thread' && options.isolation !== 'process') {
    throw new TypeError("workerPool: options.isolation must be 'thread' or 'process'");
  }

  const data: WorkerData = { description, intraOpThreads };
  const engine =
    options.isolation === 'process'
      ? await startProcesses(data, threads, options.resourceLimits?.maxOldGenerationSizeMb, loadTimeoutMs)
      : await startThreads(data, { threads, minThreads, loadTimeoutMs, idleTimeoutMs, options });
  const innerMeta = engine.metadata;
  const meta: ModelMetadata = {
    ...innerMeta,
    concurrency: threads,
    backend: `worker-pool(${innerMeta.backend ?? describeBackend(description.backend)})`,
  };
  const name = meta.name;
  const version = meta.version;

  const isolated = options.isolation === 'process';
  const slot: PoolSlot = { threads, cost: intraOpThreads, running: 0, queued: 0 };
  let completed = 0;
  let failures = 0;
  let disposing: Promise<void> | undefined;

  const overflow = () =>
    new ServeError(
      'RESOURCE_EXHAUSTED',
      `model "${name}": the worker pool's queue is full (${maxQueue} waiting)`,
      {
        status: rejectStatus,
      },
    );

  // Sticky routing: each open sequence runs on one worker, its requests one at a time in order.
  const sequenceIdleTimeoutMs = options.sequenceIdleTimeoutMs ?? 600_000;
  const pins = new Map<string, Pin>();
  let sweeper: ReturnType<typeof setInterval> | undefined;
  function sweepPins(): void {
    const limit = performance.now() - sequenceIdleTimeoutMs;
    for (const [k, p] of pins) if (p.pending === 0 && p.lastUsed <= limit) pins.delete(k);
    if (pins.size === 0 && sweeper !== undefined) {
      clearInterval(sweeper);
      sweeper = undefined;
    }
  }
  /** The worker with the fewest open sequences (a new sequence goes there). */
  function leastPinned(): number | undefined {
    const ids = engine.ids();
    if (ids.length === 0) return undefined;
    const counts = new Map(ids.map((id) => [id, 0]));
    for (const p of pins.values()) if (counts.has(p.worker)) counts.set(p.worker, counts.get(p.worker)! + 1);
    let best = ids[0]!;
    for (const id of ids) if (counts.get(id)! < counts.get(best)!) best = id;
    return best;
  }
  function pinnedInfer(inputs: Tensors, opts: InferOptions): Promise<Tensors> {
    const seq = opts.sequence!;
    const key = typeof seq.id === 'string' ? `s:${seq.id}` : `n:${String(seq.id)}`;
    let pin = pins.get(key);
    const live = engine.ids();
    if (pin === undefined || !live.includes(pin.worker)) {
      const worker = leastPinned();
      if (worker === undefined) return workerPoolRun(inputs, opts, undefined);
      const tail = pin?.tail ?? Promise.resolve();
      pin = { worker, tail, pending: pin?.pending ?? 0, lastUsed: performance.now() };
      pins.set(key, pin);
      if (sweeper === undefined) {
        sweeper = setInterval(sweepPins, Math.max(10, Math.min(sequenceIdleTimeoutMs / 4, 60_000)));
        sweeper.unref?.();
      }
    }
    const p = pin;
    p.pending++;
    const run = p.tail.then(() => workerPoolRun(inputs, opts, p.worker));
    p.tail = run.catch(() => {});
    return run.finally(() => {
      p.pending--;
      p.lastUsed = performance.now();
      if (seq.end && p.pending === 0 && pins.get(key) === p) pins.delete(key);
    });
  }

  function workerPoolInfer(inputs: Tensors, opts: InferOptions = {}): Promise<Tensors> {
    if (opts.sequence !== undefined && !disposing) return pinnedInfer(inputs, opts);
    return workerPoolRun(inputs, opts, undefined);
  }

  async function workerPoolRun(
    inputs: Tensors,
    opts: InferOptions,
    pin: number | undefined,
  ): Promise<Tensors> {
    if (disposing) throw unavailable(`model "${name}" is disposed`);
    throwIfExpired(opts);
    if (typeof inputs !== 'object' || inputs === null)
      throw invalidArgument('inputs must be an object of tensors');
    for (const [key, t] of Object.entries(inputs)) assertTensor(t, `input "${key}"`);
    const context = opts.context;
    const t0 = performance.now();
    const release = await acquire(slot, opts, maxQueue, overflow);
    if (context) context.queueMs = (context.queueMs ?? 0) + (performance.now() - t0);
    let run: Promise<InferResult>;
    try {
      // Child processes get a serialized copy anyway: nothing to move or detach there.
      const { tensors, transferList } = isolated
        ? { tensors: inputs, transferList: [] }
        : prepareTransfer(inputs, { copy: copyInputs });
      const wire: WireOptions = {};
      for (const k of ['deadline', 'outputs', 'parameters', 'id', 'priority', 'sequence'] as const) {
        if (opts[k] !== undefined) (wire as Record<string, unknown>)[k] = opts[k];
      }
      const task: InferTask = { kind: 'infer', inputs: tensors, options: wire };
      run = engine.run(task, transferList, pin);
    } catch (err) {
      release();
      failures++;
      throw mapRunError(err, name, disposing !== undefined);
    }
    // The thread stays busy until the worker answers, even when the caller stops waiting.
    run.then(release, release);
    let result: InferResult;
    try {
      result = await raceExpiry(run, opts);
    } catch (err) {
      failures++;
      throw mapRunError(err, name, disposing !== undefined);
    }
    if (!result.ok) {
      failures++;
      throw fromWireError(result.error);
    }
    completed++;
    if (context) {
      for (const [k, v] of Object.entries(result.context)) if (context[k] === undefined) context[k] = v;
      context.computeMs = result.computeMs;
      context.worker = result.threadId;
      context.backend = meta.backend;
    }
    return result.outputs;
  }

  return {
    name,
    version,
    metadata: () => structuredClone(meta),
    infer: workerPoolInfer,
    dispose() {
      disposing ??= (async () => {
        drain(slot, () => unavailable(`model "${name}" is disposed`));
        if (sweeper !== undefined) clearInterval(sweeper);
        pins.clear();
        await engine.destroy();
      })();
      return disposing;
    },
    isReady: () => !disposing,
    async warmup() {
      if (disposing) throw unavailable(`model "${name}" is disposed`);
      await engine.warmup();
    },
    stats: () => ({
      workers: {
        threads,
        intraOpThreads,
        running: slot.running,
        queued: slot.queued,
        completed,
        failed: failures,
        workerDeaths: engine.deaths(),
        liveWorkers: engine.live(),
        utilization: engine.utilization(),
        sequences: {
          open: pins.size,
          byWorker: [...pins.values()].reduce<Record<string, number>>((acc, p) => {
            acc[p.worker] = (acc[p.worker] ?? 0) + 1;
            return acc;
          }, {}),
        },
      } satisfies WorkerPoolStats,
    }),
  };
}
