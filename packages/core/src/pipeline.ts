import type {
  GenericMiddleware,
  InferOptions,
  Middleware,
  Model,
  ModelMetadata,
  Outputs,
  TensorTypes,
  TypedTensors,
} from './types.js';

/**
 * What {@link wrap} lets a layer replace; everything else is forwarded to the inner model. `I` and
 * `O` are the inner model's signature (untyped by default).
 */
export interface LayerOverrides<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes> {
  /** The layer's name, used as its key in `stats()`. */
  layer?: string;
  metadata?: () => ModelMetadata;
  infer?: (inputs: TypedTensors<I>, options?: InferOptions) => Promise<Outputs<O>>;
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
 * the inner model exactly once. The layer has the inner model's signature.
 *
 * @example
 * ```ts
 * const logging: GenericMiddleware = (inner) =>
 *   wrap(inner, {
 *     layer: 'logging',
 *     infer: async function loggingInfer(inputs, options) {
 *       console.log('infer', inner.name, options?.id);
 *       return inner.infer(inputs, options);
 *     },
 *   });
 * ```
 */
export function wrap<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes>(
  typedInner: Model<I, O>,
  typedOverrides: LayerOverrides<I, O> = {},
): Model<I, O> {
  // The layer's runtime is signature-blind: it forwards whatever tensors pass.
  const inner = typedInner as unknown as Model;
  const overrides = typedOverrides as LayerOverrides;
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
  return model as unknown as Model<I, O>;
}

/** Turns a synchronous throw into a rejected promise, so `infer` always returns a promise. */
function guard(infer: NonNullable<LayerOverrides['infer']>): NonNullable<LayerOverrides['infer']> {
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
 * A typed model stays typed when every layer keeps its signature (every mlserve middleware is a
 * {@link GenericMiddleware}); a layer typed only as the untyped {@link Middleware} makes the result
 * an untyped `Model`.
 *
 * Throws a TypeError naming the middleware's position (0 = the first listed) when one is not a
 * function or returns something that is not a Model (no `infer()`, or a Promise).
 *
 * @example
 * ```ts
 * const served = pipeline(model, metrics(), validation(), responseCache({ max: 10_000 }), batching({ maxBatchSize: 64 }));
 * ```
 */
export function pipeline<I extends TensorTypes, O extends TensorTypes>(
  model: Model<I, O>,
  ...middleware: Middleware<I, O>[]
): Model<I, O>;
export function pipeline(model: Model, ...middleware: Middleware[]): Model;
export function pipeline(model: Model, ...middleware: Middleware[]): Model {
  let current = model;
  for (let i = middleware.length - 1; i >= 0; i--) {
    const layer = middleware[i];
    if (typeof layer !== 'function') throw new TypeError(`pipeline: middleware ${i} is not a function`);
    current = layer(current);
    // Like undici's interceptors: a layer that returns no Model fails here, naming its position,
    // not later at the first request with "infer is not a function".
    if (!isModel(current)) {
      const name = layer.name ? ` (${layer.name})` : '';
      throw new TypeError(`pipeline: middleware ${i}${name} returned ${describe(current)}, not a Model`);
    }
  }
  return current;
}

function isModel(value: unknown): value is Model {
  return typeof value === 'object' && value !== null && typeof (value as Model).infer === 'function';
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function') {
    return 'a Promise (a middleware must return its layer synchronously)';
  }
  if (typeof value === 'object') return 'an object without infer()';
  return `a ${typeof value}`;
}

/**
 * Declares that a layer written over the untyped `Model` keeps its model's signature (it passes the
 * same input and output names and types through), so it can be used as a {@link GenericMiddleware}
 * and a typed model stays typed through it. Costs nothing: it returns `layer` itself.
 *
 * @example
 * ```ts
 * import { fromFunction, pipeline, preserveSignature, wrap } from '@mlserve/core';
 *
 * const counting = preserveSignature((inner) => wrap(inner, { layer: 'counting' }));
 * const id = fromFunction({
 *   name: 'id',
 *   inputs: [{ name: 'x', type: 'float32', dims: [-1] }],
 *   outputs: [{ name: 'y', type: 'float32', dims: [-1] }],
 *   infer: ({ x }) => ({ y: x }),
 * });
 * const served = pipeline(id, counting); // still Model<{ x: 'float32' }, { y: 'float32' }>
 * console.log(served.name); // id
 * ```
 */
export function preserveSignature(layer: Middleware): GenericMiddleware {
  return layer as unknown as GenericMiddleware;
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
export function compose(...middleware: GenericMiddleware[]): GenericMiddleware;
export function compose<I extends TensorTypes, O extends TensorTypes>(
  ...middleware: Middleware<I, O>[]
): Middleware<I, O>;
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
