import type { InferOptions, Middleware, Model, ModelMetadata, Tensors } from './types.js';

/** What {@link wrap} lets a layer replace; everything else is forwarded to the inner model. */
export interface LayerOverrides {
  /** The layer's name, used as its key in `stats()`. */
  layer?: string;
  metadata?: () => ModelMetadata;
  infer?: (inputs: Tensors, options?: InferOptions) => Promise<Tensors>;
  /** Runs before the inner model is disposed (once, however often dispose is called). */
  dispose?: () => Promise<void> | void;
  /** Combined with the inner model's readiness (both must be ready). */
  isReady?: () => boolean;
  /** Runs after the inner model's warmup. */
  warmup?: () => Promise<void>;
  /** This layer's counters; merged with the inner model's under `layer`. */
  stats?: () => unknown;
}

/**
 * Builds a layer over `inner` that forwards everything it does not override, so no layer loses
 * what the layers below offer (readiness, warmup, stats). `dispose()` is idempotent and reaches
 * the inner model exactly once.
 *
 * @example
 * ```ts
 * const logging: Middleware = (inner) =>
 *   wrap(inner, {
 *     layer: 'logging',
 *     infer: async function loggingInfer(inputs, options) {
 *       console.log('infer', inner.name, options?.id);
 *       return inner.infer(inputs, options);
 *     },
 *   });
 * ```
 */
export function wrap(inner: Model, overrides: LayerOverrides = {}): Model {
  let disposing: Promise<void> | undefined;
  const layer = overrides.layer ?? 'layer';
  const model: Model = {
    get name() {
      return inner.name;
    },
    get version() {
      return inner.version;
    },
    inner,
    metadata: overrides.metadata ?? (() => inner.metadata()),
    infer: overrides.infer ? guard(overrides.infer) : (inputs, options) => inner.infer(inputs, options),
    dispose() {
      disposing ??= (async () => {
        try {
          await overrides.dispose?.();
        } finally {
          await inner.dispose();
        }
      })();
      return disposing;
    },
    isReady() {
      if (disposing) return false;
      if (overrides.isReady && !overrides.isReady()) return false;
      return inner.isReady ? inner.isReady() : true;
    },
    async warmup() {
      await inner.warmup?.();
      await overrides.warmup?.();
    },
    stats() {
      const below = inner.stats?.() ?? {};
      if (!overrides.stats) return below;
      return { ...below, [layer]: overrides.stats() };
    },
  };
  return model;
}

/** Turns a synchronous throw into a rejected promise, so `infer` always returns a promise. */
function guard(
  infer: (inputs: Tensors, options?: InferOptions) => Promise<Tensors>,
): (inputs: Tensors, options?: InferOptions) => Promise<Tensors> {
  return function guardedInfer(inputs, options) {
    try {
      return infer(inputs, options);
    } catch (err) {
      return Promise.reject(err);
    }
  };
}

/**
 * Applies middleware to a model so that a request passes them in the order given: the first
 * listed is the outermost layer. Nested pipelines compose: `pipeline(pipeline(m, a), b)` is
 * `pipeline(m, b, a)`.
 *
 * @example
 * ```ts
 * const served = pipeline(model, metrics(), validation(), responseCache({ max: 10_000 }), batching({ maxBatchSize: 64 }));
 * ```
 */
export function pipeline(model: Model, ...middleware: Middleware[]): Model {
  let current = model;
  for (let i = middleware.length - 1; i >= 0; i--) {
    const layer = middleware[i];
    if (typeof layer !== 'function') throw new TypeError(`pipeline: middleware ${i} is not a function`);
    current = layer(current);
  }
  return current;
}

/**
 * Folds several middleware into one, first listed outermost (koa-compose for models).
 *
 * @example
 * ```ts
 * const standard = compose(validation(), timeout({ defaultMs: 1000 }));
 * const served = pipeline(model, standard, batching());
 * ```
 */
export function compose(...middleware: Middleware[]): Middleware {
  return (inner) => pipeline(inner, ...middleware);
}

/** Walks `model.inner` links from the outermost layer inwards, yielding each layer. */
export function* layers(model: Model): Generator<Model> {
  let current: Model | undefined = model;
  const seen = new Set<Model>();
  while (current && !seen.has(current)) {
    seen.add(current);
    yield current;
    current = current.inner;
  }
}
