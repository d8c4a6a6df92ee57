import { readdir } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  deadlineExceeded,
  type InferOptions,
  invalidArgument,
  isServeError,
  type Model,
  type ModelMetadata,
  notFound,
  raceExpiry,
  ServeError,
  type TensorInfo,
  type Tensors,
  throwIfExpired,
  toServeError,
  unavailable,
} from '@mlserve/core';
import * as tf from '@tensorflow/tfjs';
import {
  type ActiveBackend,
  activateBackend,
  type BackendOptions,
  ensureBackend,
  type TfjsBackendName,
} from './backends.js';
import { checkDims, coreType, fromTf, type TfDtype, toTfData } from './convert.js';
import { fileSystemHandler } from './fs-io.js';
import { loadSavedModel, type SavedModelHandle } from './saved-model.js';

/** What a model file holds; `auto` reads it from model.json. */
export type TfjsModelFormat = 'auto' | 'graph' | 'layers' | 'saved_model';

/** Options of {@link loadTfjsModel}. */
export interface TfjsModelOptions extends BackendOptions {
  /** The name the model is served under (default: `tfjs-model`). */
  name?: string;
  /** The version it reports (default `1`). */
  version?: string;
  /** Which tfjs backend runs it (default `auto`: tfjs-node-gpu, tfjs-node, wasm, then cpu). */
  backend?: TfjsBackendName;
  /** Graph model, layers model or SavedModel; `auto` (default) decides from the files. */
  format?: TfjsModelFormat;
  /** SavedModel only: the MetaGraph tags (default `['serve']`). */
  tags?: string[];
  /** SavedModel only: the signature to serve (default `serving_default`). */
  signature?: string;
  /** URL sources only: passed to `fetch` (headers for a private bucket, say). */
  requestInit?: RequestInit;
  /** URL sources only: the fetch to use (default the global one). */
  fetchFunc?: typeof fetch;
  /** Run one inference with zeros after loading (default false), so the first request is not slow. */
  warmup?: boolean;
  /**
   * Graph models that declare no output shapes or dtypes are run once on zeros at load time to
   * learn them, so metadata() is exact (default true; false keeps what the graph declares).
   */
  probe?: boolean;
}

type Runner = {
  kind: 'graph' | 'layers' | 'saved_model';
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  /** Whether each input's shape is known (graph models may leave it out). */
  known: boolean[];
  /** Whether output dtypes/shapes are missing and should be learned from a probe run. */
  probe?: boolean;
  run(feeds: tf.Tensor[], outputs: string[]): Promise<tf.Tensor[]>;
  dispose(): void;
};

// tfjs has one engine (one active backend) per process, and graph models run async: one request at
// a time, process-wide, so a model never runs while another has switched the backend under it.
let chain: Promise<unknown> = Promise.resolve();
function exclusive<T>(fn: () => Promise<T>): Promise<T> {
  const run = chain.then(fn, fn);
  chain = run.catch(() => undefined);
  return run;
}

function dimsOf(shape: readonly (number | null | undefined)[] | undefined): number[] {
  return (shape ?? [-1]).map((d) => (d === null || d === undefined || d < 0 ? -1 : d));
}

function info(
  name: string,
  dtype: string | undefined,
  shape: readonly (number | null)[] | undefined,
): TensorInfo {
  const dims = dimsOf(shape);
  return { name, type: coreType(dtype), dims, batched: dims[0] === -1 };
}

function isUrl(source: string | URL): boolean {
  const s = String(source);
  return /^https?:\/\//i.test(s);
}

function describe(source: unknown): string {
  if (typeof source === 'string' || source instanceof URL) return String(source);
  return 'in-memory artifacts';
}

function isLayersArtifacts(artifacts: tf.io.ModelArtifacts): boolean {
  if (artifacts.format === 'layers-model') return true;
  if (artifacts.format === 'graph-model') return false;
  const topo = artifacts.modelTopology as Record<string, unknown> | undefined;
  if (!topo || topo instanceof ArrayBuffer) return false;
  return 'model_config' in topo || 'class_name' in topo || 'config' in topo;
}

