import {
  type InferOptions,
  invalidArgument,
  type Model,
  type ModelMetadata,
  type ParameterValue,
  type Tensors,
  toServeError,
} from '@mlserve/core';
import type {
  CallOptions,
  InferCallOptions,
  RemoteModelMetadata,
  ServerMetadata,
  Signature,
  TensorTypes,
  TypedTensors,
} from './types.js';

/**
 * A KServe V2 client, the same over HTTP and gRPC. Every call rejects with core's `ServeError`,
 * carrying the server's code and message.
 */
export interface Client {
  /** Which transport this client speaks. */
  readonly transport: 'http' | 'grpc';
  /** Whether the server is live (`GET /v2/health/live`, ServerLive). */
  serverLive(options?: CallOptions): Promise<boolean>;
  /** Whether the server is ready for requests (`GET /v2/health/ready`, ServerReady). */
  serverReady(options?: CallOptions): Promise<boolean>;
  /** The server's name, version and protocol extensions. */
  serverMetadata(options?: CallOptions): Promise<ServerMetadata>;
  /** Whether a model (version) is ready; NOT_FOUND for a model the server does not know. */
  modelReady(model: string, options?: CallOptions): Promise<boolean>;
  /** A model's inputs and outputs. */
  modelMetadata(model: string, options?: CallOptions): Promise<RemoteModelMetadata>;
  /**
   * Runs one inference: core tensors in, core tensors out.
   *
   * @example
   * ```ts
   * const out = await client.infer('mnist', { image: tensor('float32', pixels, [1, 1, 28, 28]) });
   * out.logits; // Tensor
   * ```
   */
  infer(model: string, inputs: Tensors, options?: InferCallOptions): Promise<Tensors>;
  /**
   * A handle on one remote model that is also a core `Model` (so mlserve middleware can wrap it),
   * typed by `signature` when given: `infer` then takes and returns exactly the named tensors, and
   * the signature is checked against the server's metadata once, here.
   */
  model<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes>(
    name: string,
    options?: { version?: string; signature?: Signature<I, O> } & CallOptions,
  ): Promise<RemoteModel<I, O>>;
  /** Closes connections; later calls reject with UNAVAILABLE. */
  close(): Promise<void>;
}

/** Options of a {@link RemoteModel}'s `infer`. */
export type RemoteInferOptions<K extends string> = Omit<InferCallOptions<K>, 'version' | 'classification'> &
  Pick<InferOptions, 'deadline' | 'context'>;

/** A model on a V2 server, as a core `Model` with typed tensors. */
export interface RemoteModel<I extends TensorTypes = TensorTypes, O extends TensorTypes = TensorTypes>
  extends Model {
  /** The server's metadata, as fetched by `client.model()`. */
  readonly remote: RemoteModelMetadata;
  infer<K extends keyof O & string = keyof O & string>(
    inputs: TypedTensors<I>,
    options?: RemoteInferOptions<K>,
  ): Promise<Pick<TypedTensors<O>, K>>;
}

/** The pieces a transport provides for {@link remoteModel}. */
export type InferFn = (model: string, inputs: Tensors, options: InferCallOptions) => Promise<Tensors>;

function checkSignature(meta: RemoteModelMetadata, signature: Signature | undefined): void {
  if (!signature) return;
  for (const side of ['inputs', 'outputs'] as const) {
    const remote = new Map(meta[side].map((s) => [s.name, s]));
    for (const [name, type] of Object.entries(signature[side])) {
      const spec = remote.get(name);
      if (!spec)
        throw invalidArgument(
          `model "${meta.name}" has no ${side.slice(0, -1)} "${name}" (it has ${[...remote.keys()].join(', ') || 'none'})`,
        );
      if (spec.type !== type)
        throw invalidArgument(
          `model "${meta.name}" ${side.slice(0, -1)} "${name}" is ${spec.datatype}, the signature says ${type}`,
        );
    }
  }
}

/**
 * Builds a {@link RemoteModel} over a transport's `infer`.
 * @internal
 */
export function remoteModel<I extends TensorTypes, O extends TensorTypes>(
  transport: 'http' | 'grpc',
  meta: RemoteModelMetadata,
  version: string | undefined,
  signature: Signature<I, O> | undefined,
  infer: InferFn,
): RemoteModel<I, O> {
  checkSignature(meta, signature);
  const resolvedVersion = version ?? meta.versions[meta.versions.length - 1] ?? '';
  const info = (side: 'inputs' | 'outputs') =>
    meta[side]
      .filter((s) => s.type !== undefined)
      .map((s) => ({ name: s.name, type: s.type!, dims: [...s.shape], batched: s.shape[0] === -1 }));
  const metadata: ModelMetadata = {
    name: meta.name,
    version: resolvedVersion,
    platform: meta.platform,
    backend: `remote(${transport})`,
    inputs: info('inputs'),
    outputs: info('outputs'),
    maxBatchSize: 0,
    concurrency: 1,
  };
  const expected = signature?.outputs;
  return {
    name: meta.name,
    version: resolvedVersion,
    remote: meta,
    metadata: () => structuredClone(metadata),
    async infer(inputs, options = {}) {
      const { deadline, context: _context, ...rest } = options as RemoteInferOptions<string>;
      const call: InferCallOptions = { ...rest };
      if (version !== undefined) call.version = version;
      if (deadline !== undefined) {
        const left = deadline - Date.now();
        call.timeoutMs = Math.min(call.timeoutMs ?? Number.POSITIVE_INFINITY, Math.max(0, left));
      }
      const out = await infer(meta.name, inputs as Tensors, call);
      if (expected) {
        for (const [name, t] of Object.entries(out)) {
          const want = expected[name];
          if (
            want !== undefined &&
            t.type !== want &&
            !(call.classification !== undefined && t.type === 'string')
          )
            throw toServeError(
              new Error(`output "${name}" came back as ${t.type}, the signature says ${want}`),
            );
        }
      }
      return out as never;
    },
    async dispose() {},
  };
}

/**
 * Core `InferOptions` as client call options (for code that holds a core options object).
 *
 * @example
 * ```ts
 * await client.infer('mnist', inputs, fromInferOptions({ deadline: Date.now() + 500, id: 'r1' }));
 * ```
 */
export function fromInferOptions(options: InferOptions): InferCallOptions {
  const call: InferCallOptions = {};
  if (options.signal) call.signal = options.signal;
  if (options.deadline !== undefined) call.timeoutMs = Math.max(0, options.deadline - Date.now());
  if (options.outputs) call.outputs = options.outputs;
  if (options.priority !== undefined) call.priority = options.priority;
  if (options.id !== undefined) call.id = options.id;
  if (options.parameters) call.parameters = options.parameters as Record<string, ParameterValue>;
  if (options.sequence) call.sequence = options.sequence;
  return call;
}
