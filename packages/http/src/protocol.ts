import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { deflate, gunzip, gzip, inflate } from 'node:zlib';
import {
  invalidArgument,
  type ModelRegistry,
  methodNotAllowed,
  notFound,
  payloadTooLarge,
  type ServeError,
  toServeError,
  unsupportedMediaType,
} from '@mlserve/core';
import {
  classificationLabels,
  decodeV2Request,
  encodeV2Response,
  parseHeaderLength,
  parseJson,
  type V2Request,
} from '@mlserve/protocol';
import {
  type Authenticator,
  type AuthOptions,
  type AuthScope,
  type CorsOptions,
  type CrossOriginOptions,
  corsPolicy,
  createAuthenticator,
  createV2Service,
  crossOriginCheck,
  type ManagementOptions,
  type ModelAction,
} from '@mlserve/protocol/server';
import {
  INVALID_SPAN_CONTEXT,
  ProxyTracerProvider,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import {
  classifyOutput,
  decodeExamples,
  decodePredict,
  encodeClassify,
  encodePredict,
  encodeRegress,
  regressOutput,
  tfMetadata,
  tfStatus,
} from './tfserving.js';

const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);
const gzipAsync = promisify(gzip);
const deflateAsync = promisify(deflate);

/** A pino-style logger (Fastify's `request.log` is one). */
export interface Logger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** The `/metrics` source: a prom-client `Registry` fits as it is. */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export type { Authenticator, AuthOptions, CorsOptions, CrossOriginOptions, ManagementOptions };

/** Options shared by {@link mlservePlugin} and {@link mlserveRouter}. */
export interface MlserveHttpOptions {
  /** The models to serve. */
  registry: ModelRegistry;
  /** Largest request body in bytes, compressed or not (default 64 MiB); larger gets 413. */
  bodyLimit?: number;
  /** The model repository extension (`/v2/repository/...`): off unless given (`true` for no token). */
  management?: boolean | ManagementOptions;
  /** Mounts `GET /metrics` on this registry (a prom-client `Registry`, e.g. `metricsRegistry()`). */
  metrics?: MetricsSource;
  /** Classification labels by model name (else `metadata().extra.labels`): a list, or lists by output. */
  labels?: Record<string, readonly string[] | Record<string, readonly string[]>>;
  /** Responses at least this large are compressed when the client's Accept-Encoding allows (default 1024 bytes). */
  compressThreshold?: number;
  /** Requests may not ask for a longer timeout than this, ms (default: no cap). */
  maxTimeoutMs?: number;
  /**
   * Check each request against the model's metadata (input names, types, shapes, output names)
   * before it runs (default true): compiled once per loaded model version, run once per request;
   * `validation()`, the batcher and backend-onnx then trust the request instead of checking again.
   */
  validate?: boolean;
  /**
   * Extra per-model actions: `POST /v2/models/{name}[/versions/{v}]/{action}` with a JSON body,
   * answered 200 with the JSON the function returns (ground-truth feedback, say). See
   * `@mlserve/protocol/server`'s `ModelAction`.
   */
  modelActions?: Record<string, ModelAction>;
  /**
   * Cross-origin protection, on by default (`false` turns it off): requests a browser page on
   * another origin sends (POST with `Sec-Fetch-Site` other than `same-origin`/`none`, or an
   * `Origin` that is not this host) are 403 PERMISSION_DENIED unless the origin is in
   * `trustedOrigins`; POSTs with a Content-Type a browser sends without a preflight (`text/plain`,
   * `application/x-www-form-urlencoded`, `multipart/form-data`) are 415 UNSUPPORTED_MEDIA_TYPE; on
   * a loopback connection, a `Host` other than localhost, 127.x.x.x, [::1] or `allowedHosts` is 403
   * (DNS rebinding). Clients that send no Origin (curl, tritonclient, Node) are not affected.
   * See `crossOriginCheck` in `@mlserve/protocol/server`.
   */
  crossOrigin?: CrossOriginOptions | false;
  /**
   * CORS for browser clients on other origins: allowed `origins` (or `'*'`), `methods`, `headers`,
   * `maxAgeSeconds`. Preflights (`OPTIONS`) are answered; answers to allowed origins carry
   * `Access-Control-Allow-Origin`. The allowed origins are also trusted by the cross-origin check.
   * Off by default (no CORS headers: other origins' pages cannot read answers). See `corsPolicy` in
   * `@mlserve/protocol/server`.
   */
  cors?: CorsOptions;
  /**
   * API-key authentication: `{ keys }` (SHA-256 digests with scopes and rate limits, e.g. from
   * `readKeysFile()`) or an `Authenticator` from `createAuthenticator()` (share one with
   * `@mlserve/grpc` so rate limits count both). Keys come in `Authorization: Bearer <key>` or
   * `x-api-key`. Scopes: `infer` (infer, :predict, model actions), `metadata` (`/v2`, model
   * metadata and config, TF Serving status), `metrics` (`/metrics`, statistics), `management`
   * (`/v2/repository/...`; replaces `management.token`, which cannot be combined with it). Health
   * (`/v2/health/live`, `/v2/health/ready`, `/v2/models/{m}/ready`) and CORS preflights stay open.
   * No key or an unknown one: 401 UNAUTHENTICATED; a missing scope: 403 PERMISSION_DENIED; over the
   * key's rate limit: 429 RESOURCE_EXHAUSTED with Retry-After.
   */
  auth?: AuthOptions | Authenticator;
  /** `GET /v2` server name and version (default `mlserve` and `@mlserve/protocol`'s version). */
  serverName?: string;
  serverVersion?: string;
}

