import { type DataType, invalidArgument, isDataType, type TensorInfo, warnDeprecated } from '@mlserve/core';

/** Which versions of a model are served. */
export type VersionPolicy =
  /** The newest `latest` versions (by number). */
  | { latest: number }
  /** Every version on disk. */
  | 'all'
  /** Exactly these versions (those that exist). */
  | { specific: string[] };

/** Warmup settings of a model: sample requests run before a version turns ready. */
export interface WarmupConfig {
  /** Run warmup at all (default true). */
  enabled: boolean;
  /** Stop starting new sample requests after this long (default 10 000 ms). */
  budgetMs: number;
  /** Batch sizes to warm (default: 1, the batcher's preferred sizes, powers of two, and the maximum). */
  batchSizes?: number[];
  /** The largest batch to warm when `batchSizes` is not given (default: the batcher's max or 32). */
  maxBatchSize?: number;
  /** Sample requests run before the generated ones, each input given as `{ dims, data }` or `{ dims, fill }`. */
  samples?: WarmupSample[];
}

/** One explicit warmup request. */
export interface WarmupSample {
  inputs: Record<string, { dims: number[]; data?: (number | string | boolean)[]; fill?: number }>;
}

/** How outputs of two versions are compared: the same class (argmax of the last axis) or every value within `atol`. */
export type CompareMode = 'argmax' | { atol: number };

/** Where shadow requests come from when live traffic is too thin. */
export type ReplaySource =
  /** The warmup samples (config `warmup.samples`, else generated zeros). */
  | 'warmup'
  /** A payload log of `@mlserve/monitor`'s `jsonLinesSink` (JSON lines), a plain file name in the model directory. */
  | { payloadLog: string }
  /** No replay: only mirrored live requests. */
  | false;

/** The gate a new version passes in shadow before it takes traffic. */
export interface GateConfig {
  /** Its p99 compute time on the shadowed requests may not exceed this (ms). */
  p99Ms?: number;
  /** Its p99 over the serving version's p99, on the same requests, may not exceed this (default 1.2). */
  maxP99Ratio: number;
  /** The share of rows where its answer agrees with the serving version's (default 0.99). */
  minAgreement: number;
  compare: CompareMode;
  /** Shadow requests to compare before deciding (default 200). */
  shadowRequests: number;
  /** Decide (reject when too few requests were compared) after this long (default 60 000 ms). */
  maxShadowMs: number;
  /** The most of one core the shadow may use, 0-1 (default 0.05): it waits this much longer than it ran. */
  maxShadowShare: number;
  replay: ReplaySource;
}

/** Canary steps after the gate: the share of traffic at each step, and the requests each step must see. */
export interface CanaryConfig {
  /** Percent of the model's traffic at each step, ascending, the last usually 100 (e.g. [5, 25, 50, 100]). */
  steps: number[];
  /** Requests the new version must answer at a step before the next (default 1000). */
  stepRequests: number;
  /** Roll back when the share of failed requests at a step exceeds this (default 0.01). */
  maxErrorRate: number;
}

/** A model's rollout: new versions pass a gate in shadow, then optionally canary steps. */
export interface RolloutConfig {
  gate?: GateConfig;
  canary?: CanaryConfig;
}

/** Worker pool settings: run the model in worker threads instead of the main thread. */
export interface WorkersConfig {
  threads: number;
  intraOpThreads?: number;
  maxQueue?: number;
  idleTimeoutMs?: number;
}

/** A model's `config.json`, validated and with defaults filled in. */
/** `cache.redis` in config.json: a URL, or the URL with the store's timeout and key prefix. */
export interface CacheRedisConfig {
  /** `redis://host:6379/0` (or `rediss://`). */
  url: string;
  /** Longest a lookup may take before it is a miss, ms (default 50). */
  timeoutMs?: number;
  /** Key prefix (default `mlserve:cache:`). */
  prefix?: string;
}

