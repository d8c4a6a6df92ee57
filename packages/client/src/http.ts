import {
  invalidArgument,
  type ParameterValue,
  ServeError,
  type Tensors,
  toServeError,
  unavailable,
} from '@mlserve/core';
import { type Client, remoteModel } from './client.js';
import { encodeV2Request, type RequestedOutput } from './codec.js';
import { errorFromAnswer } from './errors.js';
import { CallScope, type RetryPolicy, retryPolicy } from './retry.js';
import type { CallOptions, ClientOptions, InferCallOptions, ServerMetadata } from './types.js';
import { parseModelMetadata, parseServerMetadata, readInferResponse } from './v2.js';

/** One HTTP exchange as a {@link HttpSender} performs it. */
export interface HttpExchange {
  method: 'GET' | 'POST';
  /** Path and query below the client's base URL (`/v2/models/mnist/infer`). */
  path: string;
  headers: Record<string, string>;
  body?: Uint8Array;
  signal: AbortSignal;
}

/** An answer, its body complete and already decompressed. */
export interface HttpAnswer {
  status: number;
  header(name: string): string | null;
  body: Uint8Array;
}

/** A network failure: `sent` is false when the request certainly never reached the server. */
export class NetworkError extends Error {
  override readonly name = 'NetworkError';
  constructor(
    message: string,
    readonly sent: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What each platform provides: Node (undici's pool, zlib) or the browser (fetch, CompressionStream). */
export interface HttpSender {
  send(exchange: HttpExchange): Promise<HttpAnswer>;
  gzip(bytes: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

const TIMEOUT_HEADER = 'x-request-timeout-ms';

/** Request parameters the client sets itself from its own options. */
const RESERVED = [
  'timeout',
  'priority',
  'sequence_id',
  'sequence_start',
  'sequence_end',
  'binary_data_output',
];

function outputsOf(options: InferCallOptions, binary: boolean): RequestedOutput[] | undefined {
  const cls = options.classification;
  if (!options.outputs) {
    if (cls === undefined) return undefined;
    if (typeof cls === 'number')
      throw invalidArgument('classification: k for every output needs `outputs` named');
    return Object.entries(cls).map(([name, k]) => ({ name, binary: false, classification: k as number }));
  }
  return options.outputs.map((name) => {
    const k = typeof cls === 'number' ? cls : (cls as Record<string, number> | undefined)?.[name];
    // Classification answers are a few short strings: JSON keeps them strings (binary BYTES are bytes).
    return k === undefined ? { name, binary } : { name, binary: false, classification: k };
  });
}

/**
 * The HTTP client over any {@link HttpSender}: Node's entry passes undici's pool, the browser's
 * passes fetch.
 * @internal
 */
export function createHttpClient(options: ClientOptions, sender: HttpSender): Client {
  const base = new URL(options.url);
  if (base.protocol !== 'http:' && base.protocol !== 'https:')
    throw new TypeError(`createClient: options.url must be http(s)://host:port, got ${options.url}`);
  const prefix = base.pathname.replace(/\/+$/, '');
  const policy = retryPolicy(options.retry);
  const compress = options.compression === 'gzip';
  const compressThreshold = options.compressThreshold ?? 1024;
  const defaultHeaders = { ...(options.headers ?? {}) };
  let closed = false;
  let binarySupport: Promise<boolean> | undefined;

  async function exchange(
    method: 'GET' | 'POST',
    path: string,
    call: CallOptions & { retry?: boolean },
    body: Uint8Array | undefined,
    extraHeaders: Record<string, string>,
    answerOk: (status: number) => boolean,
    encodeBody?: (timeoutMs: number | undefined) => { body: Uint8Array; headers: Record<string, string> },
  ): Promise<HttpAnswer> {
    if (closed) throw unavailable('the client is closed');
    const scope = new CallScope(call.signal, call.timeoutMs ?? options.timeoutMs);
    const retries: RetryPolicy = call.retry === false ? { ...policy, retries: 0 } : policy;
    let encoded: { body: Uint8Array; headers: Record<string, string> } | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        if (scope.signal.aborted) throw scope.abortError();
        const headers: Record<string, string> = {
          ...defaultHeaders,
          ...extraHeaders,
          ...(call.headers ?? {}),
        };
        if (compress) headers['accept-encoding'] = 'gzip';
        let payload = body;
        const left = scope.remainingMs();
        if (Number.isFinite(left)) {
          if (left <= 0)
            throw scope.signal.aborted
              ? scope.abortError()
              : new ServeError('DEADLINE_EXCEEDED', 'the deadline passed');
          const ms = Math.max(1, Math.ceil(left));
          headers[TIMEOUT_HEADER] = String(ms);
          // Each attempt tells the server the time that is left (the V2 `timeout` parameter too).
          if (encodeBody) encoded = encodeBody(ms);
        }
        if (encodeBody) {
          encoded ??= encodeBody(undefined);
          payload = encoded.body;
          Object.assign(headers, encoded.headers);
        }
        if (payload && compress && payload.byteLength >= compressThreshold) {
          payload = await sender.gzip(payload);
          headers['content-encoding'] = 'gzip';
        }
        let err: ServeError;
        let retryable: boolean;
        try {
          const answer = await sender.send({
            method,
            path: prefix + path,
            headers,
            ...(payload ? { body: payload } : {}),
            signal: scope.signal,
          });
          if (answerOk(answer.status)) return answer;
          err = errorFromAnswer(answer.status, answer.body, answer.header);
          retryable = true;
        } catch (e) {
          if (scope.signal.aborted) throw scope.abortError();
          if (e instanceof NetworkError) {
            err = unavailable(`${method} ${path}: ${e.message}`, { cause: e });
            // A POST that may have reached the server is not repeated: it may have run.
            retryable = method === 'GET' || !e.sent;
          } else throw toServeError(e);
        }
        if (!retryable) throw err;
        await scope.backoff(retries, err, attempt);
      }
    } finally {
      scope.dispose();
    }
  }

  const decoder = new TextDecoder();
  const jsonOf = (a: HttpAnswer): unknown => {
    try {
      return JSON.parse(decoder.decode(a.body));
    } catch (err) {
      throw new ServeError('INTERNAL', `the server answered ${a.status} with a body that is not JSON`, {
        cause: err,
      });
    }
  };
  const ok = (s: number) => s >= 200 && s < 300;
  const okOr503 = (s: number) => ok(s) || s === 503;
  const modelPath = (name: string, version: string | undefined) =>
    `/v2/models/${encodeURIComponent(name)}${version === undefined ? '' : `/versions/${encodeURIComponent(version)}`}`;
  // Health answers are facts, not failures: a 503 is `false`, and nothing is retried.
  const health = { retry: false };

  async function serverMetadata(call: CallOptions = {}): Promise<ServerMetadata> {
    return parseServerMetadata(jsonOf(await exchange('GET', '/v2', call, undefined, {}, ok)));
  }

  function useBinary(call: InferCallOptions): Promise<boolean> | boolean {
    const b = call.binary ?? options.binary ?? 'auto';
    if (b !== 'auto') return b;
    binarySupport ??= serverMetadata({ ...(call.signal ? { signal: call.signal } : {}) }).then(
      (m) => m.extensions.includes('binary_tensor_data'),
      (err: unknown) => {
        binarySupport = undefined;
        // A server without `GET /v2` (or not up yet): JSON, which every V2 server reads.
        if (err instanceof ServeError && (err.code === 'CANCELLED' || err.code === 'DEADLINE_EXCEEDED'))
          throw err;
        return false;
      },
    );
    return binarySupport;
  }

  async function infer(model: string, inputs: Tensors, call: InferCallOptions = {}): Promise<Tensors> {
    if (typeof model !== 'string' || model.length === 0)
      throw invalidArgument('model must be a non-empty string');
    const binary = await useBinary(call);
    const params: Record<string, ParameterValue> = {};
    for (const [k, v] of Object.entries(call.parameters ?? {})) {
      if (RESERVED.includes(k)) throw invalidArgument(`parameter "${k}" is set through its own option`);
      params[k] = v;
    }
    if (call.priority !== undefined) params.priority = call.priority;
    if (call.sequence) {
      const id = call.sequence.id;
      params.sequence_id = typeof id === 'bigint' ? Number(id) : id;
      if (call.sequence.start !== undefined) params.sequence_start = call.sequence.start;
      if (call.sequence.end !== undefined) params.sequence_end = call.sequence.end;
    }
    const outputs = outputsOf(call, binary);
    const encode = (timeoutMs: number | undefined) => {
      const enc = encodeV2Request(inputs, {
        ...(call.id === undefined ? {} : { id: call.id }),
        binary,
        ...(outputs ? { outputs } : {}),
        // Named outputs say binary or not each (as tritonclient does); else all in binary.
        binaryOutputs: outputs ? false : binary,
        parameters: params,
        ...(timeoutMs === undefined ? {} : { timeoutUs: timeoutMs * 1000 }),
      });
      const headers: Record<string, string> = { 'content-type': enc.contentType };
      if (enc.headerLength !== undefined)
        headers['inference-header-content-length'] = String(enc.headerLength);
      return { body: enc.body, headers };
    };
    const answer = await exchange(
      'POST',
      `${modelPath(model, call.version)}/infer`,
      // A request of a sequence changes the model's state: it is never sent twice.
      { ...call, retry: call.retry !== false && !call.sequence },
      undefined,
      {},
      ok,
      encode,
    );
    return readInferResponse(answer.body, answer.header('inference-header-content-length')).outputs;
  }

  const client: Client = {
    transport: 'http',
    async serverLive(call = {}) {
      return ok(
        (await exchange('GET', '/v2/health/live', { ...call, ...health }, undefined, {}, okOr503)).status,
      );
    },
    async serverReady(call = {}) {
      return ok(
        (await exchange('GET', '/v2/health/ready', { ...call, ...health }, undefined, {}, okOr503)).status,
      );
    },
    serverMetadata,
    async modelReady(model, call = {}) {
      const a = await exchange(
        'GET',
        `${modelPath(model, call.version)}/ready`,
        { ...call, ...health },
        undefined,
        {},
        okOr503,
      );
      return ok(a.status);
    },
    async modelMetadata(model, call = {}) {
      return parseModelMetadata(
        jsonOf(await exchange('GET', modelPath(model, call.version), call, undefined, {}, ok)),
      );
    },
    infer,
    async model(name, opts = {}) {
      const meta = await client.modelMetadata(name, opts);
      return remoteModel('http', meta, opts.version, opts.signature, infer);
    },
    async close() {
      if (closed) return;
      closed = true;
      await sender.close();
    },
  };
  return client;
}
