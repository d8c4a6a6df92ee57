import {
  cancelledFrom,
  checkPositiveInteger,
  checkSignature,
  compileValidator,
  deadlineExceeded,
  expiredError,
  InFlight,
  type InferOptions,
  isServeError,
  type Model,
  type ModelMetadata,
  type RequestValidator,
  raceExpiry,
  type Signature,
  type Tensors,
  type TensorTypes,
  TYPED_ARRAY,
  unavailable,
} from '@mlserve/core';
import { loadError, runError } from './errors.js';
import { readSignature } from './metadata.js';
import type { ExecutionProvider, OrtModule, OrtSession, OrtSessionOptions } from './ort.js';
import { fromOrtOutputs, toFeeds } from './tensors.js';

/** Where a model comes from: a file path (Node), a URL, or the model's bytes. */
export type OnnxModelSource = string | URL | Uint8Array | ArrayBuffer;

/** Options of `loadOnnxModel` (both entries). `I` and `O` are the declared {@link signature}'s. */
export interface OnnxModelOptions<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes> {
  /** The model's name in registries and URLs. Default: the file name without `.onnx`; required for bytes. */
  name?: string;
  /**
   * The model's inputs and outputs by name and element type, `{ inputs: { image: 'float32' },
   * outputs: { logits: 'float32' } }`: types the model as `Model<I, O>` (so `infer` returns
   * `{ logits: Tensor<'float32'> }` and a misspelt name fails to compile) and is checked against the
   * session's metadata at load: INVALID_ARGUMENT naming the first difference (an input the model has
   * that the signature leaves out, a name it lacks, another element type). Outputs may be left out.
   */
  signature?: Signature<I, O>;
  /** The model's version. Default `'1'`. */
  version?: string;
  /**
   * Execution providers in priority order, passed to onnxruntime as they are (names such as `'cuda'`,
   * or config objects such as `{ name: 'cuda', deviceId: 1 }`). Default: CPU (`'cpu'` on Node,
   * `'wasm'` on the web entry). A provider that cannot load is an UNAVAILABLE error, never a silent
   * downgrade, unless {@link OnnxModelOptions.fallbackToCpu} is set.
   */
  executionProviders?: readonly ExecutionProvider[];
  /** When a requested provider cannot load, run on CPU instead of failing (metadata then says `cpu`). */
  fallbackToCpu?: boolean;
  /** Threads one run may use. onnxruntime's default is every core: set it where several models share a machine. */
  intraOpNumThreads?: number;
  /** Threads for running independent graph branches in parallel (only with `executionMode: 'parallel'`). */
  interOpNumThreads?: number;
  /** How much onnxruntime optimises the graph at load (default `'all'`). */
  graphOptimizationLevel?: 'disabled' | 'basic' | 'extended' | 'layout' | 'all';
  /**
   * Whether idle intra-op threads spin waiting for work (onnxruntime's default: yes). Spinning
   * lowers latency a little and burns CPU between requests; turn it off on shared machines.
   */
  spinning?: boolean;
  /** Fixes symbolic dims (`{ batch: 1 }`) so onnxruntime can plan memory for that shape. */
  freeDimensionOverrides?: Record<string, number>;
  /** Per input, the value padding may use along dynamic dims (0 for an attention mask). Fills `TensorInfo.padValue`. */
  padValues?: Record<string, number | bigint>;
  /** Raw onnxruntime session options for anything else; the options above win where both are set. */
  sessionOptions?: OrtSessionOptions;
}

/** What differs between onnxruntime-node and onnxruntime-web. */
export interface OrtRuntime {
  /** `onnxruntime-node` or `onnxruntime-web`. */
  name: string;
  ort: OrtModule;
  /** The runtime's version, for metadata. */
  version: string | undefined;
  /** The CPU provider's name (`cpu` / `wasm`): the default and the fallback. */
  cpu: string;
  /**
   * Whether `session.run` blocks the event loop while it computes (onnxruntime-node). Then no timer
   * can fire during a run, so the deadline is checked when the run returns instead of arming one
   * timer per request; an abort still rejects at once.
   */
  blockingRun: boolean;
  /** Provider names that run on the CPU and so never count as unavailable. */
  cpuNames: readonly string[];
  /** Turns a source into what `InferenceSession.create` takes; rejects with NOT_FOUND. */
  resolveSource(source: OnnxModelSource): Promise<string | Uint8Array>;
  /** Why a provider cannot load here, found before trying (undefined when it may). */
  checkProvider(name: string): string | undefined;
  /** Which requested provider a failed `create` blames, if any. */
  blame(providers: readonly string[], err: unknown): string | undefined;
  /** The UNAVAILABLE message for a provider that failed to load. */
  explain(name: string, err: unknown): string;
}

