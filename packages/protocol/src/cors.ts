import { permissionDenied } from '@mlserve/core';

/**
 * CORS for browser clients on other origins (`@mlserve/http`'s `cors` option). The allowed origins
 * are also trusted by the cross-origin check.
 */
export interface CorsOptions {
  /** Origins whose pages may call this server and read the answers: `scheme://host[:port]`, or `'*'` for any. */
  origins: readonly string[] | '*';
  /** Methods allowed cross-origin (default GET, HEAD, POST). */
  methods?: readonly string[];
  /**
   * Request headers pages may send (default: content-type, authorization, x-api-key,
   * content-encoding, inference-header-content-length, x-request-id, x-request-timeout-ms,
   * traceparent, tracestate).
   */
  headers?: readonly string[];
  /** Response headers pages may read besides the safelisted ones (default: inference-header-content-length, x-request-id, retry-after, content-encoding). */
  exposedHeaders?: readonly string[];
  /** How long a browser may cache a preflight answer, seconds (default 600). */
  maxAgeSeconds?: number;
  /** Allow credentials (cookies, HTTP auth) — `Access-Control-Allow-Credentials: true`; not with `'*'`. Default false. */
  credentials?: boolean;
}

/** What a CORS policy reads of a request. */
export interface CorsRequest {
  method: string;
  /** Lower-case header names. */
  headers: Record<string, string | string[] | undefined>;
}

/** A compiled {@link CorsOptions}. */
export interface CorsPolicy {
  /** The allowed origins (normalized), or `'*'`: for the cross-origin check's trusted origins. */
  readonly origins: readonly string[] | '*';
  /**
   * For a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`): the headers of a
   * 204 answer; throws PERMISSION_DENIED (403) when the origin, method or a header is not allowed.
   * `undefined` when the request is not a preflight.
   */
  preflight(req: CorsRequest): Record<string, string> | undefined;
  /** The CORS headers to add to an actual answer (empty when the request's origin is not allowed). */
  headers(req: CorsRequest): Record<string, string>;
}

const DEFAULT_METHODS = ['GET', 'HEAD', 'POST'];
const DEFAULT_HEADERS = [
  'content-type',
  'authorization',
  'x-api-key',
  'content-encoding',
  'inference-header-content-length',
  'x-request-id',
  'x-request-timeout-ms',
  'traceparent',
  'tracestate',
];
const DEFAULT_EXPOSED = [
  'inference-header-content-length',
  'x-request-id',
  'retry-after',
  'content-encoding',
];

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * `scheme://host[:port]` as browsers send it in `Origin`; TypeError for anything else.
 *
 * @example
 * ```ts
 * import { normalizeOrigin } from '@mlserve/protocol/server';
 * normalizeOrigin('http://LOCALHOST:5173/'); // 'http://localhost:5173'
 * ```
 */
export function normalizeOrigin(origin: string, what = 'origin'): string {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    throw new TypeError(`${what}: "${origin}" is not a URL (scheme://host[:port])`);
  }
  if (
    (url.protocol !== 'http:' && url.protocol !== 'https:') ||
    (url.pathname !== '/' && url.pathname !== '') ||
    url.search ||
    url.hash ||
    url.username
  ) {
    throw new TypeError(`${what}: "${origin}" must be an origin, scheme://host[:port] with no path`);
  }
  return url.origin;
}

/**
 * Compiles CORS options. Preflights are answered 204 with `Access-Control-Allow-Origin` (the
 * request's origin, never `*` with credentials), `-Methods`, `-Headers`, `-Max-Age` and
 * `Vary: Origin`; a preflight from an origin, method or header not allowed is 403
 * PERMISSION_DENIED (the browser then sends nothing). Answers to allowed origins carry
 * `Access-Control-Allow-Origin` and `-Expose-Headers`, errors included, so a page can read a 401
 * or a 429.
 *
 * @example
 * ```ts
 * import { corsPolicy } from '@mlserve/protocol/server';
 * const cors = corsPolicy({ origins: ['http://localhost:5173'] });
 * cors.preflight({ method: 'OPTIONS', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' } });
 * // { 'access-control-allow-origin': 'http://localhost:5173', ... }
 * ```
 */
export function corsPolicy(options: CorsOptions): CorsPolicy {
  const any = options.origins === '*';
  const origins = any
    ? '*'
    : (options.origins as readonly string[]).map((o) => normalizeOrigin(o, 'cors.origins'));
  const allowed = new Set(any ? [] : (origins as string[]));
  if (any && options.credentials) throw new TypeError("cors: credentials cannot be allowed for origins '*'");
  const methods = (options.methods ?? DEFAULT_METHODS).map((m) => m.toUpperCase());
  const methodSet = new Set(methods);
  const headers = (options.headers ?? DEFAULT_HEADERS).map((h) => h.toLowerCase());
  const headerSet = new Set(headers);
  const exposed = (options.exposedHeaders ?? DEFAULT_EXPOSED).join(', ');
  const maxAge = options.maxAgeSeconds ?? 600;
  if (!Number.isInteger(maxAge) || maxAge < 0)
    throw new TypeError('cors.maxAgeSeconds must be an integer >= 0');

  const originOf = (req: CorsRequest): string | undefined => {
    const origin = one(req.headers.origin);
    if (origin === undefined) return undefined;
    return any || allowed.has(origin) ? origin : undefined;
  };
  const base = (origin: string): Record<string, string> => ({
    'access-control-allow-origin': any && !options.credentials ? '*' : origin,
    vary: 'Origin',
    ...(options.credentials && { 'access-control-allow-credentials': 'true' }),
  });

  return {
    origins,
    preflight(req) {
      const wanted = one(req.headers['access-control-request-method']);
      const origin = one(req.headers.origin);
      if (req.method !== 'OPTIONS' || wanted === undefined || origin === undefined) return undefined;
      if (!originOf(req)) throw permissionDenied(`CORS: origin ${origin.slice(0, 100)} is not allowed`);
      if (!methodSet.has(wanted.toUpperCase()))
        throw permissionDenied(`CORS: method ${wanted.slice(0, 20)} is not allowed`);
      const asked = (one(req.headers['access-control-request-headers']) ?? '')
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter((h) => h !== '');
      const refused = asked.find((h) => !headerSet.has(h));
      if (refused !== undefined)
        throw permissionDenied(`CORS: header ${refused.slice(0, 64)} is not allowed`);
      return {
        ...base(origin),
        'access-control-allow-methods': methods.join(', '),
        'access-control-allow-headers': headers.join(', '),
        'access-control-max-age': String(maxAge),
      };
    },
    headers(req) {
      const origin = originOf(req);
      if (!origin) return {};
      return { ...base(origin), 'access-control-expose-headers': exposed };
    },
  };
}