async function readArtifacts(
  source: string | URL | tf.io.ModelArtifacts,
  options: TfjsModelOptions,
): Promise<tf.io.ModelArtifacts | { savedModel: string }> {
  if (typeof source === 'object' && !(source instanceof URL)) {
    if (!source || typeof source !== 'object' || !('modelTopology' in source)) {
      throw invalidArgument('in-memory artifacts need a modelTopology');
    }
    return source;
  }
  if (isUrl(source)) {
    const handler = tf.io.http(String(source), {
      requestInit: options.requestInit,
      fetchFunc: options.fetchFunc,
    });
    try {
      return await (handler.load as () => Promise<tf.io.ModelArtifacts>)();
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (/status code 404/.test(msg))
        throw notFound(`TF.js model not found at ${String(source)}`, { cause: err });
      throw unavailable(`cannot fetch TF.js model from ${String(source)}: ${msg}`, { cause: err });
    }
  }
  const s = String(source);
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(s) && !s.startsWith('file://')) {
    throw invalidArgument(`unsupported model URL scheme: ${s}`);
  }
  const path = s.startsWith('file://') ? fileURLToPath(s) : resolve(s);
  if (options.format === 'saved_model') return { savedModel: path };
  if (options.format === undefined || options.format === 'auto') {
    const entries = await readdir(path).catch(() => [] as string[]);
    if (entries.includes('saved_model.pb') && !entries.includes('model.json')) return { savedModel: path };
  }
  return (fileSystemHandler(path, tf.io).load as () => Promise<tf.io.ModelArtifacts>)();
}

function graphRunner(model: tf.GraphModel): Runner {
  const known: boolean[] = [];
  const inputs = model.inputs.map((i) => {
    known.push(i.shape !== undefined);
    return info(i.name, i.dtype, i.shape);
  });
  const outputs = model.outputs.map((o) => info(o.name, o.dtype, o.shape));
  // Graph models often carry no output shapes or dtypes; the model learns them from a probe run.
  const probe = model.outputs.some((o) => o.shape === undefined || o.dtype === undefined);
  let useAsync = false;
  return {
    kind: 'graph',
    inputs,
    outputs,
    known,
    probe,
    async run(feeds, outs) {
      const map: tf.NamedTensorMap = {};
      inputs.forEach((inp, i) => {
        map[inp.name] = feeds[i] as tf.Tensor;
      });
      if (!useAsync) {
        try {
          const r = tf.tidy(() => model.execute(map, outs));
          return Array.isArray(r) ? r : [r];
        } catch (err) {
          // Control flow or dynamic shapes (While, NonMaxSuppression, Where): tfjs asks for executeAsync.
          if (!(err instanceof Error) || !/executeAsync/.test(err.message)) throw err;
          useAsync = true;
        }
      }
      const r = await model.executeAsync(map, outs);
      return Array.isArray(r) ? r : [r];
    },
    dispose: () => model.dispose(),
  };
}

function layersRunner(model: tf.LayersModel): Runner {
  const known: boolean[] = [];
  const inputs = model.inputs.map((i, n) => {
    known.push(true);
    return info(i.sourceLayer?.name ?? model.inputNames[n] ?? i.name, i.dtype, i.shape);
  });
  // Outputs are named by their layer (`probabilities`), not tfjs's `probabilities/probabilities_1`,
  // unless one layer has several outputs.
  const layerNames = model.outputs.map((o) => o.sourceLayer?.name ?? o.name);
  const byLayer =
    layerNames.length === model.outputs.length && new Set(layerNames).size === layerNames.length;
  const outputs = model.outputs.map((o, n) =>
    info((byLayer ? layerNames[n] : model.outputNames[n]) ?? o.name, o.dtype, o.shape),
  );
  return {
    kind: 'layers',
    inputs,
    outputs,
    known,
    async run(feeds, outs) {
      const all = tf.tidy(() => {
        const r = model.predict(feeds.length === 1 ? (feeds[0] as tf.Tensor) : feeds);
        return Array.isArray(r) ? r : [r];
      });
      const picked: tf.Tensor[] = [];
      for (const name of outs) {
        const idx = outputs.findIndex((o) => o.name === name);
        picked.push(all[idx] as tf.Tensor);
      }
      for (const t of all) if (!picked.includes(t)) t.dispose();
      return picked;
    },
    dispose: () => model.dispose(),
  };
}

function savedModelRunner(handle: SavedModelHandle): Runner {
  return {
    kind: 'saved_model',
    inputs: handle.inputs,
    outputs: handle.outputs,
    known: handle.inputs.map(() => true),
    run: (feeds, outs) => handle.run(feeds, outs),
    dispose: () => handle.dispose(),
  };
}

function platformOf(kind: Runner['kind']): string {
  if (kind === 'saved_model') return 'tensorflow_savedmodel';
  return kind === 'graph' ? 'tfjs_graph_model' : 'tfjs_layers_model';
}

