import {
  cancelledFrom,
  getOrCreateMetric,
  type InferOptions,
  importOptional,
  invalidArgument,
  isServeError,
  type Middleware,
  type Model,
  type ModelMetadata,
  type Tensor,
  type TensorInfo,
  type Tensors,
  unavailable,
  wrap,
} from '@mlserve/core';
import { Loader, type LoaderStats } from './loader.js';
import type { FeatureRecord, FeatureStore, FeatureValue } from './store.js';

/** One looked-up feature. */
export interface LookupFeature {
  name: string;
  /** Element type when features are `separate` inputs (default float32); `target.input` is always float32. */
  type?: 'float32' | 'float64' | 'int32' | 'int64' | 'string';
  /** Used when the value is missing (`onMissing: 'default'`) or the store fails (`onStoreError: 'default'`). */
  default?: number | string;
  /** What a missing entity or value does: `default` (when `default` is set, the default) or `reject`. */
  onMissing?: 'default' | 'reject';
}

/** Options of {@link featureLookup}. */
export interface FeatureLookupOptions {
  /** The request input holding one entity key per row: string, int32 or int64, `[batch]` or `[batch, 1]`. */
  keyInput?: string;
  /** Or: the request parameter holding one key for the whole request (every row gets its features). */
  keyParameter?: string;
  /** Keep `keyInput` in the inputs passed on (default false: models rarely take raw ids). */
  keepKeyInput?: boolean;
  /** Prepended to every key before the store sees it (default ''). */
  keyPrefix?: string;
  store: FeatureStore;
  features: readonly LookupFeature[];
  /**
   * `{ input, order? }`: the features, in `order` (default: as declared), fill a float32
   * `[batch, F]` input, appended after the columns of that input when the request already has it.
   * `'separate'`: each feature becomes its own `[batch, 1]` input named after it.
   */
  target: { input: string; order?: readonly string[] } | 'separate';
  /** The longest a request waits for the store, ms (default 50); then `onStoreError` applies. */
  timeoutMs?: number;
  /** A short-TTL LRU of entities in front of the store (absent entities are cached too). */
  cache?: { max: number; ttlMs: number };
  /** A failing or slow store: `reject` (default, UNAVAILABLE) or use each feature's `default`. */
  onStoreError?: 'default' | 'reject';
  /**
   * Merge the lookups of concurrent requests into one store call per event-loop turn (default
   * true). `false` gives every request its own call: only for stores that cannot take batches.
   */
  merge?: boolean;
  /**
   * Keys per store call (default 16); a larger merged batch is split into several calls sent in
   * the same turn, so the first answers come back (and their requests move on to the model) while
   * the store still works on the rest.
   */
  maxKeysPerCall?: number;
  /** Counters in a prom-client registry. */
  metrics?: { registry: import('prom-client').Registry };
}

/** Counters of a lookup layer (`stats().features`). */
export interface FeatureLookupStats extends LoaderStats {
  requests: number;
  /** Entities whose every feature was found. */
  hits: number;
  /** Entities with a missing value that got defaults. */
  missingDefault: number;
  /** Requests rejected because an entity or a value was missing. */
  missingReject: number;
  /** Requests that got defaults because the store failed or timed out. */
  storeErrorDefault: number;
  /** Requests rejected because the store failed or timed out. */
  storeErrorReject: number;
  /** Of the store failures, how many were timeouts. */
  timeouts: number;
}

const TIMEOUT = Symbol('timeout');

/**
 * Enriches each request with features fetched by entity key before it reaches the model.
 * Lookups of concurrent requests are merged into one store round trip per event-loop turn
 * (deduplicated by key); an optional LRU answers repeated keys; `timeoutMs` bounds the wait.
 *
 * @example
 * ```ts
 * const served = pipeline(
 *   model,
 *   featureLookup({
 *     keyInput: 'user_id',
 *     store: redisFeatureStore({ client: redis, prefix: 'user:' }),
 *     features: [
 *       { name: 'age', default: 35 },
 *       { name: 'visits_7d', default: 0 },
 *       { name: 'lifetime_value', onMissing: 'reject' },
 *     ],
 *     target: { input: 'features' },
 *     timeoutMs: 20,
 *     cache: { max: 100_000, ttlMs: 5_000 },
 *     onStoreError: 'default',
 *   }),
 * );
 * await served.infer({ user_id: tensor('string', ['u1', 'u2']) }); // the model sees features: float32[2, 3]
 * ```
 *
 * The layer changes what the model takes (keys in, looked-up features to the model), so it is an
 * untyped {@link Middleware}: a pipeline through it is an untyped `Model` even over a typed model.
 */