const sessions = new WeakMap<Model, OrtSession>();

/**
 * The onnxruntime session under a model loaded by `loadOnnxModel`, looking through middleware
 * (`model.inner` links); undefined for any other model. An escape hatch for what the Model API
 * does not cover (profiling, `endProfiling()`, comparing against raw `session.run`). Do not
 * release it yourself: `model.dispose()` does.
 *
 * @example
 * ```ts
 * const model = pipeline(await loadOnnxModel('mnist.onnx'), batching());
 * const session = onnxSession(model);
 * console.log(session?.inputNames);
 * ```
 */
export function onnxSession(model: Model): OrtSession | undefined {
  const seen = new Set<Model>();
  for (let m: Model | undefined = model; m && !seen.has(m); m = m.inner) {
    seen.add(m);
    const s = sessions.get(m);
    if (s) return s;
  }
  return undefined;
}

/** The stats an ONNX model reports under `stats().onnx`. */
export interface OnnxStats {
  /** Runs that returned outputs. */
  runs: number;
  /** Runs that failed (onnxruntime errors and rejected inputs). */
  failed: number;
  /** Requests rejected because they were cancelled or expired (before or during the run). */
  expired: number;
  /** Runs in progress now (including runs whose requests were cancelled but onnxruntime still computes). */
  inFlight: number;
}

function providerName(p: ExecutionProvider): string {
  return typeof p === 'string' ? p : p.name;
}