/** A request as the protocol core sees it, whatever the framework. */
export interface ProtocolRequest {
  method: string;
  /** Path below the mount prefix, without the query string: `/v2/models/mnist/infer`. */
  path: string;
  /** Lower-case header names. */
  headers: Record<string, string | string[] | undefined>;
  body: Buffer | undefined;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  log?: Logger;
  /** The server's address on this connection (`socket.localAddress`): loopback turns the Host check on. */
  localAddress?: string | undefined;
  /** The adapter already ran `precheck` on it (cross-origin and API key): `handle` skips them. */
  checked?: boolean;
  /**
   * The request id the transport already chose and bound to `log` (Fastify's `request.id` from
   * {@link genRequestId}): used as the request id, and not repeated in log lines.
   */
  id?: string | undefined;
  /** Called when a V2 body's `id` (a safe header value) becomes the request id, so logs follow it. */
  setId?: ((id: string) => void) | undefined;
}

/** What to send back. */
export interface ProtocolResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer | undefined;
}

/** The header that sets a request's timeout in milliseconds (besides the V2 `timeout` parameter in µs). */
export const TIMEOUT_HEADER = 'x-request-timeout-ms';
/** The request id header, read when the body has no `id` and always sent back. */
export const REQUEST_ID_HEADER = 'x-request-id';

const SAFE_HEADER = /^[\x21-\x7e][\x20-\x7e]{0,127}$/;
const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;
const tracer = trace.getTracer('@mlserve/http');
/** What the global tracer provider delegates to while no SDK has registered one. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();
/** The span requests get while tracing is off: records nothing, like the no-op tracer's. */
const NOOP_SPAN = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** Whether a tracer provider is registered (checked per request: one may be registered later). */
function tracingOn(): boolean {
  const provider = trace.getTracerProvider();
  return !(provider instanceof ProxyTracerProvider) || provider.getDelegate() !== NOOP_PROVIDER;
}

