import { throwIfExpired } from './deadline.js';
import { internal, invalidArgument, unavailable } from './errors.js';
import { pickOutputs } from './merge.js';
import { checkSignature } from './signature.js';
import type {
  InferOptions,
  Model,
  ModelMetadata,
  Signature,
  TensorInfo,
  Tensors,
  TensorTypes,
} from './types.js';

/** One step of a {@link graph}: a model and how its tensors map to the graph's tensor names. */
export interface GraphStep {
  /** The step's name (for errors and the context). Defaults to the model's name. */
  name?: string;
  model: Model;
  /** Model input name -> graph tensor name. Inputs not listed use the graph tensor of the same name. */
  inputs?: Record<string, string>;
  /** Model output name -> graph tensor name. Outputs not listed keep their own names. */
  outputs?: Record<string, string>;
}

/** Options of {@link graph}. */
export interface GraphOptions<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes> {
  name: string;
  /**
   * The graph's inputs and outputs by name and element type (`{ inputs: { raw: 'uint8' }, outputs:
   * { label: 'int64' } }`): types the graph as `Model<I, O>` and is checked against the derived
   * metadata when the graph is built (INVALID_ARGUMENT on a difference). Without it the graph is
   * an untyped `Model`.
   */
  signature?: Signature<I, O>;
  version?: string;
  steps: GraphStep[];
  /** Graph tensor names the graph returns. Defaults to every tensor no step consumes. */
  outputs?: string[];
  /** Dispose the step models when the graph is disposed (default true). */
  disposeSteps?: boolean;
}

interface PlannedStep {
  name: string;
  model: Model;
  feeds: [modelInput: string, tensor: string][];
  produces: [modelOutput: string, tensor: string][];
}

/**
 * Models chained as a DAG with named tensor mappings (Triton's ensembles): each step runs as
 * soon as its inputs exist, independent steps run concurrently, and the request's signal,
 * deadline and context pass to every step. Metadata is derived from the steps'.
 *
 * @example
 * ```ts
 * const classify = graph({
 *   name: 'classify',
 *   steps: [
 *     { model: preprocess, inputs: { raw: 'image_bytes' }, outputs: { pixels: 'image' } },
 *     { model: mnist, inputs: { image: 'image' } },
 *     { model: softmax, inputs: { logits: 'logits' }, outputs: { probs: 'probabilities' } },
 *   ],
 *   outputs: ['probabilities'],
 *   signature: { inputs: { image_bytes: 'uint8' }, outputs: { probabilities: 'float32' } },
 * }); // Model<{ image_bytes: 'uint8' }, { probabilities: 'float32' }>
 * ```
 */
