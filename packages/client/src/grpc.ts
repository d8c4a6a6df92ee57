import { createRequire } from 'node:module';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  type ErrorCode,
  invalidArgument,
  type ParameterValue,
  ServeError,
  type Tensors,
  toServeError,
  unavailable,
} from '@mlserve/core';
import {
  type ContentsMessage,
  type ParameterMessage,
  tensorFromContents,
  toParameterMessage,
} from '@mlserve/protocol/grpc';
import { type Client, remoteModel } from './client.js';
import { fromV2Datatype, parseShape, tensorFromBinary, tensorToBinary, V2_DATATYPE } from './codec.js';
import { isErrorCode } from './errors.js';
import { CallScope, type RetryPolicy, retryPolicy } from './retry.js';
import type { CallOptions, ClientOptions, InferCallOptions } from './types.js';
import { parseModelMetadata, parseServerMetadata } from './v2.js';

export * from './common.js';

/**
 * The .proto of KServe V2's `inference.GRPCInferenceService`: the one `@mlserve/protocol` ships (the
 * gRPC server loads the same file).
 *
 * @example
 * ```ts
 * protoLoader.loadSync(protoPath(), { keepCase: true });
 * ```
 */
export function protoPath(): string {
  return createRequire(import.meta.url).resolve('@mlserve/protocol/proto/grpc_service.proto');
}

/** Loader settings: field names as written, 64-bit integers as exact decimal strings, oneof names. */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let serviceCtor: grpc.ServiceClientConstructor | undefined;
function service(): grpc.ServiceClientConstructor {
  if (!serviceCtor) {
    const pkg = grpc.loadPackageDefinition(protoLoader.loadSync(protoPath(), LOADER_OPTIONS));
    serviceCtor = (pkg.inference as grpc.GrpcObject).GRPCInferenceService as grpc.ServiceClientConstructor;
  }
  return serviceCtor;
}

const CODE_OF_GRPC: Partial<Record<grpc.status, ErrorCode>> = {
  [grpc.status.INVALID_ARGUMENT]: 'INVALID_ARGUMENT',
  [grpc.status.NOT_FOUND]: 'NOT_FOUND',
  [grpc.status.RESOURCE_EXHAUSTED]: 'RESOURCE_EXHAUSTED',
  [grpc.status.CANCELLED]: 'CANCELLED',
  [grpc.status.UNAVAILABLE]: 'UNAVAILABLE',
  [grpc.status.DEADLINE_EXCEEDED]: 'DEADLINE_EXCEEDED',
  [grpc.status.UNIMPLEMENTED]: 'UNIMPLEMENTED',
  [grpc.status.FAILED_PRECONDITION]: 'FAILED_PRECONDITION',
  [grpc.status.OUT_OF_RANGE]: 'INVALID_ARGUMENT',
  [grpc.status.ALREADY_EXISTS]: 'INVALID_ARGUMENT',
  [grpc.status.UNAUTHENTICATED]: 'UNAUTHENTICATED',
  [grpc.status.PERMISSION_DENIED]: 'PERMISSION_DENIED',
  [grpc.status.ABORTED]: 'UNAVAILABLE',
};

/**
 * A gRPC status as a ServeError: the code mlserve puts in the `mlserve-error-code` trailer when
 * there is one, else the status's; the retry hint from `retry-after-ms`.
 *
 * @example
 * ```ts
 * stub.ModelInfer(req, (err, res) => { if (err) throw errorFromStatus(err); });
 * ```
 */
export function errorFromStatus(err: Partial<grpc.ServiceError>): ServeError {
  const meta = err.metadata;
  const named = meta?.get('mlserve-error-code')[0];
  const code: ErrorCode = isErrorCode(named) ? named : (CODE_OF_GRPC[err.code as grpc.status] ?? 'INTERNAL');
  const hint = Number(meta?.get('retry-after-ms')[0]);
  return new ServeError(code, err.details || err.message || `gRPC status ${err.code}`, {
    cause: err,
    ...(Number.isFinite(hint) && hint >= 0 && meta?.get('retry-after-ms').length
      ? { retryAfterMs: hint }
      : {}),
  });
}

function paramValue(p: Record<string, unknown> | undefined): ParameterValue | undefined {
  switch (p?.parameter_choice) {
    case 'bool_param':
      return p.bool_param === true;
    case 'string_param':
      return String(p.string_param ?? '');
    case 'double_param':
      return Number(p.double_param);
    case 'int64_param':
    case 'uint64_param':
      return Number(p[p.parameter_choice as string]);
    default:
      return undefined;
  }
}