function header(req: ProtocolRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

const REQUEST_ID = Symbol.for('@mlserve/http.requestId');

/**
 * A Fastify `genReqId`: the request's `x-request-id` when it is a safe header value (printable
 * ASCII, at most 128 characters), else a random UUID. With it, Fastify's `request.id` (the `reqId`
 * of every log line) is the id {@link mlservePlugin} answers with in `x-request-id` and uses as the
 * V2 `id` fallback: one id per request. When a V2 body carries its own `id`, that id becomes the
 * request's id (see {@link requestIdOf}).
 *
 * @example
 * ```ts
 * import Fastify from 'fastify';
 * import { genRequestId } from '@mlserve/http';
 * const app = Fastify({ logger: true, genReqId: genRequestId });
 * await app.close();
 * ```
 */
export function genRequestId(req: { headers: Record<string, string | string[] | undefined> }): string {
  const v = req.headers[REQUEST_ID_HEADER];
  const given = Array.isArray(v) ? v[0] : v;
  const id = given !== undefined && SAFE_HEADER.test(given) ? given : randomUUID();
  (req as { [REQUEST_ID]?: string })[REQUEST_ID] = id;
  return id;
}

/**
 * The current request id of a raw request whose id came from {@link genRequestId} (after a V2 body
 * with an `id`, that id), else `undefined`. A pino `mixin` can read it to log the final id.
 *
 * @example
 * ```ts
 * import { genRequestId, requestIdOf } from '@mlserve/http';
 * const raw = { headers: { 'x-request-id': 'abc-1' } };
 * genRequestId(raw);
 * requestIdOf(raw); // 'abc-1'
 * ```
 */
export function requestIdOf(req: object): string | undefined {
  return (req as { [REQUEST_ID]?: string })[REQUEST_ID];
}

/** Sets the request id {@link requestIdOf} answers (the plugin does, for a V2 body's `id`). */
export function setRequestId(req: object, id: string): void {
  (req as { [REQUEST_ID]?: string })[REQUEST_ID] = id;
}

/**
 * Maps any error to its status and `{"error": ...}` body, with Retry-After for overload.
 *
 * @example
 * ```ts
 * const { status, headers, body } = errorResponse(resourceExhausted('queue full', { retryAfterMs: 1500 }));
 * // 429, retry-after: 2, {"error":"queue full","code":"RESOURCE_EXHAUSTED","retryAfterMs":1500}
 * ```
 */
export function errorResponse(err: unknown, requestId?: string): ProtocolResponse {
  const e = toServeError(err);
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (requestId) headers[REQUEST_ID_HEADER] = requestId;
  if (e.retryAfterMs !== undefined)
    headers['retry-after'] = String(Math.max(1, Math.ceil(e.retryAfterMs / 1000)));
  return { status: e.status, headers, body: Buffer.from(JSON.stringify(e.toJSON())) };
}

/** A Buffer over the same memory (no copy). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function json(status: number, value: unknown, extra: Record<string, string> = {}): ProtocolResponse {
  return {
    status,
    headers: { 'content-type': 'application/json', ...extra },
    body: Buffer.from(JSON.stringify(value)),
  };
}

/**
 * Decompresses a request body per `Content-Encoding` (gzip, deflate, identity), never producing
 * more than `limit` bytes (PAYLOAD_TOO_LARGE past it).
 *
 * @example
 * ```ts
 * const raw = await decodeBody(body, req.headers['content-encoding'], 64 * 1024 * 1024);
 * ```
 */
export async function decodeBody(body: Buffer, encoding: string | undefined, limit: number): Promise<Buffer> {
  const enc = encoding?.trim().toLowerCase();
  if (!enc || enc === 'identity') return body;
  if (enc !== 'gzip' && enc !== 'deflate')
    throw unsupportedMediaType(`unsupported Content-Encoding "${enc.slice(0, 32)}"`);
  try {
    return enc === 'gzip'
      ? await gunzipAsync(body, { maxOutputLength: limit })
      : await inflateAsync(body, { maxOutputLength: limit });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
      throw payloadTooLarge(`the decompressed body is over the limit of ${limit} bytes`);
    }
    throw invalidArgument(`the ${enc} body is corrupt: ${(err as Error).message}`);
  }
}

/** Picks gzip or deflate from Accept-Encoding (q=0 excluded). */
function pickEncoding(accept: string | undefined): 'gzip' | 'deflate' | undefined {
  if (!accept) return undefined;
  const ok = new Set<string>();
  for (const part of accept.split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (q && Number(q.slice(2)) === 0) continue;
    if (name) ok.add(name);
  }
  if (ok.has('gzip')) return 'gzip';
  if (ok.has('deflate')) return 'deflate';
  return undefined;
}

const V2_MODEL = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/[a-z][a-z0-9_-]*)?$/;
const V2_REPO = /^\/v2\/repository\/models\/([^/]+)\/(load|unload)$/;
const V2_REPO_ROLLOUT = /^\/v2\/repository\/models\/([^/]+)\/versions\/([^/]+)\/(promote|reject)$/;
const V1_MODEL =
  /^\/v1\/models\/([^/:]+)(?:\/(versions|labels)\/([^/:]+))?(\/metadata|:predict|:classify|:regress)?$/;

function decodeSegment(s: string | undefined): string | undefined {
  if (s === undefined) return undefined;
  try {
    return decodeURIComponent(s);
  } catch {
    throw invalidArgument('the path is not valid percent-encoding');
  }
}

