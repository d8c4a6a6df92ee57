import { permissionDenied, unsupportedMediaType } from '@mlserve/core';
import { normalizeOrigin } from './cors.js';

/**
 * Cross-origin protection settings (on by default in `@mlserve/http`): which other web origins
 * may send unsafe requests, and which `Host` names a server reached over loopback answers.
 */
export interface CrossOriginOptions {
  /**
   * Origins whose pages may POST here from a browser, exactly as browsers send them in `Origin`:
   * `scheme://host[:port]` (`https://app.example.com`, `http://localhost:5173`), no path; `'*'`
   * trusts every origin (what CORS `origins: '*'` means).
   */
  trustedOrigins?: readonly string[];
  /**
   * Extra `Host` names (no port; `'*'`: any) accepted on connections that arrive over loopback,
   * besides `localhost`, `127.x.x.x` and `[::1]`: the names a local reverse proxy forwards, say.
   */
  allowedHosts?: readonly string[];
}

/** What the check reads of a request, whatever the transport. */
export interface OriginRequest {
  method: string;
  /** Lower-case header names. */
  headers: Record<string, string | string[] | undefined>;
  /** The server's end of the connection (`socket.localAddress`): the Host check applies on loopback. */
  localAddress?: string | undefined;
}

/** The content types a browser may send cross-origin without a CORS preflight ("simple requests"). */
const SIMPLE_CONTENT_TYPES = new Set([
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data',
]);
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** `127.0.0.0/8`, `::1` and their IPv4-mapped form. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  const a = address.startsWith('::ffff:') ? address.slice(7) : address;
  return a === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(a);
}

/** The host name of a `Host` header value (lower case, port and IPv6 brackets kept as written). */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? h : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  return colon < 0 ? h : h.slice(0, colon);
}

/**
 * Compiles the cross-origin check the HTTP adapters run before routing a request (modelled on Go
 * 1.25's `http.CrossOriginProtection`), or `undefined` when `options` is `false`. The returned
 * function throws a ServeError, or returns when the request may go on:
 *
 * - **DNS rebinding**: on a connection that arrived over loopback, a `Host` other than
 *   `localhost`, `127.x.x.x`, `[::1]` (any port) or an `allowedHosts` name is PERMISSION_DENIED
 *   (403), whatever the method: a page whose DNS name was rebound to 127.0.0.1 is same-origin with
 *   itself and would read every answer.
 * - **Cross-origin writes**: an unsafe method (anything but GET, HEAD, OPTIONS) whose
 *   `Sec-Fetch-Site` is present and is neither `same-origin` nor `none` (another port on localhost is
 *   `same-site`: refused too), or, without `Sec-Fetch-Site`, whose `Origin` is present and does not
 *   name this `Host`, is PERMISSION_DENIED unless its `Origin` is trusted. Requests with neither
 *   header (curl, tritonclient, Node and server-to-server clients) pass.
 * - **Simple requests**: an unsafe method whose `Content-Type` is one a browser sends without a
 *   preflight (`text/plain`, `application/x-www-form-urlencoded`, `multipart/form-data`) is
 *   UNSUPPORTED_MEDIA_TYPE (415), trusted origin or not. A missing Content-Type passes (Triton's
 *   Python client sends none).
 *
 * @example
 * ```ts
 * import { crossOriginCheck } from '@mlserve/protocol/server';
 * const check = crossOriginCheck({ trustedOrigins: ['https://app.example.com'] });
 * check?.({ method: 'POST', headers: { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' } });
 * // throws PERMISSION_DENIED (403)
 * ```
 */
export function crossOriginCheck(
  options: CrossOriginOptions | false | undefined,
): ((req: OriginRequest) => void) | undefined {
  if (options === false) return undefined;
  const anyOrigin = options?.trustedOrigins?.includes('*') ?? false;
  const trusted = new Set(
    (options?.trustedOrigins ?? [])
      .filter((o) => o !== '*')
      .map((o) => normalizeOrigin(o, 'crossOrigin.trustedOrigins')),
  );
  const isTrusted = (origin: string | undefined) =>
    origin !== undefined && (anyOrigin || trusted.has(origin));
  const hosts = new Set((options?.allowedHosts ?? []).map((h) => hostName(h)));
  const anyHost = hosts.has('*');
  // The last Host/address pair and Content-Type that passed: nearly every request repeats them, so
  // they are compared as strings instead of parsed again (a request that differs is checked in full).
  let passedHost: string | undefined;
  let passedAddress: string | undefined;
  let passedType: string | undefined;
  return (req) => {
    const host = one(req.headers.host);
    if (
      !anyHost &&
      host !== undefined &&
      !(host === passedHost && req.localAddress === passedAddress) &&
      isLoopbackAddress(req.localAddress)
    ) {
      const name = hostName(host);
      if (
        name !== 'localhost' &&
        name !== '[::1]' &&
        !/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name) &&
        !hosts.has(name)
      ) {
        throw permissionDenied(
          `Host "${host.slice(0, 100)}" is not served on loopback (DNS rebinding protection); add it to the allowed hosts`,
        );
      }
      passedHost = host;
      passedAddress = req.localAddress;
    }
    if (SAFE_METHODS.has(req.method)) return;
    const origin = one(req.headers.origin);
    const site = one(req.headers['sec-fetch-site']);
    if (site !== undefined && site !== '') {
      if (site !== 'same-origin' && site !== 'none' && !isTrusted(origin)) throw refused(origin);
    } else if (origin !== undefined && !isTrusted(origin) && !sameHost(origin, host)) {
      throw refused(origin);
    }
    const type = one(req.headers['content-type']);
    if (type !== undefined && type !== passedType) {
      const essence = type.split(';', 1)[0]!.trim().toLowerCase();
      if (SIMPLE_CONTENT_TYPES.has(essence)) {
        throw unsupportedMediaType(
          `Content-Type ${essence} is not accepted here (browsers send it cross-origin without a preflight); send application/json, application/octet-stream or none`,
        );
      }
      passedType = type;
    }
  };
}

function sameHost(origin: string, host: string | undefined): boolean {
  if (host === undefined) return false;
  try {
    const o = new URL(origin);
    return o.host === new URL(`${o.protocol}//${host}`).host;
  } catch {
    return false;
  }
}

function refused(origin: string | undefined) {
  return permissionDenied(
    `cross-origin request${origin ? ` from ${origin.slice(0, 100)}` : ''} refused; trust the origin to allow it`,
  );
}
