/**
 * Stateful sequences (the part of Triton's sequence batcher that matters): state kept per sequence
 * id between requests, created by a request that starts the sequence, freed by the one that ends it
 * or when the sequence sits idle too long; a bounded number open at once.
 */
import { throwIfExpired } from './deadline.js';
import { invalidArgument, ServeError, toServeError } from './errors.js';
import { type FunctionModelOptions, fromFunction } from './function-model.js';
import type {
  InferOptions,
  Middleware,
  Model,
  ModelMetadata,
  SequenceInfo,
  Tensor,
  TensorInfo,
  Tensors,
} from './types.js';

/** Limits every sequence store takes ({@link SequenceStore}, {@link sequences}, {@link statefulModel}). */
export interface SequenceOptions {
  /** A sequence that gets no request for this long is ended and its state freed, ms. Default 60000. */
  idleTimeoutMs?: number;
  /** Sequences open at once; a start beyond that is RESOURCE_EXHAUSTED (429). Default 1000. */
  maxSequences?: number;
  /**
   * A request that names no sequence: `'single'` (default) runs it as a sequence of one request
   * (fresh state, not kept); `'reject'` refuses it with INVALID_ARGUMENT.
   */
  unsequenced?: 'single' | 'reject';
}

/** Counters of a sequence store, under `stats().sequences`. */
export interface SequenceStats {
  /** Sequences open now. */
  open: number;
  /** Sequences started (a start on an open sequence restarts it and counts again). */
  started: number;
  /** Sequences ended by a request with `end`. */
  ended: number;
  /** Sequences freed because they sat idle longer than `idleTimeoutMs`. */
  expired: number;
  /** Starts refused because `maxSequences` were open. */
  rejected: number;
}

interface Entry<S> {
  key: string;
  state: S | undefined;
  /** The last request queued on this sequence: requests of one sequence run one at a time, in order. */
  tail: Promise<unknown>;
  pending: number;
  lastUsed: number;
  closed: boolean;
}

/** What {@link SequenceStore} needs besides its limits. */
export interface SequenceStoreOptions<S> extends SequenceOptions {
  /** The model's name, for error messages. */
  name: string;
  /** The state a sequence starts with. */
  initialState: (inputs: Tensors, options: InferOptions) => S | Promise<S>;
  /** Called once when a sequence's state is freed (ended, expired, restarted, store closed). */
  onFree?: (state: S) => void;
}

/** The key of a sequence id: numbers and bigints of equal value are one sequence, strings another. */
function keyOf(id: SequenceInfo['id']): string {
  return typeof id === 'string' ? `s:${id}` : `n:${String(id)}`;
}

function checkLimits(options: SequenceOptions, where: string): void {
  const { idleTimeoutMs, maxSequences, unsequenced } = options;
  if (idleTimeoutMs !== undefined && !(idleTimeoutMs > 0))
    throw new TypeError(`${where}: options.idleTimeoutMs must be a positive number of milliseconds`);
  if (maxSequences !== undefined && !(Number.isSafeInteger(maxSequences) && maxSequences >= 1))
    throw new TypeError(`${where}: options.maxSequences must be a positive integer`);
  if (unsequenced !== undefined && unsequenced !== 'single' && unsequenced !== 'reject')
    throw new TypeError(`${where}: options.unsequenced must be 'single' or 'reject'`);
}

/**
 * State per sequence id. {@link SequenceStore.run} runs one request of a sequence with its state and
 * keeps the state the request returns. Requests of one sequence run one at a time in arrival order;
 * different sequences run concurrently.
 *
 * - `sequence.start`: creates the state (`initialState`); on an open sequence, restarts it.
 * - a request for a sequence that is not open and does not start it: FAILED_PRECONDITION (400).
 * - `sequence.end`: frees the state once the request has run (whether it succeeded or not).
 * - idle longer than `idleTimeoutMs`: freed (a later request without start is FAILED_PRECONDITION).
 *   An unref'd timer sweeps, and every request checks too: a Piscina worker thread runs no timers
 *   while it waits for a task, so there expiry happens when the next request arrives.
 * - a start while `maxSequences` are open: RESOURCE_EXHAUSTED (429).
 * - a failed request leaves the state as it was.
 *
 * @example
 * ```ts
 * import { SequenceStore } from '@mlserve/core';
 * const store = new SequenceStore<number>({ name: 'sum', initialState: () => 0 });
 * const add = (x: number, sequence: { id: number; start?: boolean; end?: boolean }) =>
 *   store.run({ sequence }, async (total) => ({ result: total + x, state: total + x }));
 * await add(2, { id: 7, start: true });
 * console.log(await add(3, { id: 7, end: true })); // 5
 * store.close();
 * ```
 */