export function graph<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes>(
  options: GraphOptions<I, O>,
): Model<I, O> {
  const { name, version = '1', disposeSteps = true } = options;
  if (!options.steps.length) throw new TypeError('graph: options.steps must not be empty');
  const producers = new Map<string, { step: PlannedStep; info: TensorInfo }>();
  const consumers = new Map<string, { step: PlannedStep; info: TensorInfo }[]>();
  const planned: PlannedStep[] = [];
  for (const step of options.steps) {
    const meta = step.model.metadata();
    const ps: PlannedStep = { name: step.name ?? meta.name, model: step.model, feeds: [], produces: [] };
    for (const info of meta.inputs) {
      const tensorName = step.inputs?.[info.name] ?? info.name;
      ps.feeds.push([info.name, tensorName]);
      const list = consumers.get(tensorName) ?? [];
      list.push({ step: ps, info });
      consumers.set(tensorName, list);
    }
    for (const key of Object.keys(step.inputs ?? {})) {
      if (!meta.inputs.some((i) => i.name === key))
        throw new TypeError(`graph: step "${ps.name}" has no input "${key}"`);
    }
    for (const info of meta.outputs) {
      const tensorName = step.outputs?.[info.name] ?? info.name;
      if (producers.has(tensorName))
        throw new TypeError(`graph: tensor "${tensorName}" is produced by two steps`);
      ps.produces.push([info.name, tensorName]);
      producers.set(tensorName, { step: ps, info });
    }
    for (const key of Object.keys(step.outputs ?? {})) {
      if (!meta.outputs.some((o) => o.name === key))
        throw new TypeError(`graph: step "${ps.name}" has no output "${key}"`);
    }
    planned.push(ps);
  }
  // Cycle check: a topological order must exist.
  const order: PlannedStep[] = [];
  const done = new Set<PlannedStep>();
  const visiting = new Set<PlannedStep>();
  const visit = (s: PlannedStep) => {
    if (done.has(s)) return;
    if (visiting.has(s)) throw new TypeError(`graph: a cycle passes through step "${s.name}"`);
    visiting.add(s);
    for (const [, t] of s.feeds) {
      const p = producers.get(t);
      if (p) visit(p.step);
    }
    visiting.delete(s);
    done.add(s);
    order.push(s);
  };
  for (const s of planned) visit(s);

  const graphInputs: TensorInfo[] = [];
  for (const [tensorName, list] of consumers) {
    if (producers.has(tensorName)) continue;
    const first = list[0]!;
    graphInputs.push({ ...first.info, name: tensorName });
  }
  const outputNames = options.outputs ?? [...producers.keys()].filter((t) => !consumers.has(t));
  const graphOutputs: TensorInfo[] = outputNames.map((t) => {
    const p = producers.get(t);
    if (!p) throw new TypeError(`graph: output "${t}" is produced by no step`);
    return { ...p.info, name: t };
  });
  const batched = graphInputs.every((i) => i.batched);
  const meta: ModelMetadata = {
    name,
    version,
    platform: 'ensemble',
    backend: 'graph',
    inputs: graphInputs,
    outputs: graphOutputs,
    maxBatchSize: batched ? Math.min(...planned.map((s) => s.model.metadata().maxBatchSize)) : 0,
    concurrency: Math.max(1, Math.min(...planned.map((s) => s.model.metadata().concurrency))),
  };
  if (options.signature !== undefined) checkSignature(meta, options.signature);
  let disposed: Promise<void> | undefined;

  const model: Model = {
    name,
    version,
    metadata: () => structuredClone(meta),
    async infer(inputs: Tensors, opts: InferOptions = {}): Promise<Tensors> {
      if (disposed) throw unavailable(`model "${name}" is disposed`);
      throwIfExpired(opts);
      for (const i of graphInputs) {
        if (!Object.hasOwn(inputs, i.name)) throw invalidArgument(`missing input "${i.name}"`);
      }
      const tensors = new Map<string, Promise<Tensors[string]>>();
      for (const i of graphInputs) tensors.set(i.name, Promise.resolve(inputs[i.name]!));
      const stepOptions: InferOptions = { ...opts, outputs: undefined };
      const aborter = new AbortController();
      if (opts.signal) stepOptions.signal = AbortSignal.any([opts.signal, aborter.signal]);
      else stepOptions.signal = aborter.signal;
      const runs: Promise<unknown>[] = [];
      for (const step of order) {
        const run = (async () => {
          const feeds: Tensors = {};
          for (const [modelInput, t] of step.feeds) feeds[modelInput] = await tensors.get(t)!;
          const wanted = step.produces.map(([o]) => o);
          const out = await step.model.infer(feeds, { ...stepOptions, outputs: wanted });
          return out;
        })();
        runs.push(run);
        for (const [modelOutput, t] of step.produces) {
          tensors.set(
            t,
            run.then((out) => {
              const v = out[modelOutput];
              if (!v) throw internal(`graph "${name}": step "${step.name}" returned no "${modelOutput}"`);
              return v;
            }),
          );
        }
      }
      try {
        const result: Tensors = {};
        const wanted = opts.outputs ?? outputNames;
        for (const o of wanted) {
          const p = tensors.get(o);
          if (!p || !outputNames.includes(o))
            throw invalidArgument(`unknown output "${o}" for model "${name}"`);
        }
        await Promise.all(runs);
        for (const o of outputNames) result[o] = await tensors.get(o)!;
        return pickOutputs(result, opts.outputs);
      } catch (err) {
        aborter.abort(err);
        for (const p of tensors.values()) p.catch(() => {});
        for (const r of runs) r.catch(() => {});
        throw err;
      }
    },
    dispose() {
      disposed ??= disposeSteps
        ? Promise.all(planned.map((s) => s.model.dispose())).then(() => undefined)
        : Promise.resolve();
      return disposed;
    },
    isReady: () => !disposed && planned.every((s) => (s.model.isReady ? s.model.isReady() : true)),
  };
  return model as unknown as Model<I, O>;
}
