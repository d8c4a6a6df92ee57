import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { permissionDenied, resourceExhausted, unauthenticated } from '@mlserve/core';

/** What a key may do. Health endpoints (live, ready, model ready) need none: they stay open. */
export type AuthScope = 'infer' | 'metadata' | 'metrics' | 'management';
/** Every scope, in the order the docs list them. */
export const AUTH_SCOPES: readonly AuthScope[] = Object.freeze([
  'infer',
  'metadata',
  'metrics',
  'management',
]);

/** A per-key rate limit: a token bucket refilled at `perSecond`, holding at most `burst` (default `perSecond`). */
export interface RateLimit {
  perSecond: number;
  burst?: number;
}

/** One key as stored: never the key itself, only its SHA-256 digest. A keys file holds one per line. */
export interface StoredKey {
  /** Hex SHA-256 digest of the key's UTF-8 bytes (64 hex digits). */
  sha256: string;
  /** Who holds the key (logs, errors and rate-limit buckets use it; unique). */
  name: string;
  /** What it may do. */
  scopes: readonly AuthScope[];
  /** Requests per second this key may make (both transports together); none: unlimited. */
  rateLimit?: RateLimit;
}

/** The `auth` option of `@mlserve/http` and `@mlserve/grpc`. */
export interface AuthOptions {
  /** The keys: {@link StoredKey}s, e.g. from {@link readKeysFile}. */
  keys: readonly StoredKey[];
  /** Header (gRPC: metadata key) that carries an API key, besides `Authorization: Bearer` (default `x-api-key`). */
  apiKeyHeader?: string;
}

/** Who a request is, once authenticated. */
export interface Principal {
  name: string;
  scopes: ReadonlySet<AuthScope>;
}

/** The credential-carrying headers of a request (lower-case names), whatever the transport. */
export type AuthHeaders = Record<string, string | string[] | undefined>;

const HEX64 = /^[0-9a-f]{64}$/;

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/**
 * The SHA-256 digest (hex) a keys file stores for `key`.
 *
 * @example
 * ```ts
 * import { keyDigest } from '@mlserve/protocol/server';
 * keyDigest('mls_example'); // '…64 hex digits…'
 * ```
 */
export function keyDigest(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/**
 * Makes a new random key (`mls_` + 32 random bytes, base64url) and the line to add to a keys file.
 * The key is shown once; only its digest is stored.
 *
 * @example
 * ```ts
 * import { createKey } from '@mlserve/protocol/server';
 * const { key, stored } = createKey({ name: 'ci', scopes: ['infer'], rateLimit: { perSecond: 50 } });
 * console.log(key, JSON.stringify(stored));
 * ```
 */
export function createKey(options: Omit<StoredKey, 'sha256'>): { key: string; stored: StoredKey } {
  const key = `mls_${randomBytes(32).toString('base64url')}`;
  const stored = checkKey({ sha256: keyDigest(key), ...options }, 'key');
  return { key, stored };
}

function checkKey(raw: unknown, where: string): StoredKey {
  if (typeof raw !== 'object' || raw === null) throw new TypeError(`${where}: not an object`);
  const k = raw as Record<string, unknown>;
  if (typeof k.sha256 !== 'string' || !HEX64.test(k.sha256.toLowerCase()))
    throw new TypeError(`${where}: sha256 must be 64 hex digits (the key's SHA-256 digest)`);
  if (typeof k.name !== 'string' || k.name.length === 0 || k.name.length > 128)
    throw new TypeError(`${where}: name must be a non-empty string`);
  if (!Array.isArray(k.scopes) || k.scopes.some((s) => !AUTH_SCOPES.includes(s as AuthScope)))
    throw new TypeError(`${where}: scopes must be a list of ${AUTH_SCOPES.join(', ')}`);
  const key: StoredKey = {
    sha256: k.sha256.toLowerCase(),
    name: k.name,
    scopes: [...new Set(k.scopes as AuthScope[])],
  };
  if (k.rateLimit !== undefined) {
    const r = k.rateLimit as Partial<RateLimit> | null;
    const okNumber = (v: unknown) => typeof v === 'number' && Number.isFinite(v) && v > 0;
    if (
      typeof r !== 'object' ||
      r === null ||
      !okNumber(r.perSecond) ||
      (r.burst !== undefined && !okNumber(r.burst))
    )
      throw new TypeError(`${where}: rateLimit must be { perSecond: number > 0, burst?: number > 0 }`);
    key.rateLimit = { perSecond: r.perSecond!, ...(r.burst !== undefined && { burst: r.burst }) };
  }
  return key;
}

/**
 * Parses a keys file: JSON lines, one {@link StoredKey} each (`{"sha256": "...", "name": "ci",
 * "scopes": ["infer"], "rateLimit": {"perSecond": 50}}`); blank lines and lines starting with `#`
 * are skipped. Throws a TypeError naming the line for anything malformed or a repeated name/digest.
 *
 * @example
 * ```ts
 * import { parseKeys } from '@mlserve/protocol/server';
 * const keys = parseKeys('{"sha256":"' + 'ab'.repeat(32) + '","name":"ci","scopes":["infer"]}\n');
 * ```
 */
export function parseKeys(text: string, source = 'keys'): StoredKey[] {
  const keys: StoredKey[] = [];
  const names = new Set<string>();
  const digests = new Set<string>();
  text.split(/\r?\n/).forEach((line, i) => {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) return;
    const where = `${source} line ${i + 1}`;
    let raw: unknown;
    try {
      raw = JSON.parse(t);
    } catch {
      throw new TypeError(`${where}: not JSON`);
    }
    const key = checkKey(raw, where);
    if (names.has(key.name)) throw new TypeError(`${where}: name "${key.name}" is used twice`);
    if (digests.has(key.sha256)) throw new TypeError(`${where}: the same key digest is listed twice`);
    names.add(key.name);
    digests.add(key.sha256);
    keys.push(key);
  });
  return keys;
}

