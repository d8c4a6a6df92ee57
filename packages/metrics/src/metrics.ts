import {
  type GenericMiddleware,
  getOrCreateMetric,
  type InferContext,
  type InferOptions,
  type Model,
  preserveSignature,
  type Tensors,
  toServeError,
  wrap,
} from '@mlserve/core';
import { Counter, register as defaultRegistry, Gauge, Histogram, type Registry } from 'prom-client';

/** Options of {@link metrics}. */
export interface MetricsOptions {
  /** The prom-client registry to register on (default: prom-client's global `register`). */
  registry?: Registry;
  /** Prefix of the histogram names (default `mlserve_`). The Triton-named counters keep their names. */
  prefix?: string;
  /** Histogram buckets in seconds (default: 0.5 ms to 10 s). */
  buckets?: number[];
}

const DEFAULT_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Instruments {
  success: Counter<'model' | 'version'>;
  failure: Counter<'model' | 'version' | 'reason'>;
  inferences: Counter<'model' | 'version'>;
  executions: Counter<'model' | 'version'>;
  requestUs: Counter<'model' | 'version'>;
  queueUs: Counter<'model' | 'version'>;
  computeUs: Counter<'model' | 'version'>;
  pending: Gauge<'model' | 'version'>;
  cacheHits: Counter<'model' | 'version'>;
  cacheMisses: Counter<'model' | 'version'>;
  requestSeconds: Histogram<'model' | 'version'>;
  queueSeconds: Histogram<'model' | 'version'>;
  computeSeconds: Histogram<'model' | 'version'>;
}

type Labels = 'model' | 'version' | 'reason';

/**
 * Counter and gauge updates are kept as plain numbers per model and applied to prom-client when
 * it collects (every read of a metric: a scrape, `registry.metrics()`, `metric.get()`), so a
 * request does no label hashing for them. Flushers run per registry.
 */
const flushers = new WeakMap<Registry, Set<() => void>>();
/** Metrics made by this module, whose `collect()` runs the registry's flushers. */
const flushing = new WeakSet<object>();

function flushAll(registry: Registry): void {
  const set = flushers.get(registry);
  if (set) for (const flush of set) flush();
}

/** Creates (or finds, when another `metrics()` already made them) the instruments on a registry. */
function instruments(registry: Registry, prefix: string, buckets: number[]): Instruments {
  const labelNames: Labels[] = ['model', 'version'];
  const counter = (name: string, help: string, extra: Labels[] = []) =>
    getOrCreateMetric(registry, name, () => {
      const made = new Counter({
        name,
        help,
        labelNames: [...labelNames, ...extra],
        registers: [registry],
        collect() {
          flushAll(registry);
        },
      });
      flushing.add(made);
      return made;
    });
  const histogram = (name: string, help: string) =>
    getOrCreateMetric(
      registry,
      name,
      () => new Histogram({ name, help, labelNames, buckets, registers: [registry] }),
    );
  return {
    success: counter(
      'nv_inference_request_success',
      'Number of successful inference requests, all batch sizes',
    ),
    failure: counter('nv_inference_request_failure', 'Number of failed inference requests, all batch sizes', [
      'reason',
    ]),
    inferences: counter(
      'nv_inference_count',
      'Number of inferences performed (a batch of n counts n; cache hits included)',
    ),
    executions: counter(
      'nv_inference_exec_count',
      'Number of model executions performed (a batch counts once; cache hits excluded)',
    ),
    requestUs: counter(
      'nv_inference_request_duration_us',
      'Cumulative inference request duration in microseconds',
    ),
    queueUs: counter(
      'nv_inference_queue_duration_us',
      'Cumulative inference queuing duration in microseconds',
    ),
    computeUs: counter(
      'nv_inference_compute_infer_duration_us',
      'Cumulative compute inference duration in microseconds (each request of a batch is charged the batch time)',
    ),
    pending: getOrCreateMetric(registry, 'nv_inference_pending_request_count', () => {
      const made = new Gauge({
        name: 'nv_inference_pending_request_count',
        help: 'Instantaneous number of requests in flight in the model, queued or running',
        labelNames,
        registers: [registry],
        collect() {
          flushAll(registry);
        },
      });
      flushing.add(made);
      return made;
    }),
    cacheHits: counter('nv_cache_num_hits_per_model', 'Number of response cache hits per model'),
    cacheMisses: counter('nv_cache_num_misses_per_model', 'Number of response cache misses per model'),
    requestSeconds: histogram(`${prefix}request_duration_seconds`, 'End-to-end inference request duration'),
    queueSeconds: histogram(
      `${prefix}queue_duration_seconds`,
      'Time a request waited in queues (batcher, limits)',
    ),
    computeSeconds: histogram(
      `${prefix}compute_duration_seconds`,
      'Backend compute time of the batch that carried the request',
    ),
  };
}

/** The models each registry's `mlserve_layer_stat` gauge reads on scrape. */
const watched = new WeakMap<Registry, Set<Model>>();

