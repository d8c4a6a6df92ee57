import {
  cloneTensor,
  expiredError,
  type GenericMiddleware,
  type InferContext,
  type InferOptions,
  type Model,
  NEVER_ABORTED,
  preserveSignature,
  SharedCalls,
  type Tensors,
  unavailable,
  wrap,
} from '@mlserve/core';
import { cacheKey } from './key.js';
import { type CacheStore, checkBounds, entrySize, type MemoryBounds, memoryStore } from './store.js';

/** Something the cache did, for logs and custom metrics. */
export type CacheEvent =
  | { type: 'hit' | 'miss' | 'coalesced' | 'bypass' | 'skip'; model: string; key?: string }
  | { type: 'evict'; model: string; key: string; bytes: number }
  | { type: 'store-error'; model: string; key?: string; operation: 'get' | 'set'; error: unknown };

/** Options every response cache takes, whatever its store. */
export interface CacheCommonOptions {
  /**
   * How long an answer stays valid, in ms. Required with an external `store`; with the in-process
   * store the default is no expiry (entries leave by LRU order only).
   */
  ttlMs?: number | undefined;
  /** Share one inference among concurrent identical requests (default true). */
  coalesce?: boolean | undefined;
  /**
   * Decides, after a miss, whether an answer is kept. Return false for answers that must not be
   * reused (a fallback result, a low-confidence answer). Do not mutate the tensors it receives.
   */
  shouldCache?: ((inputs: Tensors, outputs: Tensors) => boolean) | undefined;
  /**
   * Request parameters that never change the answer (a request id, a tracing flag): left out of
   * the key so they do not split the cache. Every other parameter is part of the key.
   */
  ignoreParameters?: readonly string[] | undefined;
  /**
   * The request parameter that bypasses the cache for one request when it is `false` or `'false'`
   * (default `'cache'`, so `parameters: { cache: false }`). It is never part of the key.
   */
  bypassParameter?: string | undefined;
  /** Answers larger than this many bytes are not kept (default: no limit beyond `maxSize`). */
  maxEntrySize?: number | undefined;
  /** Called for every hit, miss, coalesced request, bypass, skip, eviction and store error. */
  onEvent?: ((event: CacheEvent) => void) | undefined;
}

/** In-process store (the default): bounded by `max` entries and/or `maxSize` bytes. */
export type InProcessCacheOptions = CacheCommonOptions & MemoryBounds & { store?: undefined };

/** An external store (`redisStore`, a shared `memoryStore`): it bounds itself; `ttlMs` is required. */
export type StoreCacheOptions = CacheCommonOptions & {
  store: CacheStore;
  ttlMs: number;
  max?: undefined;
  maxSize?: undefined;
};

/**
 * Options of {@link responseCache}. The union refuses an unbounded cache: either `max` or
 * `maxSize` (in-process), or a `store` with a `ttlMs`.
 */
export type ResponseCacheOptions = InProcessCacheOptions | StoreCacheOptions;

/** Counters of a response cache, under `stats().cache`. */
export interface CacheStats {
  store: string;
  /** Requests answered from the store. */
  hits: number;
  /** Requests the store could not answer (each ran an inference or joined one). */
  misses: number;
  /** Requests that shared another identical request's call instead of running their own. */
  coalesced: number;
  /** Calls made to the inner model. */
  inferences: number;
  /** Requests that skipped the cache through the bypass parameter. */
  bypassed: number;
  /** Answers not kept: refused by `shouldCache` or larger than `maxEntrySize`. */
  skipped: number;
  /** Lookups and writes that failed or timed out (served as misses). */
  storeErrors: number;
  /** Identical requests in flight right now. */
  inFlight: number;
  /** hits / (hits + misses), 0 before any lookup. */
  hitRatio: number;
  /** From the store where it knows them. */
  entries?: number | undefined;
  bytes?: number | undefined;
  evictions?: number | undefined;
  expirations?: number | undefined;
  [key: string]: unknown;
}

interface Shared {
  outputs: Tensors;
  hit: boolean;
  taken: boolean;
  /** What the layers below wrote while serving the shared call (queueMs, computeMs, batchSize...). */
  context: InferContext | undefined;
}

/** Context keys a coalesced waiter never copies from the call it joined. */
const OWN_KEYS = new Set(['startedAt', 'cacheHit', 'coalesced']);

function shareContext(from: InferContext | undefined, to: InferContext | undefined): void {
  if (!from || !to || from === to) return;
  for (const k of Object.keys(from)) {
    if (!OWN_KEYS.has(k) && to[k] === undefined) to[k] = from[k];
  }
}

function isPromise<T>(v: unknown): v is Promise<T> {
  return typeof (v as { then?: unknown } | undefined)?.then === 'function';
}

/**
 * Requests the cache must not answer: the bypass parameter; a request of a stateful sequence (its
 * answer depends on state outside the request); parameters that are not scalars (their canonical
 * form would not tell two values apart).
 */