export interface ModelConfig {
  /** Free text for people reading the repository. */
  description?: string;
  /**
   * Under a model memory budget (`modelMemoryBudget`, `--model-memory-budget`), never unload this
   * model's versions to make room for others (default false). Without a budget it changes nothing.
   */
  pinned?: boolean;
  /**
   * The model's inputs and outputs as config.json declares them (`"inputs"` and `"outputs"`, both
   * or neither): under a memory budget the version is then served on demand without loading it at
   * start, whatever its backend or loader; at its first load the model's own metadata must match
   * (INVALID_ARGUMENT naming the difference otherwise). ONNX models loaded by the default loader
   * need no declaration: their file's header is read instead.
   */
  signature?: { inputs: TensorInfo[]; outputs: TensorInfo[] };
  /** `onnx` or `tfjs`; inferred from the files when absent. */
  backend?: 'onnx' | 'tfjs';
  /** The model file inside a version directory (default `model.onnx` / `model.json` / `saved_model.pb`). */
  modelFile?: string;
  /** Options passed to the backend's loader (intraOpNumThreads, executionProviders, ...). */
  backendOptions: Record<string, unknown>;
  /** Padding values per input, passed to the backend. */
  padValues?: Record<string, number>;
  /** Options of `@mlserve/batching`, or undefined when batching is off (or left to the default). */
  batching?: Record<string, unknown>;
  /**
   * True when config.json says nothing about batching (no file, or no `batching` field): the
   * repository then batches the model with `maxDelayMs: 'auto'` if its batch dim is dynamic and a
   * batch of distinct rows equals those rows run alone (see the README). `"batching": false`
   * turns it off.
   */
  batchingByDefault?: boolean;
  /** Options of `@mlserve/cache`'s responseCache, or undefined when caching is off. */
  cache?: Record<string, unknown>;
  /** `cache.redis`: keep this model's response cache in Redis (the server makes the client). */
  cacheRedis?: CacheRedisConfig;
  /** Worker pool settings, or undefined to run in the main thread (or where the default puts it). */
  workers?: WorkersConfig;
  /**
   * True when config.json says nothing about `workers`: the repository's option (the CLI's
   * `--workers`) or the default placement decides. `"workers": 0` (or `false`) runs the model in
   * the main thread.
   */
  workersByDefault?: boolean;
  versionPolicy: VersionPolicy;
  /** Version labels: `{ "stable": "1", "canary": "2" }`. */
  labels: Record<string, string>;
  /** Traffic split between versions by weight, sticky per request id: `{ "1": 90, "2": 10 }`. */
  traffic?: Record<string, number>;
  /** Gate and canary steps for new versions (absent: a new version takes traffic once ready). */
  rollout?: RolloutConfig;
  warmup: WarmupConfig;
  /** Classification labels file in the model (or version) directory (default `labels.txt`). */
  labelsFile: string;
  /** Validation of requests against the signature (default on); `maxBatchSize` caps request rows. */
  validation: { enabled: boolean; maxBatchSize?: number };
}

const TOP_LEVEL = new Set([
  'backend',
  'modelFile',
  'backendOptions',
  'padValues',
  'batching',
  'cache',
  'workers',
  'versionPolicy',
  'labels',
  'traffic',
  'rollout',
  'warmup',
  'labelsFile',
  'validation',
  'description',
  'pinned',
  'inputs',
  'outputs',
]);

const FILE_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const LABEL_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const VERSION_RE = /^\d{1,15}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validates a parsed `config.json`. Every message names the file and the field:
 * `models/mnist/config.json: "batching.maxBatchSize" must be a positive integer`.
 * Throws INVALID_ARGUMENT.
 *
 * @example
 * ```ts
 * const config = parseModelConfig(JSON.parse(text), 'mnist/config.json');
 * if (config.batching) layers.push(batching(config.batching));
 * ```
 */
