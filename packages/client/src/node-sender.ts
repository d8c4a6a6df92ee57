import { promisify } from 'node:util';
import { gunzip, gzip, inflate } from 'node:zlib';
import { Pool } from 'undici';
import { type HttpAnswer, type HttpExchange, type HttpSender, NetworkError } from './http.js';

const gzipAsync = promisify(gzip);
const gunzipAsync = promisify(gunzip);
const inflateAsync = promisify(inflate);

/** Error codes that mean the connection never carried the request: safe to send it again. */
const NOT_SENT = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);

function asBytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * Node's sender: one undici `Pool` per client (keep-alive connections reused across calls, at most
 * `connections` of them), bodies read whole, gzip and deflate answers inflated.
 * @internal
 */
export function undiciSender(origin: string, connections: number): HttpSender {
  const pool = new Pool(origin, { connections, keepAliveTimeout: 30_000 });
  return {
    async send(x: HttpExchange): Promise<HttpAnswer> {
      let res: Awaited<ReturnType<Pool['request']>>;
      try {
        res = await pool.request({
          method: x.method,
          path: x.path,
          headers: x.headers,
          body: x.body ?? null,
          signal: x.signal,
        });
      } catch (err) {
        if (x.signal.aborted) throw err;
        const code = (err as { code?: string }).code ?? '';
        throw new NetworkError((err as Error).message || code, !NOT_SENT.has(code), { cause: err });
      }
      let body: Uint8Array;
      try {
        body = new Uint8Array(await res.body.arrayBuffer());
      } catch (err) {
        if (x.signal.aborted) throw err;
        throw new NetworkError(`the answer was cut off: ${(err as Error).message}`, true, { cause: err });
      }
      const h = res.headers;
      const header = (name: string): string | null => {
        const v = h[name];
        return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
      };
      const enc = header('content-encoding')?.trim().toLowerCase();
      if (enc === 'gzip') body = asBytes(await gunzipAsync(body));
      else if (enc === 'deflate') body = asBytes(await inflateAsync(body));
      return { status: res.statusCode, header, body };
    },
    async gzip(bytes) {
      return asBytes(await gzipAsync(bytes));
    },
    async close() {
      await pool.close();
    },
  };
}