/**
 * The framework-free protocol core: KServe V2 and TF Serving REST over a {@link ModelRegistry}.
 * The Fastify plugin and the Express router are thin shells around it. What is not HTTP lives in
 * `@mlserve/protocol` (the V2 codec, `createV2Service`, API keys), which `@mlserve/grpc` uses
 * too; the gRPC server uses nothing from this package.
 *
 * @example
 * ```ts
 * const protocol = createProtocol({ registry });
 * const res = await protocol.handle({ method: 'GET', path: '/v2/health/ready', headers: {}, body: undefined, signal });
 * ```
 */
export function createProtocol(options: MlserveHttpOptions) {
  const { registry, metrics } = options;
  const bodyLimit = options.bodyLimit ?? DEFAULT_BODY_LIMIT;
  const compressThreshold = options.compressThreshold ?? 1024;
  if (!Number.isSafeInteger(bodyLimit) || bodyLimit <= 0)
    throw new TypeError('createProtocol: options.bodyLimit must be a positive integer');
  const auth = options.auth ? createAuthenticator(options.auth) : undefined;
  const managed = typeof options.management === 'object' ? options.management : undefined;
  if (auth && managed?.token)
    throw new TypeError(
      'createProtocol: options.auth and management.token cannot be combined: give keys the management scope',
    );
  const service = createV2Service(options);
  const cors = options.cors ? corsPolicy(options.cors) : undefined;
  const originCheck = crossOriginCheck(
    options.crossOrigin === false
      ? false
      : {
          ...options.crossOrigin,
          trustedOrigins: [
            ...(options.crossOrigin?.trustedOrigins ?? []),
            ...(cors ? (cors.origins === '*' ? ['*'] : cors.origins) : []),
          ],
        },
  );
  const metadata = service.serverMetadata([
    'binary_tensor_data',
    'classification',
    'statistics',
    'model_configuration',
    'sequence',
  ]);

  /** `x-request-timeout-ms` in ms (0 or absent: none); INVALID_ARGUMENT when it is not a number. */
  function timeoutHeader(req: ProtocolRequest): number | undefined {
    const h = header(req, TIMEOUT_HEADER);
    if (h === undefined) return undefined;
    const v = Number(h);
    if (h.trim() === '' || !Number.isFinite(v) || v < 0)
      throw invalidArgument(`${TIMEOUT_HEADER} must be a non-negative number`);
    return v;
  }

  async function maybeCompress(req: ProtocolRequest, res: ProtocolResponse): Promise<ProtocolResponse> {
    if (!res.body || res.body.byteLength < compressThreshold) return res;
    const enc = pickEncoding(header(req, 'accept-encoding'));
    if (!enc) return res;
    const body = enc === 'gzip' ? await gzipAsync(res.body) : await deflateAsync(res.body);
    return { ...res, headers: { ...res.headers, 'content-encoding': enc, vary: 'Accept-Encoding' }, body };
  }

  async function readBody(req: ProtocolRequest): Promise<Buffer> {
    return decodeBody(req.body ?? Buffer.alloc(0), header(req, 'content-encoding'), bodyLimit);
  }

  async function v2Infer(
    req: ProtocolRequest,
    name: string,
    version: string | undefined,
    requestId: string,
    span: Span,
  ) {
    let decoded: V2Request;
    let timeoutMs: number | undefined;
    try {
      const body = await readBody(req);
      decoded = decodeV2Request(
        body,
        parseHeaderLength(header(req, 'inference-header-content-length'), body.byteLength),
      );
      timeoutMs = timeoutHeader(req);
    } catch (err) {
      // An unknown model is 404 whatever the body holds: looked up only when the body is bad, so a
      // good request costs one lookup (in the service, with its options for the version resolver).
      service.resolve(name, version);
      throw err;
    }
    const id = decoded.id ?? requestId;
    // A V2 body id that is a safe header value is the request's id from here (errors included).
    if (id !== requestId && SAFE_HEADER.test(id)) req.setId?.(id);
    const { outputs, model } = await service.infer(
      {
        name,
        version,
        inputs: decoded.inputs,
        id,
        parameters: decoded.parameters,
        timeoutUs: decoded.timeoutUs,
        timeoutMs,
        priority: decoded.priority,
        sequence: decoded.sequence,
        outputs: decoded.outputs,
        signal: req.signal,
      },
      span,
    );
    const enc = encodeV2Response(model, id, outputs, decoded);
    const headers: Record<string, string> = { 'content-type': enc.contentType };
    // The id goes back in a header only when it is a safe header value (the body always has it).
    headers[REQUEST_ID_HEADER] = SAFE_HEADER.test(id) ? id : requestId;
    if (enc.headerLength !== undefined) headers['inference-header-content-length'] = String(enc.headerLength);
    return maybeCompress(req, { status: 200, headers, body: asBuffer(enc.body) });
  }

  async function v1Predict(
    req: ProtocolRequest,
    name: string,
    version: string | undefined,
    requestId: string,
    span: Span,
  ) {
    const model = service.resolve(name, version);
    const body = parseJson(await readBody(req));
    const { inputs, format } = decodePredict(body, service.metadataOf(model));
    const { outputs } = await service.infer(
      {
        name,
        version,
        inputs,
        id: requestId,
        parameters: Object.create(null) as Record<string, never>,
        timeoutUs: undefined,
        timeoutMs: timeoutHeader(req),
        priority: undefined,
        sequence: undefined,
        outputs: undefined,
        signal: req.signal,
      },
      span,
      model,
    );
    return maybeCompress(req, json(200, encodePredict(outputs, format), { [REQUEST_ID_HEADER]: requestId }));
  }

  /** TF Serving's `:classify` / `:regress`: examples in, one output read (see classifyOutput / regressOutput). */
  async function v1Examples(
    req: ProtocolRequest,
    name: string,
    version: string | undefined,
    action: ':classify' | ':regress',
    requestId: string,
    span: Span,
  ) {
    const model = service.resolve(name, version);
    const meta = service.metadataOf(model);
    const output = action === ':classify' ? classifyOutput(meta) : regressOutput(meta);
    const inputs = decodeExamples(parseJson(await readBody(req)), meta);
    const { outputs } = await service.infer(
      {
        name,
        version,
        inputs,
        id: requestId,
        parameters: Object.create(null) as Record<string, never>,
        timeoutUs: undefined,
        timeoutMs: timeoutHeader(req),
        priority: undefined,
        sequence: undefined,
        outputs: [{ name: output }],
        signal: req.signal,
      },
      span,
      model,
    );
    const t = outputs[output]!;
    const body =
      action === ':classify'
        ? encodeClassify(t, classificationLabels(options.labels ?? {}, meta, output))
        : encodeRegress(t);
    return maybeCompress(req, json(200, body, { [REQUEST_ID_HEADER]: requestId }));
  }

  async function modelAction(
    req: ProtocolRequest,
    action: ModelAction,
    name: string,
    version: string | undefined,
  ) {
    const body = await readBody(req);
    const parsed = body.byteLength === 0 ? {} : parseJson(body);
    return json(200, (await action({ name, version, body: parsed, headers: req.headers })) ?? {});
  }

  async function route(req: ProtocolRequest, requestId: string, span: Span): Promise<ProtocolResponse> {
    const { method, path } = req;
    const get = method === 'GET' || method === 'HEAD';
    if (path === '/v2' || path === '/v2/') {
      if (!get) throw notAllowed();
      return json(200, metadata);
    }
    if (path === '/v2/health/live') return json(200, { live: true });
    if (path === '/v2/health/ready') {
      const ready = registry.isReady();
      return json(ready ? 200 : 503, { ready });
    }
    if (path === '/v2/models/stats') {
      if (!get) throw notAllowed();
      return json(200, service.modelStats());
    }
    let m = V2_MODEL.exec(path);
    if (m) {
      const name = decodeSegment(m[1])!;
      const version = decodeSegment(m[2]);
      span.setAttribute('mlserve.model.name', name);
      const action = m[3];
      if (action === '/infer') {
        if (method !== 'POST') throw notAllowed();
        return v2Infer(req, name, version, requestId, span);
      }
      if (action !== undefined && action !== '/ready' && action !== '/config' && action !== '/stats') {
        const fn = service.modelAction(action.slice(1));
        if (!fn) throw notFound(`no route ${method} ${path.slice(0, 200)}`);
        if (method !== 'POST') throw notAllowed();
        return modelAction(req, fn, name, version);
      }
      if (!get) throw notAllowed();
      if (action === '/stats') return json(200, service.modelStats(name, version));
      if (action === '/config') return json(200, service.modelConfig(name, version));
      if (action === '/ready') {
        const ready = service.modelReady(name, version);
        return json(ready ? 200 : 503, { name, ready });
      }
      return json(200, service.modelMetadata(name, version));
    }
    if (path.startsWith('/v2/repository/')) {
      if (!service.management) throw notFound(`no route ${path}`);
      if (method !== 'POST') throw notAllowed();
      const auth = header(req, 'authorization');
      // The token before the body: an unauthenticated client gets nothing decompressed or parsed.
      service.checkToken(auth);
      if (path === '/v2/repository/index') {
        return json(
          200,
          (await service.repositoryIndex(auth)).map((r) =>
            r.version === '' ? { ...r, version: undefined } : r,
          ),
        );
      }
      m = V2_REPO.exec(path);
      if (m) {
        const name = decodeSegment(m[1])!;
        const body = await readBody(req);
        const parsed = body.byteLength === 0 ? {} : parseJson(body);
        const raw = (parsed as { parameters?: unknown }).parameters;
        const params = raw && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
        if (m[2] === 'unload') await service.repositoryUnload(auth, name, params);
        else await service.repositoryLoad(auth, name, params);
        return json(200, {});
      }
      m = V2_REPO_ROLLOUT.exec(path);
      if (m) {
        // A gated rollout's manual decision; reject takes an optional { "reason": "..." }.
        const body = await readBody(req);
        const parsed = body.byteLength === 0 ? {} : parseJson(body);
        const reason = (parsed as { reason?: unknown } | null)?.reason;
        if (reason !== undefined && typeof reason !== 'string')
          throw invalidArgument('"reason" must be a string');
        const action = m[3] as 'promote' | 'reject';
        await service.repositoryRollout(auth, decodeSegment(m[1])!, decodeSegment(m[2])!, action, reason);
        return json(200, {});
      }
    }
    m = V1_MODEL.exec(path);
    if (m) {
      const name = decodeSegment(m[1])!;
      const version = decodeSegment(m[3]);
      span.setAttribute('mlserve.model.name', name);
      const action = m[4];
      if (action === ':predict') {
        if (method !== 'POST') throw notAllowed();
        return v1Predict(req, name, version, requestId, span);
      }
      if (action === ':classify' || action === ':regress') {
        if (method !== 'POST') throw notAllowed();
        return v1Examples(req, name, version, action, requestId, span);
      }
      if (!get) throw notAllowed();
      if (action === '/metadata') return json(200, tfMetadata(registry.get(name, version).metadata()));
      if (version !== undefined) {
        const s = registry.status(name, version);
        if (!s) throw notFound(`unknown version "${version}" of model "${name}"`);
        return json(200, tfStatus([s]));
      }
      const all = registry.list().filter((s) => s.name === name);
      if (all.length === 0) throw notFound(`unknown model "${name}"`);
      return json(200, tfStatus(all));
    }
    if (path === '/metrics' && metrics) {
      return {
        status: 200,
        headers: { 'content-type': metrics.contentType },
        body: Buffer.from(await metrics.metrics()),
      };
    }
    throw notFound(`no route ${method} ${path.slice(0, 200)}`);
  }

  /** Handles one request; never throws (errors become responses). */
  async function handle(req: ProtocolRequest): Promise<ProtocolResponse> {
    let requestId = req.id;
    if (requestId === undefined) {
      const given = header(req, REQUEST_ID_HEADER);
      requestId = given && SAFE_HEADER.test(given) ? given : randomUUID();
    }
    // With the id bound to the logger already (req.id), log lines do not repeat it.
    const logId = req.id === undefined ? { requestId } : undefined;
    let finalId = requestId;
    const finalIdOf = () => finalId;
    const outer = req.setId;
    const inner: ProtocolRequest = {
      ...req,
      setId: (id) => {
        finalId = id;
        outer?.(id);
      },
    };
    // Without a tracer provider (the default) the span would be a no-op: skip building its name,
    // attributes and context (about 2 us per request).
    if (!tracingOn()) return respond(inner, req, requestId, finalIdOf, NOOP_SPAN, logId);
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    return tracer.startActiveSpan(
      `${req.method} ${req.path.replace(/\/(models|versions|labels)\/[^/:]+/g, '/$1/{}')}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': req.method,
          'url.path': req.path,
          'mlserve.request_id': requestId,
        },
      },
      parent,
      async (span) => {
        try {
          return await respond(inner, req, requestId, finalIdOf, span, logId);
        } finally {
          span.end();
        }
      },
    );
  }

  /** The body of {@link handle} inside its span: checks, the route, errors as responses. */
  async function respond(
    inner: ProtocolRequest,
    req: ProtocolRequest,
    requestId: string,
    finalIdOf: () => string,
    span: Span,
    logId: { requestId: string } | undefined,
  ): Promise<ProtocolResponse> {
    const corsHeaders = cors?.headers(req);
    try {
      if (!req.checked) originCheck?.(req);
      const preflight = cors?.preflight(req);
      if (preflight) {
        span.setAttribute('http.response.status_code', 204);
        return {
          status: 204,
          headers: { ...preflight, [REQUEST_ID_HEADER]: requestId },
          body: undefined,
        };
      }
      if (auth && !req.checked) {
        const scope = scopeOf(req.path);
        if (scope !== undefined) {
          const who = auth.check(req.headers, scope);
          span.setAttribute('mlserve.auth.key', who.name);
        }
      }
      const res = await route(inner, requestId, span);
      res.headers[REQUEST_ID_HEADER] ??= requestId;
      if (corsHeaders) Object.assign(res.headers, corsHeaders);
      span.setAttribute('http.response.status_code', res.status);
      return res;
    } catch (err) {
      const e = toServeError(err);
      span.setAttribute('http.response.status_code', e.status);
      if (e.status >= 500) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
        req.log?.error({ ...logId, code: e.code, err: e.cause ?? e }, e.message);
      } else {
        req.log?.info({ ...logId, code: e.code, status: e.status }, e.message);
      }
      const res = errorResponse(e, finalIdOf());
      if (corsHeaders) Object.assign(res.headers, corsHeaders);
      return res;
    }
  }

  /**
   * The checks that need no body (cross-origin, API key), for adapters to run before they read
   * one: a refusal to send at once (then close the connection if a body is still coming), or
   * `undefined` to go on, passing `checked: true` to {@link handle} so it does not check (or
   * count against a rate limit) again. Preflights are left to `handle`.
   */
  function precheck(
    req: Pick<ProtocolRequest, 'method' | 'path' | 'headers' | 'localAddress' | 'log' | 'id'>,
  ) {
    if (!originCheck && !auth) return undefined;
    try {
      originCheck?.(req);
      if (auth && !(cors && req.method === 'OPTIONS')) {
        const scope = scopeOf(req.path);
        if (scope !== undefined) auth.check(req.headers, scope);
      }
      return undefined;
    } catch (err) {
      const given = header(req as ProtocolRequest, REQUEST_ID_HEADER);
      const requestId = req.id ?? (given && SAFE_HEADER.test(given) ? given : randomUUID());
      const e = toServeError(err);
      req.log?.info(
        { ...(req.id === undefined && { requestId }), code: e.code, status: e.status },
        e.message,
      );
      const res = errorResponse(e, requestId);
      const corsHeaders = cors?.headers(req);
      if (corsHeaders) Object.assign(res.headers, corsHeaders);
      return res;
    }
  }

  /** Whether {@link precheck} checks anything (cross-origin protection or API keys are on). */
  const prechecks = originCheck !== undefined || auth !== undefined;

  return { handle, precheck, prechecks, bodyLimit, registry, service };
}

/**
 * The scope a route needs (`undefined`: open, the health routes; `null`: any valid key, for paths
 * no route serves, so an unauthenticated client learns nothing from 404s).
 */
function scopeOf(path: string): AuthScope | null | undefined {
  if (path === '/v2/health/live' || path === '/v2/health/ready') return undefined;
  if (path === '/v2' || path === '/v2/') return 'metadata';
  if (path === '/v2/models/stats') return 'metrics';
  if (path.startsWith('/v2/repository/')) return 'management';
  if (path === '/metrics') return 'metrics';
  const m = V2_MODEL.exec(path);
  if (m) {
    const action = m[3];
    if (action === '/ready') return undefined;
    if (action === undefined || action === '/config') return 'metadata';
    if (action === '/stats') return 'metrics';
    return 'infer';
  }
  const v1 = V1_MODEL.exec(path);
  if (v1) {
    const action = v1[4];
    return action === ':predict' || action === ':classify' || action === ':regress' ? 'infer' : 'metadata';
  }
  return null;
}

function notAllowed(): ServeError {
  return methodNotAllowed('method not allowed');
}

/** The object {@link createProtocol} returns. */
export type Protocol = ReturnType<typeof createProtocol>;