export function parseModelConfig(raw: unknown, file: string): ModelConfig {
  const fail = (field: string, why: string) => invalidArgument(`${file}: "${field}" ${why}`);
  if (raw === undefined) raw = {};
  if (!isObject(raw)) throw invalidArgument(`${file}: the config must be a JSON object`);
  for (const key of Object.keys(raw)) {
    if (!TOP_LEVEL.has(key)) throw fail(key, `is not a known field (known: ${[...TOP_LEVEL].join(', ')})`);
  }
  const posInt = (v: unknown, field: string, min = 1): number => {
    if (!Number.isSafeInteger(v) || (v as number) < min) {
      throw fail(field, min === 0 ? 'must be a non-negative integer' : 'must be a positive integer');
    }
    return v as number;
  };
  const optionsObject = (v: unknown, field: string): Record<string, unknown> | undefined => {
    if (v === undefined || v === false) return undefined;
    if (v === true) return {};
    if (!isObject(v)) throw fail(field, 'must be true, false or an object of options');
    if (v.enabled === false) return undefined;
    const { enabled: _enabled, ...rest } = v;
    return rest;
  };

  const config: ModelConfig = {
    backendOptions: {},
    versionPolicy: { latest: 1 },
    labels: {},
    warmup: { enabled: true, budgetMs: 10_000 },
    labelsFile: 'labels.txt',
    validation: { enabled: true },
  };

  if (raw.description !== undefined) {
    if (typeof raw.description !== 'string') throw fail('description', 'must be a string');
    config.description = raw.description;
  }
  if (raw.pinned !== undefined) {
    if (typeof raw.pinned !== 'boolean') throw fail('pinned', 'must be true or false');
    if (raw.pinned) config.pinned = true;
  }
  if (raw.inputs !== undefined || raw.outputs !== undefined) {
    if (raw.inputs === undefined || raw.outputs === undefined)
      throw fail(
        raw.inputs === undefined ? 'inputs' : 'outputs',
        'must be given with the other (inputs and outputs, or neither)',
      );
    config.signature = {
      inputs: parseTensorInfos(raw.inputs, 'inputs', fail),
      outputs: parseTensorInfos(raw.outputs, 'outputs', fail),
    };
  }
  if (raw.backend !== undefined) {
    if (raw.backend !== 'onnx' && raw.backend !== 'tfjs') throw fail('backend', 'must be "onnx" or "tfjs"');
    config.backend = raw.backend;
  }
  if (raw.modelFile !== undefined) {
    if (typeof raw.modelFile !== 'string' || !FILE_RE.test(raw.modelFile)) {
      throw fail('modelFile', 'must be a plain file name (no slashes, no "..")');
    }
    config.modelFile = raw.modelFile;
  }
  if (raw.backendOptions !== undefined) {
    if (!isObject(raw.backendOptions)) throw fail('backendOptions', 'must be an object');
    config.backendOptions = raw.backendOptions;
  }
  if (raw.padValues !== undefined) {
    if (!isObject(raw.padValues)) throw fail('padValues', 'must be an object of input name to number');
    for (const [k, v] of Object.entries(raw.padValues)) {
      if (typeof v !== 'number' || !Number.isFinite(v))
        throw fail(`padValues.${k}`, 'must be a finite number');
    }
    config.padValues = raw.padValues as Record<string, number>;
  }

  if (raw.batching === undefined) config.batchingByDefault = true;
  const batching = optionsObject(raw.batching, 'batching');
  if (batching) {
    for (const key of ['maxBatchSize', 'maxQueue', 'maxQueueSize', 'maxConcurrentBatches'] as const) {
      if (batching[key] !== undefined) posInt(batching[key], `batching.${key}`);
    }
    if (batching.maxQueueSize !== undefined) {
      warnDeprecated(
        'config.json batching.maxQueueSize',
        `${file}: "batching.maxQueueSize" is deprecated; use "batching.maxQueue"`,
      );
      batching.maxQueue ??= batching.maxQueueSize;
      delete batching.maxQueueSize;
    }
    const delay = batching.maxDelayMs;
    if (delay !== undefined && delay !== 'auto' && !(typeof delay === 'number' && delay >= 0)) {
      throw fail('batching.maxDelayMs', 'must be a non-negative number or "auto"');
    }
    if (batching.preferredBatchSizes !== undefined) {
      if (!Array.isArray(batching.preferredBatchSizes)) {
        throw fail('batching.preferredBatchSizes', 'must be an array of positive integers');
      }
      for (const [i, v] of batching.preferredBatchSizes.entries())
        posInt(v, `batching.preferredBatchSizes[${i}]`);
    }
    config.batching = batching;
  }

  const cache = optionsObject(raw.cache, 'cache');
  if (cache) {
    for (const key of ['max', 'maxSize', 'ttlMs'] as const) {
      if (cache[key] !== undefined) posInt(cache[key], `cache.${key}`);
    }
    if (cache.redis !== undefined) {
      const r = typeof cache.redis === 'string' ? { url: cache.redis } : cache.redis;
      if (!isObject(r) || typeof r.url !== 'string' || !/^rediss?:\/\//.test(r.url)) {
        throw fail(
          'cache.redis',
          'must be a redis:// URL or { "url": "redis://...", "timeoutMs": 50, "prefix": "..." }',
        );
      }
      for (const key of Object.keys(r)) {
        if (!['url', 'timeoutMs', 'prefix'].includes(key)) {
          throw fail(`cache.redis.${key}`, 'is not a known field (known: url, timeoutMs, prefix)');
        }
      }
      if (r.timeoutMs !== undefined) posInt(r.timeoutMs, 'cache.redis.timeoutMs');
      if (r.prefix !== undefined && typeof r.prefix !== 'string')
        throw fail('cache.redis.prefix', 'must be a string');
      config.cacheRedis = r as unknown as CacheRedisConfig;
      delete cache.redis;
    }
    if (cache.max === undefined && cache.maxSize === undefined) cache.max = 10_000;
    config.cache = cache;
  }

  if (raw.workers === undefined) config.workersByDefault = true;
  if (raw.workers !== undefined && raw.workers !== false && raw.workers !== 0) {
    if (typeof raw.workers === 'number') {
      config.workers = { threads: posInt(raw.workers, 'workers') };
    } else if (isObject(raw.workers)) {
      const w = raw.workers;
      for (const key of Object.keys(w)) {
        if (!['threads', 'intraOpThreads', 'maxQueue', 'idleTimeoutMs', 'idleTimeout'].includes(key)) {
          throw fail(
            `workers.${key}`,
            'is not a known field (known: threads, intraOpThreads, maxQueue, idleTimeoutMs)',
          );
        }
      }
      const workers: WorkersConfig = { threads: posInt(w.threads ?? 1, 'workers.threads') };
      if (w.intraOpThreads !== undefined)
        workers.intraOpThreads = posInt(w.intraOpThreads, 'workers.intraOpThreads');
      if (w.maxQueue !== undefined) workers.maxQueue = posInt(w.maxQueue, 'workers.maxQueue', 0);
      if (w.idleTimeout !== undefined) {
        workers.idleTimeoutMs = posInt(w.idleTimeout, 'workers.idleTimeout', 0);
        warnDeprecated(
          'config.json workers.idleTimeout',
          `${file}: "workers.idleTimeout" is deprecated; use "workers.idleTimeoutMs"`,
        );
      }
      if (w.idleTimeoutMs !== undefined)
        workers.idleTimeoutMs = posInt(w.idleTimeoutMs, 'workers.idleTimeoutMs', 0);
      config.workers = workers;
    } else {
      throw fail(
        'workers',
        'must be a thread count or an object { threads, intraOpThreads, maxQueue, idleTimeoutMs }',
      );
    }
  }

  const vp = raw.versionPolicy;
  if (vp !== undefined) {
    if (vp === 'all') config.versionPolicy = 'all';
    else if (vp === 'latest') config.versionPolicy = { latest: 1 };
    else if (isObject(vp) && 'latest' in vp && Object.keys(vp).length === 1) {
      const n = isObject(vp.latest) ? vp.latest.numVersions : vp.latest;
      config.versionPolicy = { latest: posInt(n, 'versionPolicy.latest') };
    } else if (isObject(vp) && 'specific' in vp && Object.keys(vp).length === 1) {
      const list = isObject(vp.specific) ? vp.specific.versions : vp.specific;
      if (!Array.isArray(list) || list.length === 0) {
        throw fail('versionPolicy.specific', 'must be a non-empty array of version numbers');
      }
      config.versionPolicy = {
        specific: list.map((v, i) => {
          const s = typeof v === 'number' ? String(v) : v;
          if (typeof s !== 'string' || !VERSION_RE.test(s)) {
            throw fail(`versionPolicy.specific[${i}]`, 'must be a version number');
          }
          return String(Number(s));
        }),
      };
    } else {
      throw fail('versionPolicy', 'must be "all", { "latest": N } or { "specific": [versions] }');
    }
  }

  if (raw.labels !== undefined) {
    if (!isObject(raw.labels))
      throw fail('labels', 'must be an object of label to version, e.g. { "stable": "1" }');
    for (const [label, v] of Object.entries(raw.labels)) {
      if (!LABEL_RE.test(label)) throw fail(`labels.${label}`, 'is not a valid label name');
      const s = typeof v === 'number' ? String(v) : v;
      if (typeof s !== 'string' || !VERSION_RE.test(s))
        throw fail(`labels.${label}`, 'must be a version number');
      config.labels[label] = String(Number(s));
    }
  }

  if (raw.traffic !== undefined) {
    if (!isObject(raw.traffic))
      throw fail('traffic', 'must be an object of version to weight, e.g. { "1": 90, "2": 10 }');
    const traffic: Record<string, number> = {};
    for (const [v, w] of Object.entries(raw.traffic)) {
      if (!VERSION_RE.test(v)) throw fail(`traffic.${v}`, 'must be keyed by a version number');
      if (typeof w !== 'number' || !Number.isFinite(w) || w < 0) {
        throw fail(`traffic.${v}`, 'must be a non-negative weight');
      }
      traffic[String(Number(v))] = w;
    }
    const keys = Object.keys(traffic);
    if (keys.length < 2) throw fail('traffic', 'must split between at least two versions');
    if (Object.values(traffic).every((w) => w === 0))
      throw fail('traffic', 'needs at least one positive weight');
    config.traffic = traffic;
  }

  if (raw.rollout !== undefined && raw.rollout !== false) {
    config.rollout = parseRollout(raw.rollout, fail);
  }

  const wu = raw.warmup;
  if (wu === false) config.warmup.enabled = false;
  else if (wu !== undefined && wu !== true) {
    if (!isObject(wu)) throw fail('warmup', 'must be true, false or an object');
    for (const key of Object.keys(wu)) {
      if (!['enabled', 'budgetMs', 'batchSizes', 'maxBatchSize', 'samples'].includes(key)) {
        throw fail(
          `warmup.${key}`,
          'is not a known field (known: enabled, budgetMs, batchSizes, maxBatchSize, samples)',
        );
      }
    }
    if (wu.enabled !== undefined) {
      if (typeof wu.enabled !== 'boolean') throw fail('warmup.enabled', 'must be a boolean');
      config.warmup.enabled = wu.enabled;
    }
    if (wu.budgetMs !== undefined) config.warmup.budgetMs = posInt(wu.budgetMs, 'warmup.budgetMs', 0);
    if (wu.maxBatchSize !== undefined)
      config.warmup.maxBatchSize = posInt(wu.maxBatchSize, 'warmup.maxBatchSize');
    if (wu.batchSizes !== undefined) {
      if (!Array.isArray(wu.batchSizes))
        throw fail('warmup.batchSizes', 'must be an array of positive integers');
      config.warmup.batchSizes = wu.batchSizes.map((v, i) => posInt(v, `warmup.batchSizes[${i}]`));
    }
    if (wu.samples !== undefined) {
      if (!Array.isArray(wu.samples)) throw fail('warmup.samples', 'must be an array of { inputs }');
      config.warmup.samples = wu.samples.map((s, i) => parseSample(s, `warmup.samples[${i}]`, fail));
    }
  }

  if (raw.labelsFile !== undefined) {
    if (typeof raw.labelsFile !== 'string' || !FILE_RE.test(raw.labelsFile)) {
      throw fail('labelsFile', 'must be a plain file name (no slashes, no "..")');
    }
    config.labelsFile = raw.labelsFile;
  }

  const val = raw.validation;
  if (val === false) config.validation.enabled = false;
  else if (val !== undefined && val !== true) {
    if (!isObject(val)) throw fail('validation', 'must be true, false or { maxBatchSize }');
    if (val.maxBatchSize !== undefined)
      config.validation.maxBatchSize = posInt(val.maxBatchSize, 'validation.maxBatchSize');
    if (val.enabled === false) config.validation.enabled = false;
  }
  return config;
}