function mustBypass(options: InferOptions | undefined, bypassParameter: string): boolean {
  if (!options) return false;
  if (options.sequence !== undefined) return true;
  const parameters = options.parameters;
  if (!parameters) return false;
  const flag = parameters[bypassParameter];
  if (flag === false || flag === 'false') return true;
  for (const k in parameters) {
    const v: unknown = parameters[k];
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return true;
  }
  return false;
}

function copyOf(outputs: Tensors): Tensors {
  const out: Tensors = {};
  for (const name of Object.keys(outputs)) out[name] = cloneTensor(outputs[name]!);
  return out;
}

/**
 * Response caching middleware: a request whose inputs, requested outputs and answer-changing
 * parameters were seen before is answered from the cache without touching the inner model.
 * Concurrent identical requests share one inference (`coalesce`). Stack it outside batching, so
 * hits never queue: `pipeline(model, responseCache(...), batching(...))`.
 *
 * Writes `context.cacheHit` and `context.coalesced`; counters under `stats().cache`.
 * Throws a TypeError with an exact message for an unbounded or malformed configuration.
 *
 * @example
 * ```ts
 * import { pipeline } from '@mlserve/core';
 * import { responseCache } from '@mlserve/cache';
 *
 * const served = pipeline(model, responseCache({ maxSize: 64 * 1024 * 1024, ttlMs: 10 * 60_000 }));
 * await served.infer({ image }); // runs the model
 * await served.infer({ image }); // answered from the cache
 * ```
 */
