import { cancelledFrom, raceExpiry } from './deadline.js';
import type { InferOptions, ParameterValue } from './types.js';

/**
 * The merging semantics shared by batching, cache coalescing and feature lookup, defined once:
 *
 * - only requests with equal `parameters` merge ({@link parametersKey});
 * - the inner call's signal aborts only when every waiter has aborted ({@link SharedSignal});
 *   a waiter that aborts is rejected at once;
 * - the merged deadline is the latest, the priority the highest;
 * - `outputs` is the union, each caller then getting what it asked for ({@link mergeOptions}).
 */

/**
 * A canonical string for a parameters record: equal parameters give equal keys whatever the
 * order of their properties. No parameters (or an empty record) gives ''.
 */
export function parametersKey(parameters: Record<string, ParameterValue> | undefined): string {
  if (!parameters) return '';
  const keys = Object.keys(parameters);
  if (keys.length === 0) return '';
  keys.sort();
  let out = '';
  for (const k of keys) {
    const v = parameters[k];
    out += `${JSON.stringify(k)}:${typeof v === 'string' ? JSON.stringify(v) : `${typeof v}:${String(v)}`};`;
  }
  return out;
}

/** The options of a merged call: latest deadline, highest priority, union of outputs. */
export interface MergedOptions {
  deadline: number | undefined;
  priority: number;
  /** Undefined when any request wants every output. */
  outputs: string[] | undefined;
  parameters: Record<string, ParameterValue> | undefined;
}

/** Merges the options of requests that share one inner call. */
export function mergeOptions(list: readonly (InferOptions | undefined)[]): MergedOptions {
  let deadline: number | undefined = Number.NEGATIVE_INFINITY;
  let priority = Number.NEGATIVE_INFINITY;
  let outputs: Set<string> | undefined = new Set();
  let parameters: Record<string, ParameterValue> | undefined;
  for (const o of list) {
    if (deadline !== undefined)
      deadline = o?.deadline === undefined ? undefined : Math.max(deadline, o.deadline);
    priority = Math.max(priority, o?.priority ?? 0);
    if (outputs) {
      if (!o?.outputs) outputs = undefined;
      else for (const name of o.outputs) outputs.add(name);
    }
    parameters ??= o?.parameters;
  }
  return {
    deadline: deadline === Number.NEGATIVE_INFINITY ? undefined : deadline,
    priority: priority === Number.NEGATIVE_INFINITY ? 0 : priority,
    outputs: outputs ? [...outputs] : undefined,
    parameters,
  };
}

/** Keeps only the outputs a caller asked for (all when it asked for none). */
export function pickOutputs<T>(
  all: Record<string, T>,
  wanted: readonly string[] | undefined,
): Record<string, T> {
  if (!wanted) return all;
  const out: Record<string, T> = {};
  for (const name of wanted) {
    const v = all[name];
    if (v !== undefined) out[name] = v;
  }
  return out;
}

/**
 * A signal for an inner call shared by several waiters: it aborts only once every waiter has
 * left. A waiter without a signal can never leave by aborting, so it keeps the call alive.
 *
 * @example
 * ```ts
 * const shared = new SharedSignal();
 * for (const r of requests) shared.join(r.options?.signal);
 * await inner.infer(inputs, { signal: shared.signal });
 * ```
 */
export class SharedSignal {
  // Created on first use: a shared call whose signal nobody reads (and that never aborts) costs
  // no AbortController.
  #controller: AbortController | undefined;
  #active = 0;

  /** The signal to hand the inner call. */
  get signal(): AbortSignal {
    this.#controller ??= new AbortController();
    return this.#controller.signal;
  }

  /** Waiters still interested. */
  get active(): number {
    return this.#active;
  }

  /**
   * Adds a waiter. When its `signal` aborts it leaves automatically. Returns a function that
   * removes the waiter's listener once it is done (call it when the shared call settles).
   */
  join(signal?: AbortSignal): () => void {
    this.#active++;
    if (!signal) return noop;
    if (signal.aborted) {
      this.leave();
      return noop;
    }
    const onAbort = () => this.leave();
    signal.addEventListener('abort', onAbort, { once: true });
    return () => signal.removeEventListener('abort', onAbort);
  }

  /** A waiter gave up; the shared signal aborts when none is left. */
  leave(): void {
    if (this.#active > 0) this.#active--;
    if (this.#active > 0) return;
    this.#controller ??= new AbortController();
    if (!this.#controller.signal.aborted) this.#controller.abort(cancelledFrom(AbortSignal.abort()));
  }
}

function noop(): void {}

/**
 * The signal {@link SharedCalls} hands an execution that can never be aborted: its first waiter
 * has neither a signal nor a deadline, so it never leaves. Never aborts; layers may skip passing
 * it on (`signal === NEVER_ABORTED`), which spares the layers below a listener per request.
 */
export const NEVER_ABORTED: AbortSignal = new AbortController().signal;

interface InFlight<T> {
  promise: Promise<T>;
  shared: SharedSignal;
  waiters: number;
}

/**
 * Concurrent calls with the same key share one execution (request coalescing). Each waiter is
 * rejected at once when its own signal aborts or its deadline passes; the shared execution is
 * aborted only when all waiters have gone. If it fails, every waiter gets the error.
 *
 * @example
 * ```ts
 * const calls = new SharedCalls<Tensors>();
 * const out = await calls.run(key, options, (signal) => inner.infer(inputs, { ...options, signal, deadline: undefined }));
 * ```
 */
export class SharedCalls<T> {
  readonly #inflight = new Map<string, InFlight<T>>();

  /** Keys with an execution in flight. */
  get size(): number {
    return this.#inflight.size;
  }

  /** Whether an execution for `key` is in flight (a caller would join it). */
  has(key: string): boolean {
    return this.#inflight.has(key);
  }

  /**
   * Runs `fn` for `key`, or joins the execution already in flight for it. `joined` in the
   * result tells whether this caller shared another's execution.
   */
  run(
    key: string,
    options: InferOptions | undefined,
    fn: (signal: AbortSignal) => Promise<T>,
  ): { promise: Promise<T>; joined: boolean } {
    let entry = this.#inflight.get(key);
    const joined = entry !== undefined;
    if (!entry) {
      const shared = new SharedSignal();
      const created: InFlight<T> = { promise: undefined as unknown as Promise<T>, shared, waiters: 0 };
      // A first waiter with neither a signal nor a deadline never leaves, so the shared signal
      // can never abort: hand out the one that never does (no AbortController per call).
      const pinned = options?.signal === undefined && options?.deadline === undefined;
      let started: Promise<T>;
      try {
        started = fn(pinned ? NEVER_ABORTED : shared.signal);
      } catch (err) {
        started = Promise.reject(err);
      }
      // Registered before any waiter's reaction, so the key is free again before they resume
      // (without the extra turns an async wrapper would add).
      const done = () => {
        if (this.#inflight.get(key) === created) this.#inflight.delete(key);
      };
      started.then(done, done);
      created.promise = started;
      this.#inflight.set(key, created);
      entry = created;
    }
    entry.waiters++;
    const release = entry.shared.join(options?.signal);
    const current = entry;
    const raced = raceExpiry(entry.promise, options);
    const wait = release === noop ? raced : raced.finally(release);
    if (options?.deadline !== undefined) {
      // A waiter whose deadline passes leaves the shared call like one that aborted.
      wait.catch((err: { code?: string }) => {
        if (err?.code === 'DEADLINE_EXCEEDED') current.shared.leave();
      });
    }
    return { promise: wait, joined };
  }
}