/** `[{ "name": "image", "type": "float32", "dims": [-1, 1, 28, 28] }]`: dim 0 of -1 is the batch dim. */
function parseTensorInfos(
  raw: unknown,
  field: string,
  fail: (field: string, why: string) => Error,
): TensorInfo[] {
  if (!Array.isArray(raw) || raw.length === 0)
    throw fail(field, 'must be a non-empty array of { "name", "type", "dims" }');
  const seen = new Set<string>();
  return raw.map((t, i) => {
    const f = `${field}[${i}]`;
    if (!isObject(t)) throw fail(f, 'must be { "name", "type", "dims" }');
    for (const key of Object.keys(t)) {
      if (!['name', 'type', 'dims', 'dimNames'].includes(key))
        throw fail(`${f}.${key}`, 'is not a known field (known: name, type, dims, dimNames)');
    }
    if (typeof t.name !== 'string' || t.name.length === 0)
      throw fail(`${f}.name`, 'must be a non-empty string');
    if (seen.has(t.name)) throw fail(`${f}.name`, `repeats "${t.name}"`);
    seen.add(t.name);
    if (typeof t.type !== 'string' || !isDataType(t.type))
      throw fail(`${f}.type`, 'must be an element type such as "float32", "int64" or "string"');
    if (!Array.isArray(t.dims) || !t.dims.every((d) => Number.isSafeInteger(d) && (d as number) >= -1))
      throw fail(`${f}.dims`, 'must be an array of dims (-1 for a dynamic one)');
    const dims = t.dims as number[];
    const info: TensorInfo = { name: t.name, type: t.type as DataType, dims, batched: dims[0] === -1 };
    if (t.dimNames !== undefined) {
      if (
        !Array.isArray(t.dimNames) ||
        t.dimNames.length !== dims.length ||
        !t.dimNames.every((n) => n === null || typeof n === 'string')
      )
        throw fail(`${f}.dimNames`, 'must be an array of names or null, one per dim');
      info.dimNames = t.dimNames as (string | null)[];
    }
    return info;
  });
}