/**
 * `mlserve_layer_stat{model,version,layer,stat}`: every numeric counter the layers below report
 * through `stats()` (batching's batches, the cache's evictions, a pool's restarts...), read at
 * scrape time, so no layer needs to know about Prometheus.
 */
function watchLayerStats(registry: Registry, model: Model): void {
  let models = watched.get(registry);
  if (!models) {
    const set = new Set<Model>();
    models = set;
    watched.set(registry, set);
    getOrCreateMetric(
      registry,
      'mlserve_layer_stat',
      () =>
        new Gauge({
          name: 'mlserve_layer_stat',
          help: "Numeric counters from each layer's stats(), read at scrape time",
          labelNames: ['model', 'version', 'layer', 'stat'],
          registers: [registry],
          collect() {
            this.reset();
            for (const m of set) {
              let stats: Record<string, unknown>;
              try {
                stats = m.stats?.() ?? {};
              } catch {
                continue;
              }
              for (const [layer, values] of Object.entries(stats)) {
                if (typeof values !== 'object' || values === null) continue;
                for (const [stat, v] of Object.entries(values)) {
                  if (typeof v === 'number' && Number.isFinite(v)) {
                    this.set({ model: m.name, version: m.version, layer, stat }, v);
                  }
                }
              }
            }
          },
        }),
    );
  }
  models.add(model);
}

/** A histogram series as prom-client 15 keeps it (its `hashMap` values). */
interface SeriesRecord {
  labels: Record<string, unknown>;
  bucketValues: Record<string, number>;
  sum: number;
  count: number;
}

/**
 * Observes one series of a histogram without prom-client's per-call work (a closure, label
 * validation, hashing the labels): after a first ordinary `observe`, the series' record is found
 * once and then updated in place exactly as prom-client's own observe does (sum, count, the first
 * bucket whose bound holds the value). Whenever the record is not where it was (the registry was
 * reset, the series removed, exemplars on, another prom-client layout), it observes the ordinary
 * way and looks again.
 */
function seriesObserver(h: Histogram<'model' | 'version'>, labels: { model: string; version: string }) {
  const inside = h as unknown as {
    hashMap?: Record<string, SeriesRecord>;
    upperBounds?: readonly number[];
    enableExemplars?: boolean;
  };
  let record: SeriesRecord | undefined;
  let key = '';
  // The bounds as numbers and as the property names prom-client's bucketValues uses (String(b)),
  // laid out once: converting a fractional bound to its name on every observe is most of its cost.
  let bounds: readonly number[] | undefined;
  let names: string[] = [];
  return (value: number): void => {
    const map = inside.hashMap;
    if (
      record !== undefined &&
      map !== undefined &&
      map[key] === record &&
      inside.upperBounds === bounds &&
      Number.isFinite(value)
    ) {
      record.sum += value;
      record.count += 1;
      const b = bounds!;
      for (let i = 0; i < b.length; i++) {
        if (value <= b[i]!) {
          record.bucketValues[names[i]!]! += 1;
          break;
        }
      }
      return;
    }
    h.observe(labels, value);
    record = undefined;
    const after = inside.hashMap;
    if (after === undefined || inside.enableExemplars || !Array.isArray(inside.upperBounds)) return;
    for (const k in after) {
      const r = after[k]!;
      if (
        typeof r === 'object' &&
        r !== null &&
        r.labels?.model === labels.model &&
        r.labels?.version === labels.version &&
        Object.keys(r.labels).length === 2 &&
        typeof r.sum === 'number' &&
        typeof r.count === 'number' &&
        typeof r.bucketValues === 'object' &&
        inside.upperBounds.every((b) => typeof r.bucketValues[b] === 'number')
      ) {
        record = r;
        key = k;
        bounds = inside.upperBounds;
        names = bounds.map(String);
        return;
      }
    }
  };
}

/** Rows along dim 0 of the first input (1 for scalars or no inputs). */
function rowsOf(inputs: Tensors): number {
  for (const name in inputs) {
    const t = inputs[name];
    if (t && t.dims.length > 0) return t.dims[0]!;
    return 1;
  }
  return 1;
}

/**
 * Prometheus metrics for a model, with Triton's metric names and meanings: success and failure
 * counts, inference count and execution count (their ratio is the average batch size), cumulative
 * request / queue / compute durations, pending requests, cache hits and misses, plus latency
 * histograms, all labelled by model and version. Put it outermost: it reads what inner layers
 * wrote into the request's `context` (`queueMs`, `computeMs`, `batchSize`, `cacheHit`).
 *
 * @example
 * ```ts
 * import { Registry } from 'prom-client';
 * const registry = new Registry();
 * const served = pipeline(model, metrics({ registry }), responseCache({ max: 1000 }), batching());
 * app.register(mlservePlugin, { registry: models, metrics: registry }); // GET /metrics
 * ```
 */
