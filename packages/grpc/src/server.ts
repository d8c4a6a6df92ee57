import * as grpc from '@grpc/grpc-js';
import {
  checkPositiveInteger,
  type ErrorCode,
  invalidArgument,
  type ModelMetadata,
  type ModelRegistry,
  ServeError,
  toServeError,
} from '@mlserve/core';
import { type RequestedOutput, reservedParameters } from '@mlserve/protocol';
import {
  type Authenticator,
  type AuthOptions,
  type AuthScope,
  createAuthenticator,
  createV2Service,
  type ManagementOptions,
} from '@mlserve/protocol/server';
import { propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import {
  type DecodedInputs,
  decodeInputs,
  encodeOutputs,
  type InferRequestMessage,
  type InferResponseMessage,
  type ParameterMessage,
  parameterRecord,
  parameterValue,
} from './codec.js';
import { loadInferenceProto } from './proto.js';

/** The gRPC status each {@link ErrorCode} is sent with. */
export const GRPC_STATUS: Readonly<Record<ErrorCode, grpc.status>> = Object.freeze({
  INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  PERMISSION_DENIED: grpc.status.PERMISSION_DENIED,
  NOT_FOUND: grpc.status.NOT_FOUND,
  FAILED_PRECONDITION: grpc.status.FAILED_PRECONDITION,
  // gRPC has no HTTP methods or media types: a method a route does not take is one the service does
  // not implement, a payload encoding it does not take is a bad argument.
  METHOD_NOT_ALLOWED: grpc.status.UNIMPLEMENTED,
  UNSUPPORTED_MEDIA_TYPE: grpc.status.INVALID_ARGUMENT,
  PAYLOAD_TOO_LARGE: grpc.status.RESOURCE_EXHAUSTED,
  RESOURCE_EXHAUSTED: grpc.status.RESOURCE_EXHAUSTED,
  CANCELLED: grpc.status.CANCELLED,
  UNAVAILABLE: grpc.status.UNAVAILABLE,
  DEADLINE_EXCEEDED: grpc.status.DEADLINE_EXCEEDED,
  UNIMPLEMENTED: grpc.status.UNIMPLEMENTED,
  INTERNAL: grpc.status.INTERNAL,
});

/** Trailing metadata key carrying a ServeError's retry hint in milliseconds (overload answers). */
export const RETRY_AFTER_KEY = 'retry-after-ms';
/** Trailing metadata key carrying the ServeError code, for clients that want more than the status. */
export const ERROR_CODE_KEY = 'mlserve-error-code';

/** Options of {@link createGrpcServer}. */
export interface GrpcServerOptions {
  /** The models to serve (share it with the HTTP server: same batching, cache and metrics). */
  registry: ModelRegistry;
  /**
   * The model repository extension (RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload):
   * off unless given (`true` for index and unload only; a `load` function enables load). When off,
   * those methods answer UNIMPLEMENTED.
   */
  management?: boolean | ManagementOptions;
  /** When set, repository methods need the metadata `authorization: Bearer <token>` (else UNAUTHENTICATED). */
  token?: string;
  /**
   * API-key authentication, as `@mlserve/http`'s `auth` (pass the same `Authenticator` to both so a
   * key's rate limit counts calls over either): the key in metadata `authorization: Bearer <key>`
   * or `x-api-key`. Scopes: `infer` (ModelInfer, ModelStreamInfer), `metadata` (ServerMetadata,
   * ModelMetadata, ModelConfig), `metrics` (ModelStatistics), `management` (Repository*). ServerLive, ServerReady and ModelReady
   * stay open. UNAUTHENTICATED without a valid key, PERMISSION_DENIED without the scope,
   * RESOURCE_EXHAUSTED (with `retry-after-ms`) over the key's rate limit; each message of a stream
   * counts against it. Cannot be combined with a management `token`.
   */
  auth?: AuthOptions | Authenticator;
  /** Largest request message in bytes (default 64 MiB); larger gets RESOURCE_EXHAUSTED before decoding. */
  maxReceiveMessageLength?: number;
  /** Largest response message in bytes (default 64 MiB); larger fails with RESOURCE_EXHAUSTED. */
  maxSendMessageLength?: number;
  /**
   * How outputs travel: `'raw'` (default) always in `raw_output_contents`, as Triton answers and
   * tritonclient reads; `'match'` in typed `contents` when the request used typed contents (and no
   * output is FP16), for clients that only read `contents`.
   */
  outputContents?: 'raw' | 'match';
  /** Check each request against the model's metadata before it runs (default true). */
  validate?: boolean;
  /** Requests may not run longer than this, ms (the call deadline and the `timeout` parameter are cut down). */
  maxTimeoutMs?: number;
  /** Requests one ModelStreamInfer stream may have running at once before reading pauses (default 64). */
  maxStreamInFlight?: number;
  /** Classification labels by model name (else `metadata().extra.labels`), as in `@mlserve/http`. */
  labels?: Record<string, readonly string[] | Record<string, readonly string[]>>;
  /** ServerMetadata's name and version (default `mlserve` and `@mlserve/protocol`'s version). */
  serverName?: string;
  serverVersion?: string;
  /** Extra @grpc/grpc-js server options (keepalive, compression, ...). */
  serverOptions?: grpc.ServerOptions;
  /** Called with every error a method answers with (for logs); INTERNAL ones carry the cause. */
  onError?: (error: ServeError, method: string) => void;
}

const DEFAULT_MESSAGE_LIMIT = 64 * 1024 * 1024;
const tracer = trace.getTracer('@mlserve/grpc');
function deadlineOf(
  call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'getDeadline' | 'metadata'>,
): number | undefined {
  const d = call.getDeadline();
  const ms = d instanceof Date ? d.getTime() : d;
  return Number.isFinite(ms) ? ms : undefined;
}

const CONFIG_TYPE: Readonly<Record<ModelMetadata['inputs'][number]['type'], string>> = Object.freeze({
  bool: 'TYPE_BOOL',
  uint8: 'TYPE_UINT8',
  uint16: 'TYPE_UINT16',
  uint32: 'TYPE_UINT32',
  uint64: 'TYPE_UINT64',
  int8: 'TYPE_INT8',
  int16: 'TYPE_INT16',
  int32: 'TYPE_INT32',
  int64: 'TYPE_INT64',
  float16: 'TYPE_FP16',
  float32: 'TYPE_FP32',
  float64: 'TYPE_FP64',
  string: 'TYPE_STRING',
});

/**
 * A model's metadata as Triton's `ModelConfig` (the subset clients read): with `max_batch_size`
 * above 0, dims leave out the batch dim, as Triton's configs do.
 *
 * @example
 * ```ts
 * modelConfig(model.metadata()); // { name: 'mnist', max_batch_size: 64, input: [{ name: 'image', data_type: 'TYPE_FP32', dims: [1, 28, 28] }], ... }
 * ```
 */
export function modelConfig(meta: ModelMetadata): Record<string, unknown> {
  const batched = meta.maxBatchSize > 0;
  const dims = (info: ModelMetadata['inputs'][number]) =>
    batched && info.batched ? info.dims.slice(1) : [...info.dims];
  return {
    name: meta.name,
    platform: meta.platform,
    backend: meta.backend ?? '',
    max_batch_size: Math.min(meta.maxBatchSize, 2 ** 31 - 1),
    input: meta.inputs.map((i) => ({ name: i.name, data_type: CONFIG_TYPE[i.type], dims: dims(i) })),
    output: meta.outputs.map((o) => ({ name: o.name, data_type: CONFIG_TYPE[o.type], dims: dims(o) })),
  };
}

/** `ModelRepositoryParameter`s as plain values (bytes as Uint8Array). */
function repositoryParameters(map: Record<string, ParameterMessage> | undefined): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const [k, p] of Object.entries(map ?? {})) {
    params[k] =
      p.parameter_choice === 'bytes_param'
        ? Uint8Array.from(p.bytes_param ?? [])
        : parameterValue(p, `parameter ${JSON.stringify(k.slice(0, 64))}`);
  }
  return params;
}