export interface OutputMessage {
  name: string;
  datatype: string;
  shape: (string | number)[];
  contents?: Record<string, unknown[]> | null;
}

export interface InferResponseMessage {
  model_name: string;
  model_version: string;
  id: string;
  outputs: OutputMessage[];
  raw_output_contents: Uint8Array[];
  parameters?: Record<string, Record<string, unknown>>;
}

/**
 * Decodes a ModelInferResponse: raw contents (Triton's and mlserve's default) or typed contents.
 *
 * @example
 * ```ts
 * const { logits } = decodeGrpcResponse(response); // response: a ModelInferResponse from proto-loader
 * ```
 */
export function decodeGrpcResponse(res: InferResponseMessage): Tensors {
  const out = Object.create(null) as Tensors;
  const raw = res.raw_output_contents ?? [];
  try {
    res.outputs.forEach((o, i) => {
      const what = `output "${String(o.name).slice(0, 64)}"`;
      const type = fromV2Datatype(o.datatype, what);
      const { dims, count } = parseShape(o.shape.map(Number), what);
      if (raw.length > 0) {
        const bytes = raw[i];
        if (!bytes) throw invalidArgument(`${what} has no raw_output_contents entry`);
        out[o.name] = tensorFromBinary(type, [...dims], count, bytes, what);
        return;
      }
      out[o.name] = tensorFromContents(type, [...dims], count, o.contents as ContentsMessage, what);
    });
  } catch (err) {
    const e = toServeError(err);
    throw new ServeError('INTERNAL', `malformed V2 response: ${e.message}`, { cause: err });
  }
  return out;
}

type Unary = (
  req: unknown,
  meta: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: (err: grpc.ServiceError | null, res: unknown) => void,
) => grpc.ClientUnaryCall;

/** One request of a {@link InferStream}. */
export type StreamInferOptions = Omit<InferCallOptions, 'retry' | 'signal' | 'timeoutMs' | 'headers'>;

/** Triton's bidirectional `ModelStreamInfer`: many requests on one call, answers matched by id. */
export interface InferStream {
  /** Sends one request on the stream; resolves with its outputs, rejects with its error. */
  infer(model: string, inputs: Tensors, options?: StreamInferOptions): Promise<Tensors>;
  /** Ends the sending side and waits until every answer is in. */
  end(): Promise<void>;
  /** Cancels the stream: pending requests reject with CANCELLED. */
  cancel(): void;
}

/** The gRPC client: every {@link Client} call plus {@link GrpcClient.stream}. */
export interface GrpcClient extends Client {
  /**
   * Opens a `ModelStreamInfer` call: requests go out as they are made, answers come back on the same
   * HTTP/2 stream (no per-request round trip of headers).
   *
   * @example
   * ```ts
   * const stream = grpcClient.stream();
   * const answers = await Promise.all(images.map((image) => stream.infer('mnist', { image })));
   * await stream.end();
   * ```
   */
  stream(options?: {
    signal?: AbortSignal;
    headers?: Record<string, string>;
    timeoutMs?: number;
  }): InferStream;
}

function target(url: string): { address: string; secure: boolean } {
  const m = /^(?:(grpcs?|https?):\/\/)?([^/]+)\/?$/.exec(url.trim());
  if (!m) throw new TypeError(`url must be host:port or grpc://host:port, got ${url}`);
  return { address: m[2]!, secure: m[1] === 'grpcs' || m[1] === 'https' };
}

/**
 * A KServe V2 client over gRPC (Triton's `GRPCInferenceService`): the same calls as the HTTP client,
 * tensors as raw contents, plus the bidirectional stream. Node only.
 *
 * @example
 * ```ts
 * import { createGrpcClient } from '@mlserve/client/grpc';
 * import { tensor } from '@mlserve/core';
 *
 * const client = createGrpcClient({ url: '127.0.0.1:8001' });
 * const { logits } = await client.infer('mnist', { image: tensor('float32', new Float32Array(784), [1, 1, 28, 28]) });
 * client.close();
 * ```
 */