/**
 * Loads a TensorFlow.js model and serves it as a {@link Model}.
 *
 * `source` is a local directory or `model.json` path (read with our own `fs` IO handler, so no
 * tfjs-node is needed), an `http(s)://` URL to a `model.json`, in-memory `tf.io.ModelArtifacts`, or a
 * TensorFlow SavedModel directory (needs tfjs-node). Graph and layers models are told apart from
 * model.json. The backend is `auto` by default: tfjs-node-gpu, tfjs-node, wasm, cpu, whichever is
 * installed first; a backend asked for by name that is missing fails with UNAVAILABLE naming the
 * package to install.
 *
 * Inputs of the model's dtype pass as is; int64, float64 and other numeric inputs are converted
 * only when every value fits (else INVALID_ARGUMENT). Every tf.Tensor is disposed after each call.
 *
 * @example
 * ```ts
 * import { loadTfjsModel } from '@mlserve/backend-tfjs';
 * const model = await loadTfjsModel('models/mnist', { name: 'mnist', backend: 'wasm' });
 * const { probabilities } = await model.infer({ image: { type: 'float32', dims: [1, 1, 28, 28], data: pixels } });
 * ```
 */
export async function loadTfjsModel(
  source: string | URL | tf.io.ModelArtifacts,
  options: TfjsModelOptions = {},
): Promise<Model> {
  const { name = 'tfjs-model', version = '1', backend: requested = 'auto', format = 'auto' } = options;
  if (typeof name !== 'string' || name.length === 0)
    throw invalidArgument('loadTfjsModel: options.name must be a non-empty string');
  if (!['auto', 'graph', 'layers', 'saved_model'].includes(format)) {
    throw invalidArgument(
      `loadTfjsModel: options.format must be auto, graph, layers or saved_model, got ${String(format)}`,
    );
  }
  if (source === null || source === undefined || (typeof source === 'string' && source.length === 0)) {
    throw invalidArgument('a model source (path, URL or artifacts) is required');
  }

  const { active, runner } = await exclusive(async () => {
    const active: ActiveBackend = await activateBackend(requested, options);
    const loaded = await readArtifacts(source, options);
    let runner: Runner;
    try {
      if ('savedModel' in loaded) {
        runner = savedModelRunner(
          await loadSavedModel(active, loaded.savedModel, options.tags, options.signature),
        );
      } else {
        const layers = format === 'layers' || (format !== 'graph' && isLayersArtifacts(loaded));
        const handler = tf.io.fromMemory(loaded);
        runner = layers
          ? layersRunner(await tf.loadLayersModel(handler))
          : graphRunner(await tf.loadGraphModel(handler));
      }
    } catch (err) {
      if (isServeError(err)) throw err;
      throw invalidArgument(
        `cannot load TF.js model from ${describe(source)}: ${(err as Error)?.message ?? err}`,
        {
          cause: err,
        },
      );
    }
    return { active, runner };
  });

  const backendLabel = `tfjs/${active.name}`;
  const allBatched = runner.inputs.length > 0 && runner.inputs.every((i) => i.batched);
  const meta: ModelMetadata = {
    name,
    version,
    platform: platformOf(runner.kind),
    backend: backendLabel,
    inputs: runner.inputs,
    outputs: runner.outputs,
    maxBatchSize: allBatched ? 2 ** 31 - 1 : 0,
    concurrency: 1,
    extra: { backendPackage: active.package, format: runner.kind },
  };
  const outputNames = runner.outputs.map((o) => o.name);
  const counters = { inferences: 0, failures: 0, computeMs: 0 };
  let disposed: Promise<void> | undefined;

  function toFeeds(inputs: Tensors): tf.Tensor[] {
    if (typeof inputs !== 'object' || inputs === null)
      throw invalidArgument('inputs must be an object of tensors');
    for (const key of Object.keys(inputs)) {
      if (!runner.inputs.some((i) => i.name === key)) {
        const known = runner.inputs.map((i) => `"${i.name}"`).join(', ');
        throw invalidArgument(`unknown input "${key}" for model "${name}" (inputs: ${known})`);
      }
    }
    const feeds: tf.Tensor[] = [];
    try {
      runner.inputs.forEach((inp, i) => {
        const t = inputs[inp.name];
        if (!t) throw invalidArgument(`missing input "${inp.name}"`);
        if (typeof t !== 'object' || !Array.isArray(t.dims) || t.data === undefined) {
          throw invalidArgument(`input "${inp.name}" is not a tensor`);
        }
        checkDims(inp, t, runner.known[i] ?? false);
        let count = 1;
        for (const d of t.dims) {
          if (!Number.isInteger(d) || d < 0)
            throw invalidArgument(`input "${inp.name}": bad dims [${t.dims.join(',')}]`);
          count *= d;
        }
        if ((t.data as { length: number }).length !== count) {
          throw invalidArgument(
            `input "${inp.name}": ${(t.data as { length: number }).length} elements do not fill dims [${t.dims.join(',')}]`,
          );
        }
        const data = toTfData(inp.name, t, inp.type as TfDtype);
        feeds.push(tf.tensor(data as Float32Array, [...t.dims], inp.type as TfDtype));
      });
    } catch (err) {
      for (const f of feeds) f.dispose();
      throw err;
    }
    return feeds;
  }

  async function run(inputs: Tensors, options: InferOptions): Promise<Tensors> {
    throwIfExpired(options);
    if (disposed) throw unavailable(`model "${name}" is disposed`);
    const wanted = options.outputs ? [...options.outputs] : outputNames;
    for (const o of wanted) {
      if (!outputNames.includes(o)) {
        throw invalidArgument(
          `unknown output "${o}" for model "${name}" (outputs: ${outputNames.join(', ')})`,
        );
      }
    }
    await ensureBackend(active.name);
    const feeds = toFeeds(inputs);
    let results: tf.Tensor[] = [];
    const started = performance.now();
    try {
      results = await runner.run(feeds, wanted);
      const out: Tensors = {};
      for (let i = 0; i < wanted.length; i++)
        out[wanted[i] as string] = await fromTf(results[i] as tf.Tensor);
      return out;
    } catch (err) {
      if (isServeError(err)) throw err;
      // tfjs throws plain Errors for shape mismatches inside the graph: the request was wrong.
      throw new ServeError(
        'INVALID_ARGUMENT',
        `model "${name}" could not run these inputs: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
    } finally {
      const ms = performance.now() - started;
      counters.computeMs += ms;
      if (options.context) {
        options.context.computeMs = ms;
        options.context.backend = backendLabel;
      }
      for (const f of feeds) f.dispose();
      for (const r of results) r.dispose();
    }
  }

  /** Runs zeros through the model once and records the outputs' real dtypes and ranks. */
  async function probeOutputs(): Promise<void> {
    if (meta.inputs.some((i) => i.type === 'string' || !runner.known[meta.inputs.indexOf(i)])) return;
    let outs: Tensors;
    try {
      outs = await exclusive(() => run(zeros(), {}));
    } catch {
      return; // The model needs real inputs to run (a lookup table, say); keep what the graph declares.
    }
    for (const o of meta.outputs) {
      const t = outs[o.name];
      if (!t) continue;
      o.type = t.type;
      // One row in, one row out: dim 0 follows the batch. Anything else (Where's variable count) is
      // not split by row, so the model must not be batched.
      const rowwise = allBatched && t.dims[0] === 1;
      o.dims = t.dims.map((d, i) => (i === 0 && (rowwise || d === 0) ? -1 : d));
      o.batched = rowwise;
      if (!rowwise) meta.maxBatchSize = 0;
    }
    meta.extra = { ...meta.extra, outputsProbed: true };
  }

  function zeros(): Tensors {
    const inputs: Tensors = {};
    for (const inp of meta.inputs) {
      const dims = inp.dims.map((d) => (d < 0 ? 1 : d));
      const count = dims.reduce((a, b) => a * b, 1);
      const data =
        inp.type === 'string'
          ? Array.from({ length: count }, () => '')
          : inp.type === 'int32'
            ? new Int32Array(count)
            : inp.type === 'bool'
              ? new Uint8Array(count)
              : new Float32Array(count);
      inputs[inp.name] = { type: inp.type, dims, data } as Tensors[string];
    }
    return inputs;
  }

  const model: Model = {
    name,
    version,
    metadata: () => structuredClone(meta),
    async infer(inputs: Tensors, opts: InferOptions = {}): Promise<Tensors> {
      if (disposed) throw unavailable(`model "${name}" is disposed`);
      throwIfExpired(opts);
      try {
        const out = await raceExpiry(
          exclusive(() => run(inputs, opts)),
          opts,
        );
        if (opts.deadline !== undefined && Date.now() > opts.deadline) {
          throw deadlineExceeded('the request deadline passed while it ran');
        }
        counters.inferences++;
        return out;
      } catch (err) {
        counters.failures++;
        throw toServeError(err);
      }
    },
    async warmup() {
      await model.infer(zeros());
    },
    dispose() {
      disposed ??= exclusive(async () => {
        runner.dispose();
      });
      return disposed;
    },
    isReady: () => !disposed,
    stats: () => ({
      'backend-tfjs': { ...counters, backend: backendLabel, engineTensors: tf.memory().numTensors },
    }),
  };
  if (runner.probe && options.probe !== false) await probeOutputs();
  if (options.warmup) await model.warmup?.();
  return model;
}
