import { InFlight, type InferOptions, type Model, type Tensors, unavailable } from '@mlserve/core';

/** A model whose implementation can be replaced while it serves. */
export interface Swappable extends Model {
  /**
   * Makes `next` serve every request from now on; requests already running on the previous model
   * finish on it, then it is disposed. Resolves once the previous model is disposed.
   */
  swap(next: Model): Promise<void>;
}

/**
 * Wraps `initial` so a version can be rebuilt in place (a changed config.json, files replaced in
 * a version directory) with no request failing: the registry keeps one entry, the implementation
 * behind it changes between two requests.
 *
 * @example
 * ```ts
 * const served = swappable(await loadOnnxModel('v1.onnx'));
 * registry.add(served);
 * await served.swap(await loadOnnxModel('v1-rebuilt.onnx')); // old one drains, then is disposed
 * ```
 */
export function swappable(initial: Model): Swappable {
  let current = initial;
  // The requests running on `current`: a swapped-out model is disposed once its own have left.
  let flight = new InFlight();
  let disposed: Promise<void> | undefined;
  const retire = async (old: Model, running: InFlight) => {
    if (running.count > 0) await running.idle();
    await old.dispose();
  };
  return {
    name: initial.name,
    version: initial.version,
    get inner() {
      return current;
    },
    metadata: () => current.metadata(),
    async infer(inputs: Tensors, options?: InferOptions): Promise<Tensors> {
      if (disposed) throw unavailable(`model "${initial.name}" version ${initial.version} is disposed`);
      const target = current;
      const running = flight;
      running.enter();
      try {
        return await target.infer(inputs, options);
      } finally {
        running.leave();
      }
    },
    isReady: () => !disposed && (current.isReady ? current.isReady() : true),
    warmup: async () => current.warmup?.(),
    stats: () => current.stats?.() ?? {},
    async swap(next: Model): Promise<void> {
      if (disposed) {
        await next.dispose();
        throw unavailable(`model "${initial.name}" version ${initial.version} is disposed`);
      }
      const old = current;
      const running = flight;
      current = next;
      flight = new InFlight();
      await retire(old, running);
    },
    dispose() {
      disposed ??= retire(current, flight);
      return disposed;
    },
  };
}