export function createGrpcClient(options: ClientOptions): GrpcClient {
  const { address, secure } = target(options.url);
  const Ctor = service();
  const stub = new Ctor(address, secure ? grpc.credentials.createSsl() : grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': -1,
    'grpc.max_send_message_length': -1,
  }) as unknown as Record<string, Unary> &
    grpc.Client & {
      ModelStreamInfer(
        meta: grpc.Metadata,
        opts: grpc.CallOptions,
      ): grpc.ClientDuplexStream<unknown, unknown>;
    };
  const policy = retryPolicy(options.retry);
  let closed = false;

  function metadataOf(headers: Record<string, string> | undefined): grpc.Metadata {
    const m = new grpc.Metadata();
    for (const [k, v] of Object.entries({ ...(options.headers ?? {}), ...(headers ?? {}) }))
      m.set(k.toLowerCase(), v);
    return m;
  }

  async function unary<T>(
    method: string,
    make: (timeoutMs: number | undefined) => unknown,
    call: CallOptions & { retry?: boolean },
  ): Promise<T> {
    if (closed) throw unavailable('the client is closed');
    const scope = new CallScope(call.signal, call.timeoutMs ?? options.timeoutMs);
    const retries: RetryPolicy = call.retry === false ? { ...policy, retries: 0 } : policy;
    try {
      for (let attempt = 0; ; attempt++) {
        if (scope.signal.aborted) throw scope.abortError();
        const left = scope.remainingMs();
        if (left <= 0)
          throw scope.signal.aborted
            ? scope.abortError()
            : new ServeError('DEADLINE_EXCEEDED', 'the deadline passed');
        const ms = Number.isFinite(left) ? Math.max(1, Math.ceil(left)) : undefined;
        const opts: grpc.CallOptions = ms === undefined ? {} : { deadline: Date.now() + ms };
        let err: ServeError;
        try {
          return await new Promise<T>((resolve, reject) => {
            const c = stub[method]!.call(stub, make(ms), metadataOf(call.headers), opts, (e, res) =>
              e ? reject(e) : resolve(res as T),
            );
            const onAbort = () => c.cancel();
            scope.signal.addEventListener('abort', onAbort, { once: true });
            c.on('status', () => scope.signal.removeEventListener('abort', onAbort));
          });
        } catch (e) {
          if (scope.signal.aborted) throw scope.abortError();
          err = errorFromStatus(e as grpc.ServiceError);
        }
        await scope.backoff(retries, err, attempt);
      }
    } finally {
      scope.dispose();
    }
  }

  function inferRequest(
    model: string,
    inputs: Tensors,
    call: InferCallOptions,
    timeoutMs: number | undefined,
  ) {
    const params: Record<string, ParameterMessage> = {};
    for (const [k, v] of Object.entries(call.parameters ?? {})) {
      if (k === 'timeout' || k === 'priority' || k.startsWith('sequence_'))
        throw invalidArgument(`parameter "${k}" is set through its own option`);
      params[k] = toParameterMessage(v);
    }
    if (timeoutMs !== undefined) params.timeout = toParameterMessage(timeoutMs * 1000);
    if (call.priority !== undefined) params.priority = toParameterMessage(call.priority);
    if (call.sequence) {
      const id = call.sequence.id;
      params.sequence_id = typeof id === 'bigint' ? { int64_param: String(id) } : toParameterMessage(id);
      if (call.sequence.start !== undefined) params.sequence_start = toParameterMessage(call.sequence.start);
      if (call.sequence.end !== undefined) params.sequence_end = toParameterMessage(call.sequence.end);
    }
    const cls = call.classification;
    if (typeof cls === 'number' && !call.outputs)
      throw invalidArgument('classification: k for every output needs `outputs` named');
    const names = call.outputs ?? (cls && typeof cls === 'object' ? Object.keys(cls) : undefined);
    const outputs = names?.map((name) => {
      const k = typeof cls === 'number' ? cls : (cls as Record<string, number> | undefined)?.[name];
      return k === undefined ? { name } : { name, parameters: { classification: toParameterMessage(k) } };
    });
    const list = Object.entries(inputs);
    return {
      model_name: model,
      model_version: call.version ?? '',
      id: call.id ?? '',
      parameters: params,
      inputs: list.map(([name, t]) => ({ name, datatype: V2_DATATYPE[t.type], shape: t.dims.map(String) })),
      outputs: outputs ?? [],
      raw_input_contents: list.map(([, t]) => tensorToBinary(t)),
    };
  }

  async function infer(model: string, inputs: Tensors, call: InferCallOptions = {}): Promise<Tensors> {
    if (typeof model !== 'string' || model.length === 0)
      throw invalidArgument('model must be a non-empty string');
    let cached: unknown;
    const res = await unary<InferResponseMessage>(
      'ModelInfer',
      (ms) => {
        if (ms !== undefined) return inferRequest(model, inputs, call, ms);
        cached ??= inferRequest(model, inputs, call, undefined);
        return cached;
      },
      { ...call, retry: call.retry !== false && !call.sequence },
    );
    return decodeGrpcResponse(res);
  }

  const health = { retry: false };
  const client: GrpcClient = {
    transport: 'grpc',
    async serverLive(call = {}) {
      return (await unary<{ live: boolean }>('ServerLive', () => ({}), { ...call, ...health })).live;
    },
    async serverReady(call = {}) {
      return (await unary<{ ready: boolean }>('ServerReady', () => ({}), { ...call, ...health })).ready;
    },
    async serverMetadata(call = {}) {
      return parseServerMetadata(await unary('ServerMetadata', () => ({}), call));
    },
    async modelReady(model, call = {}) {
      const req = { name: model, version: call.version ?? '' };
      return (await unary<{ ready: boolean }>('ModelReady', () => req, { ...call, ...health })).ready;
    },
    async modelMetadata(model, call = {}) {
      const req = { name: model, version: call.version ?? '' };
      return parseModelMetadata(await unary('ModelMetadata', () => req, call));
    },
    infer,
    async model(name, opts = {}) {
      const meta = await client.modelMetadata(name, opts);
      return remoteModel('grpc', meta, opts.version, opts.signature, infer);
    },
    stream(opts = {}) {
      if (closed) throw unavailable('the client is closed');
      const scope = new CallScope(opts.signal, opts.timeoutMs ?? options.timeoutMs);
      const callOpts: grpc.CallOptions = scope.deadline === undefined ? {} : { deadline: scope.deadline };
      const call = stub.ModelStreamInfer(metadataOf(opts.headers), callOpts);
      const pending = new Map<string, { resolve: (t: Tensors) => void; reject: (e: unknown) => void }>();
      let next = 0;
      let failure: ServeError | undefined;
      let ended: Promise<void> | undefined;
      const fail = (e: ServeError) => {
        failure ??= e;
        for (const p of pending.values()) p.reject(failure);
        pending.clear();
      };
      scope.signal.addEventListener('abort', () => {
        fail(scope.abortError());
        call.cancel();
      });
      call.on('data', (msg: { error_message: string; infer_response?: InferResponseMessage }) => {
        const res = msg.infer_response;
        const id = res?.id ?? '';
        const p = pending.get(id);
        if (!p) return;
        pending.delete(id);
        if (msg.error_message) {
          const named = paramValue(res?.parameters?.['mlserve-error-code']);
          p.reject(new ServeError(isErrorCode(named) ? named : 'INTERNAL', msg.error_message));
          return;
        }
        try {
          p.resolve(decodeGrpcResponse(res!));
        } catch (e) {
          p.reject(e);
        }
      });
      const done = new Promise<void>((resolve) => {
        call.on('error', (e: grpc.ServiceError) => {
          fail(scope.signal.aborted ? scope.abortError() : errorFromStatus(e));
          resolve();
        });
        call.on('end', () => {
          fail(unavailable('the stream ended before this request was answered'));
          resolve();
        });
      }).finally(() => scope.dispose());
      return {
        infer(model, inputs, call2 = {}) {
          if (failure) return Promise.reject(failure);
          if (ended) return Promise.reject(unavailable('the stream was ended'));
          // Answers are matched by request id: give each request one that is unique on this stream.
          const id = call2.id ?? `s${next++}`;
          if (pending.has(id))
            return Promise.reject(invalidArgument(`request id "${id}" is already pending on this stream`));
          let req: unknown;
          try {
            const left = scope.remainingMs();
            req = inferRequest(
              model,
              inputs,
              { ...call2, id },
              Number.isFinite(left) ? Math.max(1, Math.ceil(left)) : undefined,
            );
          } catch (e) {
            return Promise.reject(e);
          }
          return new Promise<Tensors>((resolve, reject) => {
            pending.set(id, { resolve, reject });
            call.write(req);
          });
        },
        end() {
          ended ??= (async () => {
            call.end();
            await done;
          })();
          return ended;
        },
        cancel() {
          fail(new ServeError('CANCELLED', 'the stream was cancelled'));
          call.cancel();
        },
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      stub.close();
    },
  };
  return client;
}