export function responseCache(options: ResponseCacheOptions): GenericMiddleware {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(
      'responseCache: options are required: { max } or { maxSize } (or a store with ttlMs)',
    );
  }
  const {
    ttlMs,
    coalesce = true,
    shouldCache,
    ignoreParameters = [],
    bypassParameter = 'cache',
    maxEntrySize,
    onEvent,
  } = options;
  if (options.store !== undefined) {
    if (typeof options.store?.get !== 'function' || typeof options.store?.set !== 'function') {
      throw new TypeError('responseCache: options.store must be a CacheStore (memoryStore(), redisStore())');
    }
    if (options.max !== undefined || options.maxSize !== undefined) {
      throw new TypeError(
        'responseCache: options.max and options.maxSize bound the in-process store; a given store bounds itself',
      );
    }
    if (ttlMs === undefined) {
      throw new TypeError(
        'responseCache: options.ttlMs is required with an external store (its entries must expire)',
      );
    }
  } else {
    checkBounds('responseCache', options);
  }
  if (ttlMs !== undefined && !(Number.isSafeInteger(ttlMs) && ttlMs > 0)) {
    throw new TypeError('responseCache: options.ttlMs must be a positive integer (milliseconds)');
  }
  if (maxEntrySize !== undefined && !(Number.isSafeInteger(maxEntrySize) && maxEntrySize > 0)) {
    throw new TypeError('responseCache: options.maxEntrySize must be a positive integer (bytes)');
  }
  if (shouldCache !== undefined && typeof shouldCache !== 'function') {
    throw new TypeError('responseCache: options.shouldCache must be a function');
  }
  if (!Array.isArray(ignoreParameters) || ignoreParameters.some((p) => typeof p !== 'string')) {
    throw new TypeError('responseCache: options.ignoreParameters must be an array of strings');
  }
  if (typeof bypassParameter !== 'string' || bypassParameter.length === 0) {
    throw new TypeError('responseCache: options.bypassParameter must be a non-empty string');
  }
  const ignored = new Set([...ignoreParameters, bypassParameter]);

  return preserveSignature((inner: Model): Model => {
    let emit: (event: CacheEvent) => void = () => {};
    if (onEvent) {
      emit = (event) => {
        try {
          onEvent(event);
        } catch {
          // A listener must never break a request.
        }
      };
    }
    const owned = options.store === undefined;
    let closed = false;
    const store: CacheStore =
      options.store ??
      memoryStore({
        ...({ max: options.max, maxSize: options.maxSize } as MemoryBounds),
        maxEntrySize,
        // Only with a listener: sizing an evicted entry for nobody costs on every miss of a full cache.
        onEvict: onEvent
          ? (key: string, bytes: number) => emit({ type: 'evict', model: inner.name, key, bytes })
          : undefined,
      });
    const calls = new SharedCalls<Shared>();
    /** One scope object per model: cacheKey keeps the last request's header against it. */
    const scope = { name: inner.name, version: inner.version, ignoreParameters: ignored };
    let hits = 0;
    let misses = 0;
    let coalesced = 0;
    let inferences = 0;
    let bypassed = 0;
    let skipped = 0;
    let storeErrors = 0;

    const storeError = (operation: 'get' | 'set', key: string, error: unknown) => {
      storeErrors++;
      emit({ type: 'store-error', model: inner.name, key, operation, error });
    };

    /** Keeps an answer (never throws, never waits on the store). */
    const keep = (key: string, inputs: Tensors, outputs: Tensors) => {
      if (shouldCache) {
        let ok = false;
        try {
          ok = shouldCache(inputs, outputs) === true;
        } catch {
          ok = false;
        }
        if (!ok) {
          skipped++;
          emit({ type: 'skip', model: inner.name, key });
          return;
        }
      }
      if (maxEntrySize !== undefined && entrySize(key, outputs) > maxEntrySize) {
        skipped++;
        emit({ type: 'skip', model: inner.name, key });
        return;
      }
      try {
        const written = store.set(key, outputs, { ttlMs });
        if (isPromise(written)) written.catch((err: unknown) => storeError('set', key, err));
      } catch (err) {
        storeError('set', key, err);
      }
    };

    /** A store lookup that never rejects: failures count and read as a miss. */
    const lookup = async (
      key: string,
      pending: Promise<Tensors | undefined>,
    ): Promise<Tensors | undefined> => {
      try {
        return await pending;
      } catch (err) {
        storeError('get', key, err);
        return undefined;
      }
    };

    const compute = async (
      key: string,
      inputs: Tensors,
      options: InferOptions | undefined,
    ): Promise<Tensors> => {
      inferences++;
      const outputs = await inner.infer(inputs, options);
      keep(key, inputs, outputs);
      return outputs;
    };

    const onHit = (key: string, options: InferOptions | undefined) => {
      hits++;
      if (options?.context) options.context.cacheHit = true;
      emit({ type: 'hit', model: inner.name, key });
    };
    const onMiss = (key: string, options: InferOptions | undefined) => {
      misses++;
      if (options?.context) options.context.cacheHit = false;
      emit({ type: 'miss', model: inner.name, key });
    };

    return wrap(inner, {
      layer: 'cache',
      infer: async function responseCacheInfer(inputs: Tensors, options?: InferOptions): Promise<Tensors> {
        if (closed) throw unavailable(`model "${inner.name}" is disposed`);
        if (mustBypass(options, bypassParameter)) {
          bypassed++;
          emit({ type: 'bypass', model: inner.name });
          return inner.infer(inputs, options);
        }
        const expired = expiredError(options);
        if (expired) throw expired;
        const key = cacheKey(scope, inputs, options);

        let pending: Promise<Tensors | undefined> | undefined;
        if (!coalesce || !calls.has(key)) {
          try {
            const found = store.get(key);
            if (isPromise<Tensors | undefined>(found)) pending = found;
            else if (found) {
              onHit(key, options);
              return found;
            }
          } catch (err) {
            storeError('get', key, err);
          }
        }

        if (!coalesce) {
          const found = pending ? await lookup(key, pending) : undefined;
          if (found) {
            onHit(key, options);
            return found;
          }
          onMiss(key, options);
          return compute(key, inputs, options);
        }

        // Identical requests share the lookup (for an asynchronous store) and the inference. The
        // shared call is a plain promise chain (no async frame): it runs on every miss.
        const run = (signal: AbortSignal): Promise<Shared> => {
          // The inner call has no deadline of its own: each waiter races its own, and the shared
          // signal aborts the call once every waiter has gone (core's merging semantics).
          const context: InferContext = options?.context ?? {};
          let callOptions: InferOptions;
          if (signal === NEVER_ABORTED) {
            // Nothing can abort the call (its first waiter has no signal and no deadline): pass
            // no signal, so the layers below need no abort listener.
            callOptions = options?.context ? options : { ...options, context };
          } else callOptions = { ...options, signal, deadline: undefined, context };
          inferences++;
          return inner.infer(inputs, callOptions).then((outputs) => {
            keep(key, inputs, outputs);
            return { outputs, hit: false, taken: false, context };
          });
        };
        const { promise, joined } = calls.run(
          key,
          options,
          pending === undefined
            ? run
            : (signal) =>
                lookup(key, pending).then((found) =>
                  found ? { outputs: found, hit: true, taken: false, context: undefined } : run(signal),
                ),
        );
        // A joiner that looked up anyway (a race at the end of a call) drops its own lookup.
        if (joined && pending) pending.catch(() => {});
        const shared = await promise;
        if (joined) {
          coalesced++;
          if (options?.context) {
            options.context.coalesced = true;
            shareContext(shared.context, options.context);
          }
          emit({ type: 'coalesced', model: inner.name, key });
        }
        if (shared.hit) onHit(key, options);
        else onMiss(key, options);
        // The first waiter to resume takes the tensors themselves; the others get copies.
        if (!shared.taken) {
          shared.taken = true;
          return shared.outputs;
        }
        return copyOf(shared.outputs);
      },
      async dispose() {
        closed = true;
        // A store passed in may be shared with other models: only the cache's own is cleared.
        if (owned) await store.clear?.();
      },
      stats: (): CacheStats => {
        const s = store.stats?.() ?? {};
        return {
          ...s,
          store: store.kind,
          hits,
          misses,
          coalesced,
          inferences,
          bypassed,
          skipped,
          storeErrors,
          inFlight: calls.size,
          hitRatio: hits + misses === 0 ? 0 : hits / (hits + misses),
        };
      },
    });
  });
}