export function metrics({
  registry = defaultRegistry,
  prefix = 'mlserve_',
  buckets = DEFAULT_BUCKETS,
}: MetricsOptions = {}): GenericMiddleware {
  const m = instruments(registry, prefix, buckets);
  return preserveSignature((inner: Model) => {
    const labels = { model: inner.name, version: inner.version };
    const observeRequest = seriesObserver(m.requestSeconds, labels);
    const observeQueue = seriesObserver(m.queueSeconds, labels);
    const observeCompute = seriesObserver(m.computeSeconds, labels);
    let success = 0;
    let failure = 0;
    let pending = 0;
    let batched: boolean | undefined;
    // Deltas not yet applied to prom-client (see flushers). Direct updates instead when any of
    // the counters was registered by someone else (its collect() would not flush ours).
    const deferred = [
      m.success,
      m.inferences,
      m.executions,
      m.requestUs,
      m.queueUs,
      m.computeUs,
      m.pending,
      m.cacheHits,
      m.cacheMisses,
    ].every((metric) => flushing.has(metric));
    const d = {
      success: 0,
      inferences: 0,
      executions: 0,
      requestUs: 0,
      queueUs: 0,
      computeUs: 0,
      pending: 0,
      cacheHits: 0,
      cacheMisses: 0,
    };
    let served = false;
    const flush = () => {
      if (d.success) m.success.inc(labels, d.success);
      if (d.inferences) m.inferences.inc(labels, d.inferences);
      if (d.executions) m.executions.inc(labels, d.executions);
      if (d.requestUs) m.requestUs.inc(labels, d.requestUs);
      if (d.queueUs) m.queueUs.inc(labels, d.queueUs);
      if (d.computeUs) m.computeUs.inc(labels, d.computeUs);
      // Even a net zero: the series exists (at 0) once the model served a request.
      if (served) m.pending.inc(labels, d.pending);
      served = false;
      if (d.cacheHits) m.cacheHits.inc(labels, d.cacheHits);
      if (d.cacheMisses) m.cacheMisses.inc(labels, d.cacheMisses);
      d.success = d.inferences = d.executions = d.requestUs = d.queueUs = d.computeUs = 0;
      d.pending = d.cacheHits = d.cacheMisses = 0;
    };
    let live = deferred;
    if (deferred) {
      let set = flushers.get(registry);
      if (!set) {
        set = new Set();
        flushers.set(registry, set);
      }
      set.add(flush);
    }
    const layer = wrap(inner, {
      layer: 'metrics',
      infer: async function metricsInfer(inputs, options: InferOptions = {}) {
        const context: InferContext = options.context ?? {};
        const startedAt = performance.now();
        context.startedAt ??= startedAt;
        pending++;
        // Deferred deltas are plain field updates (no keyed access by a varying name): this runs
        // on every request. Without deferral, flush() applies them at once.
        d.pending += 1;
        served = true;
        if (!live) flush();
        try {
          const outputs = await inner.infer(inputs, options.context ? options : { ...options, context });
          const seconds = (performance.now() - startedAt) / 1000;
          // A model without a batch dim does one inference per request, whatever dim 0 is.
          batched ??= inner.metadata().maxBatchSize > 0;
          const rows = batched ? rowsOf(inputs) : 1;
          success++;
          d.success += 1;
          d.inferences += rows;
          d.requestUs += seconds * 1e6;
          observeRequest(seconds);
          if (context.cacheHit === true) {
            d.cacheHits += 1;
          } else {
            if (context.cacheHit === false) d.cacheMisses += 1;
            // This request's share of one execution: its rows over the rows of its batch, so the
            // shares of a batch's requests add up to one execution.
            const batch =
              typeof context.batchSize === 'number' && context.batchSize > 0 ? context.batchSize : rows;
            d.executions += batch > 0 ? Math.min(1, rows / batch) : 1;
            if (typeof context.computeMs === 'number') {
              d.computeUs += context.computeMs * 1000;
              observeCompute(context.computeMs / 1000);
            }
          }
          if (typeof context.queueMs === 'number') {
            d.queueUs += context.queueMs * 1000;
            observeQueue(context.queueMs / 1000);
          }
          if (!live) flush();
          return outputs;
        } catch (err) {
          const e = toServeError(err);
          failure++;
          m.failure.inc({ ...labels, reason: e.code });
          throw e;
        } finally {
          pending--;
          d.pending -= 1;
          served = true;
          if (!live) flush();
        }
      },
      stats: () => ({ success, failure, pending }),
      dispose: () => {
        watched.get(registry)?.delete(layer);
        // What this layer counted stays in the registry.
        live = false;
        flush();
        flushers.get(registry)?.delete(flush);
      },
    });
    watchLayerStats(registry, layer);
    return layer;
  });
}

/**
 * The Prometheus exposition of a registry: what a `/metrics` route sends.
 *
 * @example
 * ```ts
 * const { contentType, body } = await metricsText(registry);
 * res.setHeader('content-type', contentType).end(body);
 * ```
 */
export async function metricsText(
  registry: Registry = defaultRegistry,
): Promise<{ contentType: string; body: string }> {
  return { contentType: registry.contentType, body: await registry.metrics() };
}