export class SequenceStore<S> {
  readonly #name: string;
  readonly #idleTimeoutMs: number;
  readonly #maxSequences: number;
  readonly #unsequenced: 'single' | 'reject';
  readonly #initialState: SequenceStoreOptions<S>['initialState'];
  readonly #onFree: ((state: S) => void) | undefined;
  readonly #open = new Map<string, Entry<S>>();
  readonly #stats: SequenceStats = { open: 0, started: 0, ended: 0, expired: 0, rejected: 0 };
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly #sweepEvery: number;
  #lastSweep = 0;
  #closed = false;

  constructor(options: SequenceStoreOptions<S>) {
    checkLimits(options, 'SequenceStore');
    if (typeof options.initialState !== 'function')
      throw new TypeError('SequenceStore: options.initialState must be a function');
    this.#name = options.name;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.#maxSequences = options.maxSequences ?? 1000;
    this.#unsequenced = options.unsequenced ?? 'single';
    this.#initialState = options.initialState;
    this.#onFree = options.onFree;
    this.#sweepEvery = Math.max(10, Math.min(this.#idleTimeoutMs / 4, 1000));
  }

  /** Sequences open now. */
  get size(): number {
    return this.#open.size;
  }

  /** Counters (a copy). */
  stats(): SequenceStats {
    return { ...this.#stats, open: this.#open.size };
  }

  /**
   * Runs one request: `step` gets the sequence's state and returns the result and the next state.
   * Rejects with a ServeError (the step's errors are passed through as ServeErrors).
   */
  async run<R>(
    inputs: Tensors,
    options: InferOptions,
    step: (state: S) => Promise<{ result: R; state: S }> | { result: R; state: S },
  ): Promise<R>;
  async run<R>(
    options: InferOptions,
    step: (state: S) => Promise<{ result: R; state: S }> | { result: R; state: S },
  ): Promise<R>;
  async run<R>(
    a: Tensors | InferOptions,
    b: InferOptions | ((state: S) => Promise<{ result: R; state: S }> | { result: R; state: S }),
    c?: (state: S) => Promise<{ result: R; state: S }> | { result: R; state: S },
  ): Promise<R> {
    const [inputs, options, step] =
      typeof b === 'function' ? [{} as Tensors, a as InferOptions, b] : [a as Tensors, b, c!];
    if (this.#closed) throw new ServeError('UNAVAILABLE', `model "${this.#name}" is disposed`);
    const seq = options.sequence;
    if (seq === undefined) {
      if (this.#unsequenced === 'reject') {
        throw invalidArgument(
          `model "${this.#name}" is stateful: name a sequence (sequence_id, with sequence_start on its first request)`,
        );
      }
      const initial = await this.#initialState(inputs, options);
      let out: { result: R; state: S };
      try {
        out = await step(initial);
      } catch (err) {
        this.#free(initial);
        throw toServeError(err);
      }
      this.#free(out.state);
      return out.result;
    }
    const id = seq.id;
    if (!(typeof id === 'string' || typeof id === 'bigint' || Number.isSafeInteger(id)))
      throw invalidArgument('sequence id must be a string or an integer');
    const key = keyOf(id);
    // Timers may not run (a Piscina worker blocks between tasks): expiry is also checked here.
    const now = performance.now();
    if (now - this.#lastSweep >= this.#sweepEvery) this.#sweep(now);
    let entry = this.#open.get(key);
    if (entry !== undefined && entry.pending === 0 && entry.lastUsed <= now - this.#idleTimeoutMs) {
      this.#stats.expired++;
      this.#close(entry);
      entry = undefined;
    }
    if (entry === undefined) {
      if (!seq.start) throw this.#notOpen(id);
      entry = this.#add(key);
    }
    const e = entry;
    e.pending++;
    const turn = e.tail.then(async () => {
      throwIfExpired(options);
      if (seq.start) {
        if (e.closed) {
          // Ended or expired while this start waited its turn: open it again.
          if (this.#open.has(key)) throw this.#notOpen(id);
          if (this.#open.size >= this.#maxSequences) throw this.#full();
          this.#open.set(key, e);
          e.closed = false;
        } else if (e.state !== undefined) {
          this.#free(e.state);
        }
        e.state = undefined;
        this.#stats.started++;
        e.state = await this.#initialState(inputs, options);
      } else if (e.closed || e.state === undefined) {
        throw this.#notOpen(id);
      }
      const out = await step(e.state as S);
      e.state = out.state;
      return out.result;
    });
    e.tail = turn.catch(() => {});
    try {
      return await turn;
    } catch (err) {
      throw toServeError(err);
    } finally {
      e.pending--;
      e.lastUsed = performance.now();
      if (seq.end && !e.closed) {
        this.#stats.ended++;
        this.#close(e);
      } else if (!e.closed && e.state === undefined && e.pending === 0) {
        // Its start failed before the state existed: nothing to keep open.
        this.#close(e);
      }
    }
  }

  /** Frees every sequence and stops the idle timer; later runs are UNAVAILABLE. */
  close(): void {
    this.#closed = true;
    for (const e of [...this.#open.values()]) this.#close(e);
    this.#stopTimer();
  }

  #add(key: string): Entry<S> {
    if (this.#open.size >= this.#maxSequences) throw this.#full();
    const e: Entry<S> = {
      key,
      state: undefined,
      tail: Promise.resolve(),
      pending: 0,
      lastUsed: performance.now(),
      closed: false,
    };
    this.#open.set(key, e);
    this.#startTimer();
    return e;
  }

  #close(e: Entry<S>): void {
    e.closed = true;
    if (this.#open.get(e.key) === e) this.#open.delete(e.key);
    if (e.state !== undefined) {
      const s = e.state;
      e.state = undefined;
      this.#free(s);
    }
    if (this.#open.size === 0) this.#stopTimer();
  }

  #free(state: S): void {
    try {
      this.#onFree?.(state);
    } catch {
      // A failing cleanup must not fail the request that ended the sequence.
    }
  }

  #notOpen(id: SequenceInfo['id']): ServeError {
    return new ServeError(
      'FAILED_PRECONDITION',
      `sequence ${describeSequenceId(id)} of model "${this.#name}" is not open: ` +
        'its first request must set sequence_start (it may have ended, or timed out after ' +
        `${this.#idleTimeoutMs} ms idle)`,
    );
  }

  #full(): ServeError {
    this.#stats.rejected++;
    return new ServeError(
      'RESOURCE_EXHAUSTED',
      `model "${this.#name}": ${this.#maxSequences} sequences are open (maxSequences); end one or retry later`,
      { retryAfterMs: Math.min(this.#idleTimeoutMs, 1000) },
    );
  }

  #startTimer(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#sweep(performance.now()), this.#sweepEvery);
    this.#timer.unref?.();
  }

  #stopTimer(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #sweep(now: number): void {
    this.#lastSweep = now;
    const limit = now - this.#idleTimeoutMs;
    for (const e of [...this.#open.values()]) {
      if (e.pending === 0 && e.lastUsed <= limit) {
        this.#stats.expired++;
        this.#close(e);
      }
    }
  }
}

/** One state tensor that {@link sequences} carries between a sequence's requests. */
export interface SequenceStateTensor {
  /** The inner model's input that receives the state. */
  input: string;
  /** The inner model's output that holds the next state. */
  output: string;
  /**
   * The state a sequence starts with. Default: zeros of the input's type and dims, with a batched
   * input's dim 0 set to the request's rows (every other dim must be fixed).
   */
  initial?: Tensor;
}

/** Options of {@link sequences}. */
export interface SequencesOptions extends SequenceOptions {
  /** The state tensors (Triton's implicit state): inputs fed from the previous request's outputs. */
  state: readonly SequenceStateTensor[];
  /** Keep the state outputs in the answer (default false: clients see only the other outputs). */
  exposeState?: boolean;
  /**
   * Pass `options.sequence` on to the inner model (default false). Without it, requests of
   * different sequences may be batched together: each carries its own state rows, so no state
   * mixes. Set it when a layer below keeps state of its own (a worker pool's sticky routing).
   */
  forwardSequence?: boolean;
}

function zerosLike(info: TensorInfo, rows: number): Tensor {
  const dims = info.dims.map((d, i) => (i === 0 && info.batched && d === -1 ? rows : d));
  if (dims.some((d) => d < 0)) {
    throw invalidArgument(
      `state input "${info.name}" has dynamic dims [${info.dims.join(', ')}]: give sequences() an initial tensor`,
    );
  }
  const n = dims.reduce((a, b) => a * b, 1);
  const data =
    info.type === 'float32'
      ? new Float32Array(n)
      : info.type === 'float64'
        ? new Float64Array(n)
        : info.type === 'int32'
          ? new Int32Array(n)
          : info.type === 'int64'
            ? new BigInt64Array(n)
            : info.type === 'float16' || info.type === 'uint16'
              ? new Uint16Array(n)
              : info.type === 'int8'
                ? new Int8Array(n)
                : info.type === 'int16'
                  ? new Int16Array(n)
                  : info.type === 'uint32'
                    ? new Uint32Array(n)
                    : info.type === 'uint64'
                      ? new BigUint64Array(n)
                      : info.type === 'uint8' || info.type === 'bool'
                        ? new Uint8Array(n)
                        : undefined;
  if (data === undefined) throw invalidArgument(`state input "${info.name}": type ${info.type} has no zeros`);
  return { type: info.type, dims, data } as Tensor;
}

/**
 * Serves a recurrent model statefully: the server carries state tensors between the requests of a
 * sequence (Triton's implicit state). Each request of sequence `id` gets the state inputs from the
 * state outputs of the sequence's previous request (or the initial state on `sequence.start`);
 * clients send and receive only the other tensors. The outer metadata hides the state inputs (and
 * the state outputs unless `exposeState`). The sequence rules are {@link SequenceStore}'s.
 *
 * Put it outermost (above batching and a worker pool): the state then rides with each request as
 * rows, so requests of different sequences may share a batch or a worker without mixing state.
 *
 * @example
 * ```ts
 * import { pipeline, sequences } from '@mlserve/core';
 * import { loadOnnxModel } from '@mlserve/backend-onnx';
 * const gru = pipeline(
 *   await loadOnnxModel('packages/test-utils/models/gru-cell.onnx'),
 *   sequences({ state: [{ input: 'h', output: 'h_next' }], idleTimeoutMs: 30_000, maxSequences: 100 }),
 * );
 * const x = { type: 'float32' as const, dims: [1, 4], data: new Float32Array([1, 0, 0, 0]) };
 * await gru.infer({ x }, { sequence: { id: 1, start: true } });
 * const { y } = await gru.infer({ x }, { sequence: { id: 1, end: true } }); // used the state of the first step
 * console.log(y?.dims); // [1, 2]
 * await gru.dispose();
 * ```
 */
export function sequences(options: SequencesOptions): Middleware {
  if (typeof options !== 'object' || options === null)
    throw new TypeError('sequences: options must be an object');
  checkLimits(options, 'sequences');
  const state = options.state;
  if (!Array.isArray(state) || state.length === 0)
    throw new TypeError('sequences: options.state must name at least one { input, output } pair');
  const exposeState = options.exposeState ?? false;
  const forwardSequence = options.forwardSequence ?? false;
  return function sequencesMiddleware(inner: Model): Model {
    const innerMeta = inner.metadata();
    const infos = state.map((s) => {
      const input = innerMeta.inputs.find((i) => i.name === s.input);
      const output = innerMeta.outputs.find((o) => o.name === s.output);
      if (!input) throw new TypeError(`sequences(): model "${inner.name}" has no input "${s.input}"`);
      if (!output) throw new TypeError(`sequences(): model "${inner.name}" has no output "${s.output}"`);
      return { ...s, info: input };
    });
    const stateInputs = new Set(state.map((s) => s.input));
    const stateOutputs = new Set(state.map((s) => s.output));
    const meta: ModelMetadata = {
      ...innerMeta,
      inputs: innerMeta.inputs.filter((i) => !stateInputs.has(i.name)),
      outputs: exposeState ? innerMeta.outputs : innerMeta.outputs.filter((o) => !stateOutputs.has(o.name)),
      extra: {
        ...innerMeta.extra,
        sequences: { state: state.map((s) => ({ input: s.input, output: s.output })) },
      },
    };
    const store = new SequenceStore<Tensors>({
      ...options,
      name: inner.name,
      initialState(inputs) {
        let rows = 1;
        for (const k in inputs) {
          rows = inputs[k]!.dims[0] ?? 1;
          break;
        }
        const out: Tensors = {};
        for (const s of infos) out[s.input] = s.initial ?? zerosLike(s.info, rows);
        return out;
      },
    });
    return {
      name: inner.name,
      version: inner.version,
      inner,
      metadata: () => structuredClone(meta),
      infer(inputs: Tensors, opts: InferOptions = {}): Promise<Tensors> {
        for (const k in inputs) {
          if (stateInputs.has(k))
            return Promise.reject(
              invalidArgument(`input "${k}" is the sequence state: the server carries it, do not send it`),
            );
        }
        return store.run(inputs, opts, async (current) => {
          const feeds: Tensors = { ...inputs, ...current };
          let innerOpts = opts;
          const wanted = opts.outputs;
          if (!forwardSequence || wanted) {
            innerOpts = { ...opts };
            if (!forwardSequence) delete innerOpts.sequence;
            // The state outputs are always computed, whatever the client asked for.
            if (wanted) innerOpts.outputs = [...new Set([...wanted, ...stateOutputs])];
          }
          const out = await inner.infer(feeds, innerOpts);
          const next: Tensors = {};
          const result: Tensors = {};
          for (const s of state) {
            const t = out[s.output];
            if (!t)
              throw new ServeError(
                'INTERNAL',
                `model "${inner.name}" returned no state output "${s.output}"`,
              );
            next[s.input] = t;
          }
          for (const k in out) {
            if (stateOutputs.has(k) && !(exposeState && (!wanted || wanted.includes(k)))) continue;
            if (wanted && !wanted.includes(k)) continue;
            result[k] = out[k]!;
          }
          return { result, state: next };
        });
      },
      async dispose() {
        store.close();
        await inner.dispose();
      },
      isReady: () => inner.isReady?.() ?? true,
      stats: () => ({ ...inner.stats?.(), sequences: store.stats() }),
    };
  };
}

/** Options of {@link statefulModel}. */
export interface StatefulModelOptions<S>
  extends Omit<FunctionModelOptions, 'infer' | 'maxBatchSize'>,
    SequenceOptions {
  /** The state a sequence starts with. */
  initialState: (inputs: Tensors, options: InferOptions) => S | Promise<S>;
  /** One request: the inputs and the sequence's state in, the outputs and the next state out. */
  infer: (
    inputs: Tensors,
    state: S,
    options: InferOptions,
  ) => Promise<{ outputs: Tensors; state: S }> | { outputs: Tensors; state: S };
  /** Called when a sequence's state is freed (ended, expired, restarted or disposed). */
  onFree?: (state: S) => void;
}

/**
 * A model written in JavaScript that keeps state per sequence: `infer` receives the sequence's
 * state and returns the next one. Requests are never batched together (maxBatchSize 0); the
 * sequence rules are {@link SequenceStore}'s; `stats().sequences` counts them.
 *
 * @example
 * ```ts
 * import { statefulModel } from '@mlserve/core';
 * const accumulator = statefulModel<number>({
 *   name: 'accumulator',
 *   inputs: [{ name: 'x', type: 'float32', dims: [1] }],
 *   outputs: [{ name: 'total', type: 'float32', dims: [1] }],
 *   initialState: () => 0,
 *   infer: ({ x }, total) => {
 *     const next = total + (x!.data as Float32Array)[0]!;
 *     return { outputs: { total: { type: 'float32', dims: [1], data: new Float32Array([next]) } }, state: next };
 *   },
 *   idleTimeoutMs: 60_000,
 *   maxSequences: 100,
 * });
 * const x = (v: number) => ({ x: { type: 'float32' as const, dims: [1], data: new Float32Array([v]) } });
 * await accumulator.infer(x(2), { sequence: { id: 'a', start: true } });
 * const { total } = await accumulator.infer(x(3), { sequence: { id: 'a', end: true } });
 * console.log(total?.data[0]); // 5
 * await accumulator.dispose();
 * ```
 */
export function statefulModel<S>(options: StatefulModelOptions<S>): Model {
  if (typeof options.infer !== 'function')
    throw new TypeError('statefulModel: options.infer must be a function');
  checkLimits(options, 'statefulModel');
  const store = new SequenceStore<S>({ ...options, name: options.name });
  const userDispose = options.dispose;
  const model = fromFunction({
    ...options,
    maxBatchSize: 0,
    infer: (inputs, opts) =>
      store.run(inputs, opts, async (s) => {
        const { outputs, state } = await options.infer(inputs, s, opts);
        return { result: outputs, state };
      }),
    dispose: async () => {
      store.close();
      await userDispose?.();
    },
  });
  return { ...model, stats: () => ({ sequences: store.stats() }) };
}

/** Longest part of a client's string sequence id an error message echoes. */
const ID_ECHO_MAX = 64;

/**
 * A sequence id as an error message names it: a string quoted, and only its first
 * {@link ID_ECHO_MAX} characters plus its length when longer (a 64 KiB id must not come back whole
 * in every error and log line).
 */
function describeSequenceId(id: SequenceInfo['id']): string {
  if (typeof id !== 'string') return String(id);
  if (id.length <= ID_ECHO_MAX) return JSON.stringify(id);
  return `${JSON.stringify(id.slice(0, ID_ECHO_MAX))}... (${id.length} characters)`;
}
