import { describe, expect, it } from 'vitest';
import { corsPolicy } from '../src/cors.js';
import { createAuthenticator, createKey, keyDigest, parseKeys } from '../src/keys.js';
import { crossOriginCheck } from '../src/origin.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).name;
  }
}

describe('API keys', () => {
  const infer = createKey({ name: 'infer-only', scopes: ['infer'] });
  const admin = createKey({ name: 'admin', scopes: ['infer', 'metadata', 'metrics', 'management'] });
  const auth = createAuthenticator({ keys: [infer.stored, admin.stored] });

  it('stores only the SHA-256 digest of a fresh random key', () => {
    expect(infer.key).toMatch(/^mls_[A-Za-z0-9_-]{43}$/);
    expect(infer.stored.sha256).toBe(keyDigest(infer.key));
    expect(JSON.stringify(infer.stored)).not.toContain(infer.key.slice(4));
    expect(createKey({ name: 'x', scopes: [] }).key).not.toBe(infer.key);
  });

  it('accepts a key as a bearer token or in x-api-key, and checks scopes', () => {
    expect(auth.check({ authorization: `Bearer ${infer.key}` }, 'infer').name).toBe('infer-only');
    expect(auth.check({ 'x-api-key': admin.key }, 'management').name).toBe('admin');
    expect(code(() => auth.check({ authorization: `Bearer ${infer.key}` }, 'metadata'))).toBe(
      'PERMISSION_DENIED',
    );
    expect(auth.check({ 'x-api-key': infer.key }, null).name).toBe('infer-only');
  });

  it('refuses a missing, wrong or truncated key with UNAUTHENTICATED', () => {
    expect(code(() => auth.check({}, 'infer'))).toBe('UNAUTHENTICATED');
    expect(code(() => auth.check({ authorization: `Bearer ${infer.key.slice(0, -1)}` }, 'infer'))).toBe(
      'UNAUTHENTICATED',
    );
    expect(code(() => auth.check({ authorization: `Basic ${infer.key}` }, 'infer'))).toBe('UNAUTHENTICATED');
    expect(code(() => auth.check({ 'x-api-key': infer.stored.sha256 }, 'infer'))).toBe('UNAUTHENTICATED');
  });

  it('rate limits per key with a token bucket and a retry hint', () => {
    const limited = createKey({ name: 'slow', scopes: ['infer'], rateLimit: { perSecond: 0.5, burst: 2 } });
    const a = createAuthenticator({ keys: [limited.stored, infer.stored] });
    const h = { 'x-api-key': limited.key };
    a.check(h, 'infer');
    a.check(h, 'infer');
    let err: { code?: string; retryAfterMs?: number; status?: number } = {};
    try {
      a.check(h, 'infer');
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.status).toBe(429);
    expect(err.retryAfterMs).toBeGreaterThan(0);
    expect(err.retryAfterMs).toBeLessThanOrEqual(2000);
    // Another key is not affected.
    for (let i = 0; i < 5; i++) a.check({ 'x-api-key': infer.key }, 'infer');
  });

  it('parses a keys file of JSON lines and names the bad line', () => {
    const line = JSON.stringify(admin.stored);
    const keys = parseKeys(`# keys\n\n${line}\n${JSON.stringify(infer.stored)}\n`, 'keys.jsonl');
    expect(keys.map((k) => k.name)).toEqual(['admin', 'infer-only']);
    expect(() => parseKeys(`${line}\n${line}\n`, 'k')).toThrow(/k line 2: name "admin" is used twice/);
    expect(() => parseKeys('{"sha256":"abc","name":"x","scopes":[]}', 'k')).toThrow(/line 1: sha256/);
    expect(() => parseKeys(`{"sha256":"${'a'.repeat(64)}","name":"x","scopes":["root"]}`, 'k')).toThrow(
      /scopes/,
    );
    expect(() =>
      parseKeys(`{"sha256":"${'a'.repeat(64)}","name":"x","scopes":[],"rateLimit":{"perSecond":0}}`, 'k'),
    ).toThrow(/rateLimit/);
    expect(() => parseKeys('not json', 'k')).toThrow(/line 1: not JSON/);
  });
});

describe('CORS policy', () => {
  const cors = corsPolicy({ origins: ['http://127.0.0.1:9000'], maxAgeSeconds: 60 });
  const pre = (origin: string, method = 'POST', headers = 'content-type') =>
    cors.preflight({
      method: 'OPTIONS',
      headers: { origin, 'access-control-request-method': method, 'access-control-request-headers': headers },
    });

  it('answers a preflight from an allowed origin', () => {
    expect(pre('http://127.0.0.1:9000')).toMatchObject({
      'access-control-allow-origin': 'http://127.0.0.1:9000',
      'access-control-allow-methods': 'GET, HEAD, POST',
      'access-control-max-age': '60',
      vary: 'Origin',
    });
    expect(pre('http://127.0.0.1:9000')?.['access-control-allow-headers']).toContain('x-api-key');
  });

  it('refuses other origins, methods and headers with PERMISSION_DENIED', () => {
    expect(code(() => pre('http://127.0.0.1:9001'))).toBe('PERMISSION_DENIED');
    expect(code(() => pre('http://127.0.0.1:9000', 'DELETE'))).toBe('PERMISSION_DENIED');
    expect(code(() => pre('http://127.0.0.1:9000', 'POST', 'content-type, x-evil'))).toBe(
      'PERMISSION_DENIED',
    );
    expect(cors.preflight({ method: 'OPTIONS', headers: {} })).toBeUndefined();
  });

  it('adds Allow-Origin to answers for allowed origins only', () => {
    expect(cors.headers({ method: 'POST', headers: { origin: 'http://127.0.0.1:9000' } })).toMatchObject({
      'access-control-allow-origin': 'http://127.0.0.1:9000',
    });
    expect(cors.headers({ method: 'POST', headers: { origin: 'http://127.0.0.1:9001' } })).toEqual({});
    expect(
      corsPolicy({ origins: '*' }).headers({ method: 'GET', headers: { origin: 'https://x.example' } }),
    ).toMatchObject({
      'access-control-allow-origin': '*',
    });
  });

  it('validates its options', () => {
    expect(() => corsPolicy({ origins: ['http://x.example/path'] })).toThrow(TypeError);
    expect(() => corsPolicy({ origins: '*', credentials: true })).toThrow(TypeError);
  });

  it("'*' in trustedOrigins trusts every origin in the cross-origin check", () => {
    const check = crossOriginCheck({ trustedOrigins: ['*'] })!;
    expect(
      code(() =>
        check({ method: 'POST', headers: { 'sec-fetch-site': 'cross-site', origin: 'https://a.example' } }),
      ),
    ).toBeUndefined();
  });
});