/** A ServeError as the status object grpc-js sends: code, message and trailing metadata. */
export function toGrpcStatus(err: unknown): Partial<grpc.StatusObject> & { code: grpc.status } {
  const e = toServeError(err);
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_KEY, e.code);
  if (e.retryAfterMs !== undefined) metadata.set(RETRY_AFTER_KEY, String(Math.ceil(e.retryAfterMs)));
  return { code: GRPC_STATUS[e.code], details: e.message, metadata };
}

/**
 * The `inference.GRPCInferenceService` implementation over a registry, for adding to a server you
 * build yourself. {@link createGrpcServer} is this plus the server.
 *
 * @example
 * ```ts
 * const server = new grpc.Server();
 * const { service, implementation } = inferenceService({ registry });
 * server.addService(service, implementation);
 * ```
 */
export function inferenceService(options: GrpcServerOptions): {
  service: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
} {
  const { registry, onError } = options;
  const outputContents = options.outputContents ?? 'raw';
  if (outputContents !== 'raw' && outputContents !== 'match')
    throw new TypeError("inferenceService: options.outputContents must be 'raw' or 'match'");
  const maxStreamInFlight = options.maxStreamInFlight ?? 64;
  checkPositiveInteger(maxStreamInFlight, 'maxStreamInFlight', 'inferenceService');
  const managed: ManagementOptions | undefined =
    options.management === true ? {} : options.management || undefined;
  const token = options.token ?? managed?.token;
  const auth = options.auth ? createAuthenticator(options.auth) : undefined;
  if (auth && token)
    throw new TypeError(
      'inferenceService: options.auth and a management token cannot be combined: give keys the management scope',
    );
  const service = createV2Service({
    ...options,
    management: managed ? { ...managed, ...(token ? { token } : {}) } : false,
  });
  const serverMetadata = service.serverMetadata([
    'classification',
    'sequence',
    'statistics',
    'model_configuration',
  ]);

  function report(err: unknown, method: string): grpc.StatusObject | Partial<grpc.StatusObject> {
    const status = toGrpcStatus(err);
    if (onError) {
      try {
        onError(toServeError(err), method);
      } catch {
        // A logger's failure must not change the answer.
      }
    }
    return status;
  }

  /**
   * {@link runInfer} in a server span that continues the caller's trace (W3C `traceparent` in the
   * call metadata), with the model and the layers' context (queue, compute, batch, cache) as attributes.
   */
  function tracedInfer(
    method: string,
    req: InferRequestMessage,
    metadata: grpc.Metadata,
    signal: AbortSignal,
    callDeadline: number | undefined,
  ): Promise<InferResponseMessage> {
    const carrier: Record<string, string> = {};
    for (const [k, v] of Object.entries(metadata.getMap())) if (typeof v === 'string') carrier[k] = v;
    const parent = propagation.extract(ROOT_CONTEXT, carrier);
    return tracer.startActiveSpan(
      `inference.GRPCInferenceService/${method}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'rpc.system': 'grpc',
          'rpc.service': 'inference.GRPCInferenceService',
          'rpc.method': method,
        },
      },
      parent,
      async (span) => {
        try {
          return await runInfer(req, signal, callDeadline, span);
        } catch (err) {
          const e = toServeError(err);
          span.setAttribute('rpc.grpc.status_code', GRPC_STATUS[e.code]);
          if (e.code === 'INTERNAL') span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
          throw e;
        } finally {
          span.end();
        }
      },
    );
  }

  /** Runs one ModelInferRequest: decode, then the shared request path, then encode. */
  async function runInfer(
    req: InferRequestMessage,
    signal: AbortSignal,
    callDeadline: number | undefined,
    span: Span,
  ): Promise<InferResponseMessage> {
    if (typeof req !== 'object' || req === null) throw invalidArgument('empty request');
    const name = req.model_name;
    if (typeof name !== 'string' || name.length === 0) throw invalidArgument('model_name is required');
    const version = req.model_version || undefined;
    span.setAttribute('mlserve.model.name', name);
    const id = typeof req.id === 'string' ? req.id : '';
    if (id) span.setAttribute('mlserve.request_id', id);
    let decoded: DecodedInputs;
    let reserved: ReturnType<typeof reservedParameters>;
    let outputs: RequestedOutput[] | undefined;
    try {
      decoded = decodeInputs(req);
      reserved = reservedParameters(parameterRecord(req.parameters, 'request'));
      outputs = requestedOutputs(req.outputs);
    } catch (err) {
      // An unknown model is NOT_FOUND whatever the inputs hold; looked up here only on that path.
      service.resolve(name, version);
      throw err;
    }
    const result = await service.infer(
      {
        name,
        version,
        inputs: decoded.inputs,
        id: id || undefined,
        parameters: reserved.parameters,
        timeoutUs: reserved.timeoutUs,
        deadline: callDeadline,
        priority: reserved.priority,
        sequence: reserved.sequence,
        outputs,
        signal,
      },
      span,
    );
    const names = outputs ? outputs.map((o) => o.name) : Object.keys(result.outputs);
    const encoded = encodeOutputs(names, result.outputs, outputContents === 'match' && !decoded.raw);
    return { model_name: result.model.name, model_version: result.model.version, id, ...encoded };
  }

  /** The outputs a request asks for, with classification; undefined for all. */
  function requestedOutputs(list: InferRequestMessage['outputs']): RequestedOutput[] | undefined {
    const requested = list ?? [];
    if (requested.length === 0) return undefined;
    const out: RequestedOutput[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < requested.length; i++) {
      const o = requested[i]!;
      if (typeof o.name !== 'string' || o.name.length === 0)
        throw invalidArgument(`output ${i}: name must be a non-empty string`);
      const what = `output "${o.name.slice(0, 64)}"`;
      if (seen.has(o.name)) throw invalidArgument(`${what} is requested twice`);
      seen.add(o.name);
      const entry: RequestedOutput = { name: o.name };
      const cls = o.parameters?.classification;
      if (cls !== undefined) {
        const k = parameterValue(cls, `${what} parameter "classification"`);
        if (typeof k !== 'number' || !Number.isSafeInteger(k) || k < 1)
          throw invalidArgument(`${what}: classification must be a positive integer`);
        entry.classification = k;
      }
      out.push(entry);
    }
    return out;
  }

  /** Checks the call's key for `scope` when `auth` is on (throws UNAUTHENTICATED / PERMISSION_DENIED / RESOURCE_EXHAUSTED). */
  function authorize(metadata: grpc.Metadata, scope: AuthScope): void {
    if (!auth) return;
    const value = (key: string) => {
      const v = metadata.get(key)[0];
      return typeof v === 'string' ? v : undefined;
    };
    auth.check(
      { authorization: value('authorization'), [auth.apiKeyHeader]: value(auth.apiKeyHeader) },
      scope,
    );
  }

  /** A unary method that needs `scope`. */
  function guarded<Req, Res>(
    method: string,
    scope: AuthScope,
    fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
  ): grpc.handleUnaryCall<Req, Res> {
    return unary<Req, Res>(method, (req, call) => {
      authorize(call.metadata, scope);
      return fn(req, call);
    });
  }

  function authorization(call: Pick<grpc.ServerUnaryCall<unknown, unknown>, 'metadata'>): string | undefined {
    const auth = call.metadata.get('authorization')[0];
    return typeof auth === 'string' ? auth : undefined;
  }

  /** A unary method from an async function; errors become statuses. */
  function unary<Req, Res>(
    method: string,
    fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      let result: Promise<Res>;
      try {
        result = Promise.resolve(fn(call.request, call));
      } catch (err) {
        result = Promise.reject(err);
      }
      result.then(
        (res) => callback(null, res),
        (err) => callback(report(err, method)),
      );
    };
  }

  const implementation: grpc.UntypedServiceImplementation = {
    ServerLive: unary('ServerLive', () => ({ live: true })),
    ServerReady: unary('ServerReady', () => ({ ready: registry.isReady() })),
    ModelReady: unary('ModelReady', (req: { name?: string; version?: string }) => {
      return { ready: service.modelReady(req.name ?? '', req.version || undefined) };
    }),
    ServerMetadata: guarded('ServerMetadata', 'metadata', () => serverMetadata),
    ModelMetadata: guarded('ModelMetadata', 'metadata', (req: { name?: string; version?: string }) =>
      service.modelMetadata(req.name ?? '', req.version || undefined),
    ),
    ModelConfig: guarded('ModelConfig', 'metadata', (req: { name?: string; version?: string }) => {
      const meta = service.metadataOf(service.resolve(req.name ?? '', req.version || undefined));
      return { config: modelConfig(meta) };
    }),
    // Triton's statistics extension; an empty name means every model.
    ModelStatistics: guarded('ModelStatistics', 'metrics', (req: { name?: string; version?: string }) =>
      service.modelStats(req.name || undefined, req.version || undefined),
    ),
    ModelInfer: (
      call: grpc.ServerUnaryCall<InferRequestMessage, InferResponseMessage>,
      callback: grpc.sendUnaryData<InferResponseMessage>,
    ) => {
      const controller = new AbortController();
      const onCancel = () => controller.abort();
      call.once('cancelled', onCancel);
      let work: Promise<InferResponseMessage>;
      try {
        authorize(call.metadata, 'infer');
        work = tracedInfer('ModelInfer', call.request, call.metadata, controller.signal, deadlineOf(call));
      } catch (err) {
        work = Promise.reject(err);
      }
      work.then(
        (res) => {
          call.removeListener('cancelled', onCancel);
          callback(null, res);
        },
        (err) => {
          call.removeListener('cancelled', onCancel);
          callback(report(err, 'ModelInfer'));
        },
      );
    },
    ModelStreamInfer: (call: grpc.ServerDuplexStream<InferRequestMessage, unknown>) => {
      const controller = new AbortController();
      call.once('cancelled', () => controller.abort());
      const callDeadline = deadlineOf(call);
      let tail: Promise<void> = Promise.resolve();
      let inFlight = 0;
      let paused = false;
      const writeInOrder = async (message: unknown) => {
        if (controller.signal.aborted || call.destroyed) return;
        if (!call.write(message)) {
          await new Promise<void>((resolve) => {
            const done = () => {
              call.off('drain', done);
              call.off('close', done);
              resolve();
            };
            call.on('drain', done);
            call.on('close', done);
          });
        }
      };
      call.on('data', (req: InferRequestMessage) => {
        inFlight++;
        if (inFlight >= maxStreamInFlight && !paused) {
          paused = true;
          call.pause();
        }
        // Requests run concurrently (so a batching layer can merge them); answers go in order. Each
        // message is authorized (and counts against the key's rate limit) on its own.
        let started: Promise<InferResponseMessage>;
        try {
          authorize(call.metadata, 'infer');
          started = tracedInfer('ModelStreamInfer', req, call.metadata, controller.signal, callDeadline);
        } catch (err) {
          started = Promise.reject(err);
        }
        const answer = started.then(
          (res) => ({ error_message: '', infer_response: res }),
          (err) => {
            const e = toServeError(err);
            if (onError) report(e, 'ModelStreamInfer');
            return {
              error_message: e.message,
              infer_response: {
                id: typeof req?.id === 'string' ? req.id : '',
                model_name: typeof req?.model_name === 'string' ? req.model_name : '',
                model_version: typeof req?.model_version === 'string' ? req.model_version : '',
                parameters: { [ERROR_CODE_KEY]: { string_param: e.code } satisfies ParameterMessage },
              },
            };
          },
        );
        tail = tail.then(async () => {
          const message = await answer;
          await writeInOrder(message);
          inFlight--;
          if (paused && inFlight < maxStreamInFlight) {
            paused = false;
            call.resume();
          }
        });
      });
      call.on('end', () => {
        tail.then(() => {
          if (!call.destroyed) call.end();
        });
      });
      call.on('error', () => controller.abort());
    },
    RepositoryIndex: guarded('RepositoryIndex', 'management', async (req: { ready?: boolean }, call) => {
      const models = await service.repositoryIndex(authorization(call));
      return { models: req.ready ? models.filter((r) => r.state === 'READY') : models };
    }),
    RepositoryModelLoad: guarded(
      'RepositoryModelLoad',
      'management',
      async (req: { model_name?: string; parameters?: Record<string, ParameterMessage> }, call) => {
        await service.repositoryLoad(
          authorization(call),
          req.model_name ?? '',
          repositoryParameters(req.parameters),
        );
        return {};
      },
    ),
    RepositoryModelUnload: guarded(
      'RepositoryModelUnload',
      'management',
      async (req: { model_name?: string; parameters?: Record<string, ParameterMessage> }, call) => {
        await service.repositoryUnload(
          authorization(call),
          req.model_name ?? '',
          repositoryParameters(req.parameters),
        );
        return {};
      },
    ),
  };
  const { GRPCInferenceService } = loadInferenceProto();
  return { service: GRPCInferenceService.service, implementation };
}

/**
 * A @grpc/grpc-js `Server` serving KServe V2's `inference.GRPCInferenceService` (with Triton's
 * streaming and repository methods) over a registry. Bind it yourself, or use {@link serveGrpc}.
 *
 * @example
 * ```ts
 * import * as grpc from '@grpc/grpc-js';
 * import { createGrpcServer } from '@mlserve/grpc';
 * const server = createGrpcServer({ registry, maxReceiveMessageLength: 16 * 1024 * 1024 });
 * server.bindAsync('0.0.0.0:8001', grpc.ServerCredentials.createInsecure(), (err, port) => {
 *   if (err) throw err;
 *   console.log(`gRPC on ${port}`);
 * });
 * ```
 */
export function createGrpcServer(options: GrpcServerOptions): grpc.Server {
  const receive = options.maxReceiveMessageLength ?? DEFAULT_MESSAGE_LIMIT;
  const send = options.maxSendMessageLength ?? DEFAULT_MESSAGE_LIMIT;
  checkPositiveInteger(receive, 'maxReceiveMessageLength', 'createGrpcServer');
  checkPositiveInteger(send, 'maxSendMessageLength', 'createGrpcServer');
  const { service, implementation } = inferenceService(options);
  const server = new grpc.Server({
    ...options.serverOptions,
    'grpc.max_receive_message_length': receive,
    'grpc.max_send_message_length': send,
  });
  server.addService(service, implementation);
  return server;
}

/** Options of {@link serveGrpc}. */
export interface ServeGrpcOptions extends GrpcServerOptions {
  /** Interface to bind (default `127.0.0.1`; `0.0.0.0` for every interface). */
  host?: string;
  /** Port (default 0: any free port; the bound one is returned). */
  port?: number;
  /** Default: insecure (plain HTTP/2), as Triton's default gRPC port; see also `tls`. */
  credentials?: grpc.ServerCredentials;
  /**
   * Serve over TLS with this PEM certificate (chain) and private key (no client certificates), a
   * shorthand for `credentials: grpc.ServerCredentials.createSsl(null, [{ cert_chain, private_key }])`.
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** How long `close()` lets calls in flight finish before cancelling them, ms (default 10 000). */
  shutdownTimeoutMs?: number;
}

/** A bound gRPC server. */
export interface GrpcServing {
  port: number;
  server: grpc.Server;
  /**
   * Stops accepting calls, lets those in flight finish for up to `shutdownTimeoutMs`, then cancels
   * the rest. Idempotent. Does not close the registry (call `registry.close()` for that).
   */
  close(): Promise<void>;
}

/**
 * Creates, binds and starts the gRPC server.
 *
 * @example
 * ```ts
 * import { serveGrpc } from '@mlserve/grpc';
 * const grpcServer = await serveGrpc({ registry, host: '0.0.0.0', port: 8001 });
 * process.on('SIGTERM', async () => { await Promise.all([grpcServer.close(), registry.close()]); });
 * ```
 */
export async function serveGrpc(options: ServeGrpcOptions): Promise<GrpcServing> {
  const { host = '127.0.0.1', port = 0, shutdownTimeoutMs = 10_000 } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new TypeError('serveGrpc: options.port must be an integer from 0 to 65535');
  if (options.tls && options.credentials)
    throw new TypeError('serveGrpc: options.tls and options.credentials: give one');
  const credentials = options.tls
    ? grpc.ServerCredentials.createSsl(
        null,
        [{ cert_chain: Buffer.from(options.tls.cert), private_key: Buffer.from(options.tls.key) }],
        false,
      )
    : (options.credentials ?? grpc.ServerCredentials.createInsecure());
  const server = createGrpcServer(options);
  const address = host.includes(':') && !host.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
  const bound = await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  }).catch((err: Error) => {
    server.forceShutdown();
    throw new ServeError('UNAVAILABLE', `cannot bind gRPC to ${address}: ${err.message}`, { cause: err });
  });
  let closing: Promise<void> | undefined;
  return {
    port: bound,
    server,
    close() {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, shutdownTimeoutMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      return closing;
    },
  };
}