export function featureLookup(options: FeatureLookupOptions): Middleware {
  const {
    keyInput,
    keyParameter,
    keepKeyInput = false,
    keyPrefix = '',
    store,
    target,
    timeoutMs = 50,
    cache,
    onStoreError = 'reject',
    maxKeysPerCall = 16,
    merge = true,
  } = options;
  if ((keyInput === undefined) === (keyParameter === undefined)) {
    throw new TypeError('featureLookup: give exactly one of options.keyInput and options.keyParameter');
  }
  if (!store || typeof store.getMany !== 'function')
    throw new TypeError('featureLookup: options.store needs getMany()');
  if (!Array.isArray(options.features) || options.features.length === 0) {
    throw new TypeError('featureLookup: options.features must list at least one feature');
  }
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0))
    throw new TypeError('featureLookup: options.timeoutMs must be positive');
  if (!Number.isInteger(maxKeysPerCall) || maxKeysPerCall < 1) {
    throw new TypeError('featureLookup: options.maxKeysPerCall must be a positive integer');
  }
  if (cache && !(Number.isInteger(cache.max) && cache.max > 0 && cache.ttlMs > 0)) {
    throw new TypeError('featureLookup: options.cache needs a positive integer max and a positive ttlMs');
  }
  if (onStoreError !== 'default' && onStoreError !== 'reject') {
    throw new TypeError("featureLookup: options.onStoreError must be 'default' or 'reject'");
  }
  const features = options.features.map((f) => {
    if (typeof f.name !== 'string' || f.name.length === 0)
      throw new TypeError('featureLookup: feature names must be strings');
    const onMissing = f.onMissing ?? (f.default === undefined ? 'reject' : 'default');
    if (onMissing === 'default' && f.default === undefined) {
      throw new TypeError(`featureLookup: feature "${f.name}" has onMissing 'default' but no default`);
    }
    const type = f.type ?? 'float32';
    if (target !== 'separate' && type !== 'float32') {
      throw new TypeError(`featureLookup: feature "${f.name}": target.input features are float32`);
    }
    return { ...f, type, onMissing };
  });
  const names = features.map((f) => f.name);
  if (new Set(names).size !== names.length)
    throw new TypeError('featureLookup: feature names must be unique');
  let order = features;
  if (target !== 'separate') {
    if (!target || typeof target.input !== 'string')
      throw new TypeError("featureLookup: options.target needs input or 'separate'");
    if (target.order) {
      const byName = new Map(features.map((f) => [f.name, f]));
      if (target.order.length !== features.length || !target.order.every((n) => byName.has(n))) {
        throw new TypeError('featureLookup: target.order must list every feature once');
      }
      order = target.order.map((n) => byName.get(n)!);
    }
  }

  return (inner: Model): Model => {
    const loader = new Loader(store, names, { maxKeys: maxKeysPerCall, callTimeoutMs: timeoutMs, cache });
    const counters = {
      requests: 0,
      hits: 0,
      missingDefault: 0,
      missingReject: 0,
      storeErrorDefault: 0,
      storeErrorReject: 0,
      timeouts: 0,
    };
    const stats = (): FeatureLookupStats => ({ ...counters, ...loader.counters, inflight: loader.inflight });
    const metricsReady = options.metrics
      ? registerMetrics(options.metrics.registry, inner.name, stats)
      : undefined;

    function keysOf(inputs: Tensors, opts: InferOptions | undefined): string[] {
      if (keyInput !== undefined) {
        const t = inputs[keyInput];
        if (!t) throw invalidArgument(`input "${keyInput}" (the entity keys) is missing`);
        if (!(t.dims.length === 1 || (t.dims.length === 2 && t.dims[1] === 1))) {
          throw invalidArgument(
            `input "${keyInput}" must be [batch] or [batch, 1], got [${t.dims.join(',')}]`,
          );
        }
        if (t.type !== 'string' && t.type !== 'int64' && t.type !== 'int32' && t.type !== 'uint64') {
          throw invalidArgument(`input "${keyInput}" must hold string or integer keys, got ${t.type}`);
        }
        const out: string[] = new Array(t.data.length);
        const data = t.data as ArrayLike<string | Uint8Array | number | bigint>;
        for (let i = 0; i < t.data.length; i++) {
          const v = data[i]!;
          out[i] = keyPrefix + (v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : String(v));
        }
        return out;
      }
      const v = opts?.parameters?.[keyParameter!];
      if (typeof v !== 'string' && typeof v !== 'number') {
        throw invalidArgument(`parameter "${keyParameter}" (the entity key) is missing or not a string`);
      }
      const rows = rowsOf(inputs);
      return new Array<string>(rows).fill(keyPrefix + String(v));
    }

    function rowsOf(inputs: Tensors): number {
      const t = target !== 'separate' ? inputs[target.input] : undefined;
      if (t) return t.dims[0] ?? 1;
      for (const name in inputs) {
        const d = inputs[name]!.dims[0];
        if (d !== undefined) return d;
      }
      return 1;
    }

    async function fetchAll(
      unique: string[],
      opts: InferOptions | undefined,
    ): Promise<Map<string, FeatureRecord | null>> {
      const found = new Map<string, FeatureRecord | null>();
      const waits: Promise<unknown>[] = [];
      const missing: string[] = [];
      for (const k of unique) {
        const c = loader.cached(k);
        if (c !== undefined) found.set(k, c);
        else if (merge)
          waits.push(
            loader.load(k).then((r) => {
              found.set(k, r);
            }),
          );
        else missing.push(k);
      }
      if (missing.length > 0) {
        waits.push(
          loader.loadNow(missing).then((rs) => {
            for (const [i, k] of missing.entries()) found.set(k, rs[i] ?? null);
          }),
        );
      }
      if (waits.length === 0) return found;
      let limit = timeoutMs;
      if (opts?.deadline !== undefined) limit = Math.min(limit, Math.max(0, opts.deadline - Date.now()));
      let timer: NodeJS.Timeout | undefined;
      let onAbort: (() => void) | undefined;
      const expiry = new Promise<typeof TIMEOUT>((resolve, reject) => {
        timer = setTimeout(() => resolve(TIMEOUT), limit);
        const signal = opts?.signal;
        if (signal) {
          onAbort = () => reject(cancelledFrom(signal));
          signal.addEventListener('abort', onAbort, { once: true });
        }
      });
      try {
        const r = await Promise.race([Promise.all(waits), expiry]);
        if (r === TIMEOUT) {
          counters.timeouts++;
          throw unavailable(`feature store did not answer within ${limit} ms`);
        }
        return found;
      } finally {
        clearTimeout(timer);
        if (onAbort) opts?.signal?.removeEventListener('abort', onAbort);
      }
    }

    function value(f: (typeof features)[number], v: FeatureValue | undefined): number | string | undefined {
      if (v === null || v === undefined) return undefined;
      if (f.type === 'string') return String(v);
      const n = typeof v === 'number' ? v : v.trim() === '' ? Number.NaN : Number(v);
      return Number.isNaN(n) ? undefined : n;
    }

    /** What callers send: the model's inputs, less what the lookup fills, plus the key input. */
    function metadata(): ModelMetadata {
      const meta = inner.metadata();
      const inputs: TensorInfo[] = [];
      for (const info of meta.inputs) {
        if (target === 'separate') {
          if (names.includes(info.name)) continue;
        } else if (info.name === target.input) {
          const width = info.dims[info.dims.length - 1];
          if (info.dims.length === 2 && width !== undefined && width >= 0) {
            if (width <= features.length) continue; // filled entirely by the lookup
            inputs.push({ ...info, dims: [info.dims[0]!, width - features.length] });
            continue;
          }
        }
        if (keyInput !== undefined && info.name === keyInput) continue;
        inputs.push(info);
      }
      if (keyInput !== undefined) {
        const own = meta.inputs.find((i) => i.name === keyInput);
        inputs.push(own ?? { name: keyInput, type: 'string', dims: [-1], batched: true });
      }
      return { ...meta, inputs };
    }

    return wrap(inner, {
      layer: 'features',
      metadata,
      infer: async function featureLookupInfer(inputs: Tensors, opts?: InferOptions): Promise<Tensors> {
        const started = performance.now();
        counters.requests++;
        if (opts?.signal?.aborted) throw cancelledFrom(opts.signal);
        const keys = keysOf(inputs, opts);
        const unique = [...new Set(keys)];
        let records: Map<string, FeatureRecord | null> | undefined;
        let failure: unknown;
        try {
          records = await fetchAll(unique, opts);
        } catch (err) {
          if (isServeError(err) && (err.code === 'CANCELLED' || err.code === 'DEADLINE_EXCEEDED')) throw err;
          if (opts?.deadline !== undefined && Date.now() >= opts.deadline) throw err;
          failure = err;
        }
        if (failure !== undefined) {
          const missingDefault = features.find((f) => f.default === undefined);
          if (onStoreError === 'reject' || missingDefault) {
            counters.storeErrorReject++;
            if (isServeError(failure) && failure.code === 'UNAVAILABLE') throw failure;
            const message = failure instanceof Error ? failure.message : String(failure);
            throw unavailable(
              onStoreError === 'reject'
                ? `feature store failed: ${message}`
                : `feature store failed and feature "${missingDefault!.name}" has no default: ${message}`,
              { cause: failure },
            );
          }
          counters.storeErrorDefault++;
        }
        // Resolve every entity's values once, applying the missing-value policy.
        const resolved = new Map<string, (number | string)[]>();
        for (const k of unique) {
          const rec = records?.get(k);
          const vals: (number | string)[] = new Array(features.length);
          let defaulted = false;
          for (let j = 0; j < features.length; j++) {
            const f = features[j]!;
            const v = failure === undefined ? value(f, rec?.[f.name]) : undefined;
            if (v !== undefined) vals[j] = v;
            else if (failure !== undefined) vals[j] = f.default!;
            else if (f.onMissing === 'default') {
              vals[j] = f.default!;
              defaulted = true;
            } else {
              counters.missingReject++;
              throw invalidArgument(
                rec
                  ? `entity "${k}" has no value for feature "${f.name}"`
                  : `entity "${k}" was not found in the feature store`,
                { details: { key: k, feature: f.name } },
              );
            }
          }
          if (failure === undefined) {
            if (defaulted) counters.missingDefault++;
            else counters.hits++;
          }
          resolved.set(k, vals);
        }
        const next: Tensors = { ...inputs };
        if (keyInput !== undefined && !keepKeyInput) delete next[keyInput];
        const rows = keys.length;
        if (target === 'separate') {
          features.forEach((f, j) => {
            next[f.name] = column(f.type, keys, (k) => resolved.get(k)![j]!, f.name);
          });
        } else {
          const index = order.map((f) => features.indexOf(f));
          const existing = inputs[target.input];
          let width0 = 0;
          if (existing) {
            if (existing.type !== 'float32' || existing.dims.length !== 2 || existing.dims[0] !== rows) {
              throw invalidArgument(
                `input "${target.input}" must be float32 [${rows}, k] to take the looked-up features, got ${existing.type}[${existing.dims.join(',')}]`,
              );
            }
            width0 = existing.dims[1]!;
          }
          const width = width0 + order.length;
          const data = new Float32Array(rows * width);
          const old = existing?.data as Float32Array | undefined;
          for (let r = 0; r < rows; r++) {
            if (old) data.set(old.subarray(r * width0, (r + 1) * width0), r * width);
            const vals = resolved.get(keys[r]!)!;
            for (let c = 0; c < index.length; c++) {
              const v = vals[index[c]!]!;
              data[r * width + width0 + c] = typeof v === 'number' ? v : Number(v);
            }
          }
          next[target.input] = { type: 'float32', dims: [rows, width], data };
        }
        if (opts?.context) {
          opts.context.featureLookupMs = performance.now() - started;
          opts.context.featureKeys = unique.length;
          if (failure !== undefined) opts.context.featureStoreError = true;
        }
        return inner.infer(next, opts);
      },
      stats,
      async warmup() {
        await metricsReady;
      },
    });
  };
}