/** The model name a source suggests: its file name without `.onnx`. */
export function nameFromSource(source: OnnxModelSource): string | undefined {
  let path: string;
  if (typeof source === 'string') path = source;
  else if (source instanceof URL) path = source.pathname;
  else return undefined;
  path = path.replace(/[?#].*$/, '');
  const base = path.split(/[\\/]/).pop() ?? '';
  const name = base.replace(/\.onnx$/i, '');
  return name.length > 0 ? name : undefined;
}

/**
 * Checks a declared signature against a loaded model (disposing the model on a difference) and
 * types the model by it.
 * @internal
 */
export async function withSignature<I extends TensorTypes, O extends TensorTypes>(
  model: Model,
  signature: Signature<I, O> | undefined,
): Promise<Model<I, O>> {
  if (signature !== undefined) {
    try {
      checkSignature(model.metadata(), signature);
    } catch (err) {
      await model.dispose();
      throw err;
    }
  }
  return model as unknown as Model<I, O>;
}

/**
 * Loads a model on the given runtime: the implementation both entries share.
 * @internal
 */
export async function loadWithRuntime(
  runtime: OrtRuntime,
  source: OnnxModelSource,
  options: OnnxModelOptions = {},
): Promise<Model> {
  if (typeof options !== 'object' || options === null)
    throw new TypeError('loadOnnxModel: options must be an object');
  const name = options.name ?? nameFromSource(source);
  if (typeof name !== 'string' || name.length === 0) {
    throw new TypeError(
      'loadOnnxModel: options.name must be a non-empty string (it is required when the source is bytes)',
    );
  }
  const version = options.version ?? '1';
  if (typeof version !== 'string' || version.length === 0)
    throw new TypeError('loadOnnxModel: options.version must be a non-empty string');
  checkPositiveInteger(options.intraOpNumThreads, 'intraOpNumThreads', 'loadOnnxModel');
  checkPositiveInteger(options.interOpNumThreads, 'interOpNumThreads', 'loadOnnxModel');
  const requested = options.executionProviders ?? options.sessionOptions?.executionProviders ?? [runtime.cpu];
  if (!Array.isArray(requested) || requested.length === 0) {
    throw new TypeError('loadOnnxModel: options.executionProviders must be a non-empty array');
  }
  for (const p of requested) {
    const n = typeof p === 'string' ? p : (p as { name?: unknown } | null)?.name;
    if (typeof n !== 'string' || n.length === 0) {
      throw new TypeError(
        'loadOnnxModel: options.executionProviders entries must be provider names or objects with a name',
      );
    }
  }

  const sessionOptions: OrtSessionOptions = { logSeverityLevel: 4, ...options.sessionOptions };
  if (options.intraOpNumThreads !== undefined) sessionOptions.intraOpNumThreads = options.intraOpNumThreads;
  if (options.interOpNumThreads !== undefined) sessionOptions.interOpNumThreads = options.interOpNumThreads;
  if (options.graphOptimizationLevel !== undefined)
    sessionOptions.graphOptimizationLevel = options.graphOptimizationLevel;
  if (options.freeDimensionOverrides !== undefined) {
    sessionOptions.freeDimensionOverrides = {
      ...sessionOptions.freeDimensionOverrides,
      ...options.freeDimensionOverrides,
    };
  }
  if (options.spinning !== undefined) {
    const allow = options.spinning ? '1' : '0';
    sessionOptions.extra = {
      ...sessionOptions.extra,
      'session.intra_op.allow_spinning': allow,
      'session.inter_op.allow_spinning': allow,
    };
  }

  const what = `model "${name}"`;
  const resolved = await runtime.resolveSource(source);

  // Providers that cannot exist here are found before onnxruntime-common would drop them silently.
  // With fallbackToCpu, each provider that cannot load is dropped in turn (so ['tensorrt', 'cuda']
  // lands on CUDA when only TensorRT is missing), and CPU is what is left at the end.
  let providers: ExecutionProvider[] = [...requested];
  const reasons: string[] = [];
  const drop = (name: string, reason: string, cause: unknown) => {
    if (!options.fallbackToCpu) {
      throw unavailable(reason, { cause, details: { executionProviders: requested.map(providerName) } });
    }
    reasons.push(reason);
    providers = providers.filter((p) => providerName(p) !== name);
    if (providers.length === 0) providers = [runtime.cpu];
  };
  let session: OrtSession | undefined;
  for (let attempt = 0; session === undefined; attempt++) {
    const unavailableHere = providers.map(providerName).find((n) => runtime.checkProvider(n) !== undefined);
    if (unavailableHere !== undefined) {
      drop(unavailableHere, runtime.checkProvider(unavailableHere)!, undefined);
      continue;
    }
    try {
      session = await runtime.ort.InferenceSession.create(resolved as string, {
        ...sessionOptions,
        executionProviders: providers,
      });
    } catch (err) {
      const gpu = providers.map(providerName).filter((n) => !runtime.cpuNames.includes(n));
      const blamed = attempt <= requested.length ? runtime.blame(gpu, err) : undefined;
      if (blamed === undefined) throw loadError(what, err);
      drop(blamed, runtime.explain(blamed, err), err);
    }
  }
  const fallbackReason = reasons.length > 0 ? reasons.join('; ') : undefined;

  try {
    const model = new OnnxModel(runtime, session, {
      name,
      version,
      padValues: options.padValues,
      requested: requested.map(providerName),
      active: providerName(providers[0]!),
      fallbackReason,
      freeDimensionOverrides: sessionOptions.freeDimensionOverrides,
    });
    sessions.set(model, session);
    return model;
  } catch (err) {
    await session.release().catch(() => {});
    throw err;
  }
}

interface ModelSetup {
  name: string;
  version: string;
  padValues: Record<string, number | bigint> | undefined;
  requested: string[];
  active: string;
  fallbackReason: string | undefined;
  freeDimensionOverrides: Readonly<Record<string, number>> | undefined;
}

/**
 * A Model over one onnxruntime session. Requests are validated against the session's metadata
 * before they reach onnxruntime; only the requested outputs are fetched; a request that is
 * cancelled or expires while onnxruntime computes is rejected at once and its result dropped.
 */
class OnnxModel implements Model {
  readonly name: string;
  readonly version: string;
  readonly #runtime: OrtRuntime;
  readonly #session: OrtSession;
  readonly #meta: ModelMetadata;
  readonly #inputNames: string[];
  readonly #check: RequestValidator;
  readonly #outputNames: string[];
  readonly #backend: string;
  readonly #freeDims: Readonly<Record<string, number>>;
  #disposed: Promise<void> | undefined;
  readonly #inFlight = new InFlight();
  #runs = 0;
  #failed = 0;
  #expired = 0;

  constructor(runtime: OrtRuntime, session: OrtSession, setup: ModelSetup) {
    this.name = setup.name;
    this.version = setup.version;
    this.#runtime = runtime;
    this.#session = session;
    this.#freeDims = setup.freeDimensionOverrides ?? {};
    const signature = readSignature(session, setup.name, setup.padValues);
    this.#inputNames = signature.inputs.map((i) => i.name);
    this.#outputNames = signature.outputs.map((o) => o.name);
    this.#backend = `${runtime.name}/${setup.active}`;
    const batched = signature.inputs.length > 0 && signature.inputs.every((i) => i.batched);
    const extra: Record<string, unknown> = {
      executionProvider: setup.active,
      requestedExecutionProviders: setup.requested,
      runtime: runtime.name,
    };
    if (runtime.version) extra.runtimeVersion = runtime.version;
    if (setup.fallbackReason) extra.fallbackReason = setup.fallbackReason;
    if (signature.skippedOutputs.length > 0) extra.skippedOutputs = signature.skippedOutputs;
    this.#meta = {
      name: setup.name,
      version: setup.version,
      platform: 'onnxruntime_onnx',
      backend: this.#backend,
      inputs: signature.inputs,
      outputs: signature.outputs,
      maxBatchSize: batched ? 2 ** 31 - 1 : 0,
      concurrency: 1,
      extra,
    };
    // Compiled once: a few comparisons per request, nothing at all for a request an outer layer
    // (the protocol adapters, validation(), a batcher) already validated for this model.
    this.#check = compileValidator(this.#meta);
  }

  metadata(): ModelMetadata {
    return structuredClone(this.#meta);
  }

  isReady(): boolean {
    return this.#disposed === undefined;
  }

  async infer(inputs: Tensors, options?: InferOptions): Promise<Tensors> {
    if (this.#disposed) throw unavailable(`model "${this.name}" is disposed`);
    if (options !== undefined) {
      const expired = expiredError(options);
      if (expired) {
        this.#expired++;
        throw expired;
      }
    }
    this.#check(inputs, options);
    const feeds = toFeeds(this.#runtime.ort, inputs, this.#inputNames);
    const fetches = options?.outputs ?? this.#outputNames;
    const context = options?.context;
    const t0 = context ? performance.now() : 0;
    let results: Record<string, unknown>;
    try {
      const run = this.#session.run(feeds, fetches as string[]);
      // Counted until onnxruntime is done with it, even when the request stops waiting earlier.
      this.#inFlight.enter();
      run.then(this.#inFlight.leave, this.#inFlight.leave);
      let raced: Promise<Record<string, unknown>> = run;
      if (options !== undefined) {
        if (!this.#runtime.blockingRun) raced = raceExpiry(run, options);
        else if (options.signal) raced = raceExpiry(run, { signal: options.signal });
      }
      results = await raced;
    } catch (err) {
      if (isServeError(err)) {
        this.#expired++;
        throw err;
      }
      this.#failed++;
      throw runError(this.name, err);
    }
    if (options !== undefined) {
      // The run cannot be stopped once started; a request that lost interest meanwhile gets no result.
      if (options.signal?.aborted) {
        this.#expired++;
        throw cancelledFrom(options.signal);
      }
      if (options.deadline !== undefined && Date.now() > options.deadline) {
        this.#expired++;
        throw deadlineExceeded('the request deadline passed while it ran');
      }
      if (context) {
        context.computeMs = performance.now() - t0;
        context.backend = this.#backend;
      }
    }
    this.#runs++;
    return fromOrtOutputs(results, fetches);
  }

  /** Runs one request of zeros (dynamic dims 1, or their free-dimension override) so the first real one is fast. */
  async warmup(): Promise<void> {
    const inputs: Tensors = {};
    for (const info of this.#meta.inputs) {
      const dims = info.dims.map((d, i) => (d >= 0 ? d : (this.#freeDims[info.dimNames?.[i] ?? ''] ?? 1)));
      let n = 1;
      for (const d of dims) n *= d;
      if (info.type === 'string')
        inputs[info.name] = { type: 'string', dims, data: new Array<string>(n).fill('') };
      else {
        const ctor = TYPED_ARRAY[info.type];
        inputs[info.name] = { type: info.type, dims, data: new ctor(n) } as Tensors[string];
      }
    }
    await this.infer(inputs);
  }

  stats(): Record<string, unknown> {
    const onnx: OnnxStats = {
      runs: this.#runs,
      failed: this.#failed,
      expired: this.#expired,
      inFlight: this.#inFlight.count,
    };
    return { onnx };
  }

  /** Stops new requests, waits for runs in progress, then releases the session. Idempotent. */
  dispose(): Promise<void> {
    this.#disposed ??= (async () => {
      if (this.#inFlight.count > 0) await this.#inFlight.idle();
      await this.#session.release();
    })();
    return this.#disposed;
  }
}