/**
 * Reads and parses a keys file ({@link parseKeys}).
 *
 * @example
 * ```ts compile-only
 * import { readKeysFile } from '@mlserve/protocol/server';
 * const auth = { keys: readKeysFile('/etc/mlserve/keys.jsonl') };
 * ```
 */
export function readKeysFile(path: string): StoredKey[] {
  return parseKeys(readFileSync(path, 'utf8'), path);
}

/** A token bucket per key name. */
class Buckets {
  readonly #state = new Map<string, { tokens: number; at: number }>();
  take(name: string, limit: RateLimit, now: number): number {
    const burst = limit.burst ?? limit.perSecond;
    let s = this.#state.get(name);
    if (!s) {
      s = { tokens: burst, at: now };
      this.#state.set(name, s);
    }
    s.tokens = Math.min(burst, s.tokens + ((now - s.at) / 1000) * limit.perSecond);
    s.at = now;
    if (s.tokens >= 1) {
      s.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - s.tokens) / limit.perSecond) * 1000);
  }
}

/**
 * The transport-neutral authentication both `@mlserve/http` and `@mlserve/grpc` run. Pass one
 * instance to both (as `auth`) so a key's rate limit counts requests over either.
 */
export interface Authenticator {
  /**
   * Checks a request's credential for `scope`: a key in `Authorization: Bearer <key>` or in the
   * API key header. Throws UNAUTHENTICATED (no key, or an unknown one), PERMISSION_DENIED (the key
   * lacks the scope; `null`: any valid key) or RESOURCE_EXHAUSTED with a retry hint (its rate limit); returns who it is.
   */
  check(headers: AuthHeaders, scope: AuthScope | null): Principal;
  /** The API key header's name (lower case). */
  readonly apiKeyHeader: string;
}

/** Whether `value` is an {@link Authenticator} already (not options). */
export function isAuthenticator(value: unknown): value is Authenticator {
  return typeof value === 'object' && value !== null && typeof (value as Authenticator).check === 'function';
}

/**
 * Compiles {@link AuthOptions} into an {@link Authenticator}. The presented key is hashed with
 * SHA-256 and compared with every stored digest by `timingSafeEqual`, without stopping at a match,
 * so the time taken does not depend on which stored key (if any) is close. Rate limits are token
 * buckets kept in this process (per key name).
 *
 * @example
 * ```ts
 * import { createAuthenticator, createKey } from '@mlserve/protocol/server';
 * const { key, stored } = createKey({ name: 'ci', scopes: ['infer'] });
 * const auth = createAuthenticator({ keys: [stored] });
 * auth.check({ authorization: `Bearer ${key}` }, 'infer'); // { name: 'ci', ... }
 * ```
 */
export function createAuthenticator(options: AuthOptions | Authenticator): Authenticator {
  if (isAuthenticator(options)) return options;
  const keys = options.keys.map((k, i) => checkKey(k, `auth.keys[${i}]`));
  const apiKeyHeader = (options.apiKeyHeader ?? 'x-api-key').toLowerCase();
  if (!/^[a-z0-9-]+$/.test(apiKeyHeader) || apiKeyHeader === 'authorization')
    throw new TypeError('auth.apiKeyHeader must be a header name other than authorization');
  const digests = keys.map((k) => Buffer.from(k.sha256, 'hex'));
  const principals = keys.map((k) => ({ name: k.name, scopes: new Set(k.scopes) }));
  const buckets = new Buckets();

  function presented(headers: AuthHeaders): string | undefined {
    const auth = one(headers.authorization);
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      if (m) return m[1];
    }
    return one(headers[apiKeyHeader])?.trim() || undefined;
  }

  return {
    apiKeyHeader,
    check(headers, scope) {
      const key = presented(headers);
      if (key === undefined)
        throw unauthenticated(
          `an API key is needed: send "Authorization: Bearer <key>" or "${apiKeyHeader}: <key>"`,
        );
      const digest = createHash('sha256').update(key, 'utf8').digest();
      let found = -1;
      for (let i = 0; i < digests.length; i++) {
        // No early exit: every stored digest is compared.
        if (timingSafeEqual(digest, digests[i]!) && found < 0) found = i;
      }
      if (found < 0) throw unauthenticated('the API key is not valid');
      const who = principals[found]!;
      if (scope !== null && !who.scopes.has(scope))
        throw permissionDenied(`key "${who.name}" does not have the "${scope}" scope`);
      const limit = keys[found]!.rateLimit;
      if (limit) {
        const waitMs = buckets.take(who.name, limit, performance.now());
        if (waitMs > 0)
          throw resourceExhausted(`key "${who.name}" is over its rate limit of ${limit.perSecond}/s`, {
            retryAfterMs: waitMs,
          });
      }
      return who;
    },
  };
}