function column(
  type: NonNullable<LookupFeature['type']>,
  keys: string[],
  get: (k: string) => number | string,
  name: string,
): Tensor {
  const n = keys.length;
  const dims = [n, 1];
  if (type === 'string') return { type, dims, data: keys.map((k) => String(get(k))) };
  const num = (k: string) => {
    const v = get(k);
    const x = typeof v === 'number' ? v : Number(v);
    if (Number.isNaN(x)) throw invalidArgument(`feature "${name}": "${v}" is not a number`);
    return x;
  };
  if (type === 'int64')
    return { type, dims, data: BigInt64Array.from(keys, (k) => BigInt(Math.trunc(num(k)))) };
  if (type === 'int32') return { type, dims, data: Int32Array.from(keys, num) };
  if (type === 'float64') return { type, dims, data: Float64Array.from(keys, num) };
  return { type: 'float32', dims, data: Float32Array.from(keys, num) };
}

/** Per registry: the sync functions of every lookup layer publishing to it. */
const syncs = new WeakMap<import('prom-client').Registry, Set<() => void>>();

async function registerMetrics(
  registry: import('prom-client').Registry,
  model: string,
  stats: () => FeatureLookupStats,
): Promise<void> {
  const prom = await importOptional<typeof import('prom-client')>('prom-client', {
    neededBy: 'the metrics option',
  });
  const decisions: [string, keyof FeatureLookupStats][] = [
    ['hit', 'hits'],
    ['cache_hit', 'cacheHits'],
    ['missing_default', 'missingDefault'],
    ['missing_reject', 'missingReject'],
    ['store_error_default', 'storeErrorDefault'],
    ['store_error_reject', 'storeErrorReject'],
    ['timeout', 'timeouts'],
  ];
  let set = syncs.get(registry);
  if (!set) {
    set = new Set<() => void>();
    syncs.set(registry, set);
  }
  const all = set;
  const runAll = () => {
    for (const f of all) f();
  };
  // Counters are brought up to date when scraped, so the request path never touches prom-client.
  const lookups = getOrCreateMetric(
    registry,
    'mlserve_feature_lookups_total',
    () =>
      new prom.Counter({
        name: 'mlserve_feature_lookups_total',
        help: 'Entity lookups by decision: hit, cache_hit, missing_default, missing_reject, store_error_default, store_error_reject, timeout',
        labelNames: ['model', 'decision'],
        registers: [registry],
        collect: runAll,
      }),
  );
  const trips = getOrCreateMetric(
    registry,
    'mlserve_feature_store_round_trips_total',
    () =>
      new prom.Counter({
        name: 'mlserve_feature_store_round_trips_total',
        help: 'Calls to the feature store (merged lookups count once)',
        labelNames: ['model'],
        registers: [registry],
        collect: runAll,
      }),
  );
  const published = new Map<string, number>();
  let synced = false;
  set.add(() => {
    // Both counters call this on a scrape; publish each delta once.
    const s = stats();
    for (const [decision, key] of decisions) {
      const now = s[key] ?? 0;
      const d = now - (published.get(decision) ?? 0);
      if (d > 0 || !synced) lookups.inc({ model, decision }, d);
      published.set(decision, now);
    }
    const t = s.roundTrips - (published.get('trips') ?? 0);
    if (t > 0 || !synced) trips.inc({ model }, t);
    published.set('trips', s.roundTrips);
    synced = true;
  });
}