function parseSample(raw: unknown, field: string, fail: (field: string, why: string) => Error): WarmupSample {
  if (!isObject(raw) || !isObject(raw.inputs))
    throw fail(field, 'must be { "inputs": { name: { dims, data | fill } } }');
  const inputs: WarmupSample['inputs'] = {};
  for (const [name, t] of Object.entries(raw.inputs)) {
    const f = `${field}.inputs.${name}`;
    if (!isObject(t)) throw fail(f, 'must be { dims, data } or { dims, fill }');
    if (!Array.isArray(t.dims) || !t.dims.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw fail(`${f}.dims`, 'must be an array of non-negative integers');
    }
    const dims = t.dims as number[];
    const count = dims.reduce((a, b) => a * b, 1);
    if (t.data !== undefined) {
      if (!Array.isArray(t.data) || t.data.length !== count) {
        throw fail(`${f}.data`, `must be an array of ${count} values (the product of dims)`);
      }
      inputs[name] = { dims, data: t.data as (number | string | boolean)[] };
    } else {
      const fill = t.fill ?? 0;
      if (typeof fill !== 'number') throw fail(`${f}.fill`, 'must be a number');
      inputs[name] = { dims, fill };
    }
  }
  return { inputs };
}

function parseRollout(raw: unknown, fail: (field: string, why: string) => Error): RolloutConfig {
  if (!isObject(raw)) throw fail('rollout', 'must be an object { gate, canary }');
  const known = (obj: Record<string, unknown>, field: string, keys: string[]) => {
    for (const key of Object.keys(obj)) {
      if (!keys.includes(key))
        throw fail(`${field}.${key}`, `is not a known field (known: ${keys.join(', ')})`);
    }
  };
  known(raw, 'rollout', ['gate', 'canary']);
  const num = (v: unknown, field: string, min: number, max = Number.POSITIVE_INFINITY): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
      throw fail(
        field,
        max === Number.POSITIVE_INFINITY
          ? `must be a number >= ${min}`
          : `must be a number from ${min} to ${max}`,
      );
    }
    return v;
  };
  const int = (v: unknown, field: string): number => {
    if (!Number.isSafeInteger(v) || (v as number) < 1) throw fail(field, 'must be a positive integer');
    return v as number;
  };
  const out: RolloutConfig = {};
  const g = raw.gate === true ? {} : raw.gate;
  if (g !== undefined && g !== false) {
    if (!isObject(g)) throw fail('rollout.gate', 'must be true or an object');
    known(g, 'rollout.gate', [
      'p99Ms',
      'maxP99Ratio',
      'minAgreement',
      'compare',
      'shadowRequests',
      'maxShadowMs',
      'maxShadowShare',
      'replay',
    ]);
    const gate: GateConfig = {
      maxP99Ratio: g.maxP99Ratio === undefined ? 1.2 : num(g.maxP99Ratio, 'rollout.gate.maxP99Ratio', 0),
      minAgreement:
        g.minAgreement === undefined ? 0.99 : num(g.minAgreement, 'rollout.gate.minAgreement', 0, 1),
      compare: 'argmax',
      shadowRequests:
        g.shadowRequests === undefined ? 200 : int(g.shadowRequests, 'rollout.gate.shadowRequests'),
      maxShadowMs: g.maxShadowMs === undefined ? 60_000 : int(g.maxShadowMs, 'rollout.gate.maxShadowMs'),
      maxShadowShare:
        g.maxShadowShare === undefined ? 0.05 : num(g.maxShadowShare, 'rollout.gate.maxShadowShare', 0.01, 1),
      replay: 'warmup',
    };
    if (g.p99Ms !== undefined) gate.p99Ms = num(g.p99Ms, 'rollout.gate.p99Ms', 0);
    if (g.compare !== undefined) {
      if (g.compare === 'argmax') gate.compare = 'argmax';
      else if (isObject(g.compare) && Object.keys(g.compare).length === 1 && 'atol' in g.compare) {
        gate.compare = { atol: num(g.compare.atol, 'rollout.gate.compare.atol', 0) };
      } else throw fail('rollout.gate.compare', 'must be "argmax" or { "atol": number }');
    }
    if (g.replay !== undefined) {
      if (g.replay === false || g.replay === 'warmup') gate.replay = g.replay;
      else if (
        isObject(g.replay) &&
        Object.keys(g.replay).length === 1 &&
        typeof g.replay.payloadLog === 'string' &&
        FILE_RE.test(g.replay.payloadLog)
      ) {
        gate.replay = { payloadLog: g.replay.payloadLog };
      } else {
        throw fail(
          'rollout.gate.replay',
          'must be "warmup", false or { "payloadLog": "<file in the model directory>" }',
        );
      }
    }
    out.gate = gate;
  }
  const c = raw.canary;
  if (c !== undefined && c !== false) {
    if (!isObject(c)) throw fail('rollout.canary', 'must be an object { steps, stepRequests, maxErrorRate }');
    known(c, 'rollout.canary', ['steps', 'stepRequests', 'maxErrorRate']);
    if (!Array.isArray(c.steps) || c.steps.length === 0) {
      throw fail('rollout.canary.steps', 'must be a non-empty array of percentages, ascending');
    }
    const steps = c.steps.map((v, i) => num(v, `rollout.canary.steps[${i}]`, 0, 100));
    for (let i = 1; i < steps.length; i++) {
      if (steps[i]! <= steps[i - 1]!) throw fail('rollout.canary.steps', 'must ascend');
    }
    if (steps[0] === 0) throw fail('rollout.canary.steps[0]', 'must be above 0');
    out.canary = {
      steps,
      stepRequests: c.stepRequests === undefined ? 1000 : int(c.stepRequests, 'rollout.canary.stepRequests'),
      maxErrorRate:
        c.maxErrorRate === undefined ? 0.01 : num(c.maxErrorRate, 'rollout.canary.maxErrorRate', 0, 1),
    };
  }
  return out;
}
