/**
 * Access control against both adapters: API keys (missing, wrong, malformed, out of scope, over
 * their rate limit; how long a wrong key takes to refuse), CORS (preflights from allowed and other
 * origins, headers on answers and errors) and the cross-origin check (other sites' pages, rebound
 * Host names). Every refused request must leave the model untouched.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type Model, ModelRegistry, wrap } from '@mlserve/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADAPTERS,
  type Adapter,
  check,
  describeReply,
  digitRequest,
  errorCode,
  loadMnist,
  note,
  percentile,
  type Running,
  send,
  startServer,
} from './helpers.js';

const AREA = 'Access control';
const INFER = '/v2/models/mnist/infer';
const JSON_CT = { 'content-type': 'application/json' };
const APP = 'http://app.example:5173';

/** A random key and the line a keys file stores for it (its SHA-256 digest, never the key). */
function key(
  name: string,
  scopes: ('infer' | 'metadata' | 'metrics' | 'management')[],
  rateLimit?: { perSecond: number; burst?: number },
) {
  const k = `mls_${randomBytes(24).toString('base64url')}`;
  return {
    key: k,
    stored: {
      sha256: createHash('sha256').update(k).digest('hex'),
      name,
      scopes,
      ...(rateLimit && { rateLimit }),
    },
  };
}

const inferKey = key('client', ['infer', 'metadata']);
const readOnly = key('dashboard', ['metadata']);
const limited = key('batch-job', ['infer'], { perSecond: 2, burst: 5 });

describe.each(ADAPTERS)('access control (%s)', (adapter: Adapter) => {
  let server: Running;
  let calls = 0;
  const body = JSON.stringify(digitRequest(0));

  beforeAll(async () => {
    const mnist = await loadMnist();
    const counted: Model = wrap(mnist, {
      infer: (inputs, options) => {
        calls++;
        return mnist.infer(inputs, options);
      },
    });
    const registry = new ModelRegistry();
    registry.add(counted);
    server = await startServer(adapter, {
      registry,
      auth: { keys: [inferKey.stored, readOnly.stored, limited.stored] },
      cors: { origins: [APP] },
    });
  });
  afterAll(() => server?.close());

  const refusals: {
    name: string;
    sent: string;
    headers: Record<string, string>;
    status: number;
    code: string;
  }[] = [
    {
      name: 'no key',
      sent: 'V2 infer with no credential',
      headers: {},
      status: 401,
      code: 'UNAUTHENTICATED',
    },
    {
      name: 'a wrong key',
      sent: '`Authorization: Bearer mls_<32 random bytes>` (not in the keys file)',
      headers: { authorization: `Bearer mls_${randomBytes(32).toString('base64url')}` },
      status: 401,
      code: 'UNAUTHENTICATED',
    },
    {
      name: 'a valid key with one character changed',
      sent: 'the infer key with its last character changed',
      headers: {
        authorization: `Bearer ${inferKey.key.slice(0, -1)}${inferKey.key.endsWith('A') ? 'B' : 'A'}`,
      },
      status: 401,
      code: 'UNAUTHENTICATED',
    },
    {
      name: 'the key digest sent as the key',
      sent: "`Authorization: Bearer <the key's SHA-256 digest>` (what the keys file holds)",
      headers: { authorization: `Bearer ${inferKey.stored.sha256}` },
      status: 401,
      code: 'UNAUTHENTICATED',
    },
    {
      name: 'malformed Authorization',
      sent: '`Authorization: Basic dXNlcjpwYXNz`',
      headers: { authorization: 'Basic dXNlcjpwYXNz' },
      status: 401,
      code: 'UNAUTHENTICATED',
    },
    {
      name: 'an 8 KiB bearer token',
      sent: '`Authorization: Bearer` + 8 KiB',
      headers: { authorization: `Bearer ${'x'.repeat(8192)}` },
      status: 401,
      code: 'UNAUTHENTICATED',
    },
    {
      name: 'a key without the infer scope',
      sent: 'a key with only the metadata scope, on infer',
      headers: { 'x-api-key': readOnly.key },
      status: 403,
      code: 'PERMISSION_DENIED',
    },
    {
      name: 'another site’s page (Sec-Fetch-Site: cross-site)',
      sent: 'the valid infer key, `Sec-Fetch-Site: cross-site`, `Origin: https://evil.example`',
      headers: {
        authorization: `Bearer ${inferKey.key}`,
        'sec-fetch-site': 'cross-site',
        origin: 'https://evil.example',
      },
      status: 403,
      code: 'PERMISSION_DENIED',
    },
    {
      name: 'another port on localhost (same-site)',
      sent: 'the valid infer key, `Sec-Fetch-Site: same-site`, `Origin: http://127.0.0.1:1`',
      headers: {
        authorization: `Bearer ${inferKey.key}`,
        'sec-fetch-site': 'same-site',
        origin: 'http://127.0.0.1:1',
      },
      status: 403,
      code: 'PERMISSION_DENIED',
    },
    {
      name: 'DNS rebinding (Host: attacker.example on loopback)',
      sent: 'the valid infer key, `Host: attacker.example:8000`',
      headers: { authorization: `Bearer ${inferKey.key}`, host: 'attacker.example:8000' },
      status: 403,
      code: 'PERMISSION_DENIED',
    },
  ];

  for (const r of refusals) {
    it(`refuses ${r.name}`, async () => {
      await check({ area: AREA, name: r.name, adapter, sent: r.sent }, async (row) => {
        const before = calls;
        const reply = await send(server.url, INFER, { body, headers: { ...JSON_CT, ...r.headers } });
        row.got = `${describeReply(reply)}; model calls ${calls - before}`;
        expect(reply.status).toBe(r.status);
        expect(errorCode(reply)).toBe(r.code);
        expect(calls - before).toBe(0);
      });
    });
  }

  it('serves the valid key, by either header, and leaves health open', async () => {
    await check(
      {
        area: AREA,
        name: 'valid key (Bearer and x-api-key); health without a key',
        adapter,
        sent: 'V2 infer with `Authorization: Bearer <key>`, then `x-api-key: <key>`; GET /v2/health/ready and metadata with the metadata-only key',
      },
      async (row) => {
        const a = await send(server.url, INFER, {
          body,
          headers: { ...JSON_CT, authorization: `Bearer ${inferKey.key}` },
        });
        const b = await send(server.url, INFER, { body, headers: { ...JSON_CT, 'x-api-key': inferKey.key } });
        const health = await send(server.url, '/v2/health/ready');
        const meta = await send(server.url, '/v2/models/mnist', { headers: { 'x-api-key': readOnly.key } });
        const metaNoKey = await send(server.url, '/v2/models/mnist');
        row.got = `${a.status}, ${b.status}; health ${health.status}; metadata ${meta.status} with the metadata key, ${describeReply(metaNoKey)} without`;
        expect([a.status, b.status, health.status, meta.status]).toEqual([200, 200, 200, 200]);
        expect(metaNoKey.status).toBe(401);
      },
    );
  });

  it('rate-limits a key with 429 and Retry-After, and only that key', async () => {
    await check(
      {
        area: AREA,
        name: 'per-key rate limit',
        adapter,
        sent: '20 requests at once with a key limited to 2/s (burst 5), then one with another key',
      },
      async (row) => {
        const before = calls;
        const t0 = performance.now();
        const replies = await Promise.all(
          Array.from({ length: 20 }, () =>
            send(server.url, INFER, { body, headers: { ...JSON_CT, 'x-api-key': limited.key } }),
          ),
        );
        const seconds = (performance.now() - t0) / 1000;
        const ok = replies.filter((r) => r.status === 200).length;
        const limitedReplies = replies.filter((r) => r.status === 429);
        const other = await send(server.url, INFER, {
          body,
          headers: { ...JSON_CT, 'x-api-key': inferKey.key },
        });
        const retry = limitedReplies[0]?.headers['retry-after'];
        row.got = `${ok} answered 200 (in ${seconds.toFixed(2)} s), ${limitedReplies.length} ${limitedReplies[0] ? describeReply(limitedReplies[0]) : ''} (Retry-After: ${retry}); model calls ${calls - before}; the other key ${other.status}`;
        expect(ok).toBeGreaterThanOrEqual(5);
        // The burst, plus what refilled (2/s) while the 20 arrived.
        expect(ok).toBeLessThanOrEqual(5 + Math.ceil(seconds * 2) + 1);
        expect(ok + limitedReplies.length).toBe(20);
        expect(errorCode(limitedReplies[0]!)).toBe('RESOURCE_EXHAUSTED');
        expect(Number(retry)).toBeGreaterThanOrEqual(1);
        expect(calls - before).toBe(ok + 1);
        expect(other.status).toBe(200);
      },
    );
  });

  it('answers CORS preflights for the allowed origin only, and labels answers and errors', async () => {
    await check(
      {
        area: AREA,
        name: 'CORS',
        adapter,
        sent: `OPTIONS preflights from ${APP} and https://evil.example; a POST and an unauthenticated POST from ${APP}`,
      },
      async (row) => {
        const preflight = (origin: string) =>
          send(server.url, INFER, {
            method: 'OPTIONS',
            headers: {
              origin,
              'access-control-request-method': 'POST',
              'access-control-request-headers': 'content-type, authorization',
            },
          });
        const allowed = await preflight(APP);
        const other = await preflight('https://evil.example');
        const post = await send(server.url, INFER, {
          body,
          headers: {
            ...JSON_CT,
            origin: APP,
            'sec-fetch-site': 'cross-site',
            authorization: `Bearer ${inferKey.key}`,
          },
        });
        const before = calls;
        const noKey = await send(server.url, INFER, {
          body,
          headers: { ...JSON_CT, origin: APP, 'sec-fetch-site': 'cross-site' },
        });
        row.got =
          `preflight ${allowed.status} (allow-origin ${allowed.headers['access-control-allow-origin']}, methods ${allowed.headers['access-control-allow-methods']}, max-age ${allowed.headers['access-control-max-age']}); ` +
          `other origin ${describeReply(other)}; POST ${post.status} (allow-origin ${post.headers['access-control-allow-origin']}); ` +
          `without a key ${noKey.status} (allow-origin ${noKey.headers['access-control-allow-origin']}, model calls ${calls - before})`;
        expect(allowed.status).toBe(204);
        expect(allowed.headers['access-control-allow-origin']).toBe(APP);
        expect(other.status).toBe(403);
        expect(other.headers['access-control-allow-origin']).toBeUndefined();
        expect(post.status).toBe(200);
        expect(post.headers['access-control-allow-origin']).toBe(APP);
        expect(noKey.status).toBe(401);
        expect(noKey.headers['access-control-allow-origin']).toBe(APP);
        expect(calls - before).toBe(0);
      },
    );
  });

  it('takes as long to refuse a near-miss key as a random one', async () => {
    await check(
      {
        area: AREA,
        name: 'key timing',
        adapter,
        sent: '300 pairs of requests in turn: the valid key with its last character changed, and a random key of the same length',
      },
      async (row) => {
        const near = `${inferKey.key.slice(0, -1)}${inferKey.key.endsWith('A') ? 'B' : 'A'}`;
        const far = `mls_${randomBytes(24).toString('base64url')}`;
        const times = { near: [] as number[], far: [] as number[] };
        for (let i = 0; i < 300; i++) {
          for (const [kind, k] of [
            ['near', near],
            ['far', far],
          ] as const) {
            const t0 = performance.now();
            const r = await send(server.url, '/v2/models/mnist', { headers: { 'x-api-key': k } });
            times[kind].push(performance.now() - t0);
            expect(r.status).toBe(401);
          }
        }
        const m = (xs: number[]) => percentile(xs, 50);
        row.got = `all 600 refused 401; median ${m(times.near).toFixed(3)} ms (near miss) vs ${m(times.far).toFixed(3)} ms (random); the server hashes each key (SHA-256) and compares digests with timingSafeEqual against every stored key, so a shared prefix with a valid key shows in no comparison`;
        note(
          AREA,
          `Key timing (${adapter})`,
          `Medians over 300 requests each, interleaved, one connection per request: near miss ${m(times.near).toFixed(3)} ms, random key ${m(times.far).toFixed(3)} ms (p90 ${percentile(times.near, 90).toFixed(3)} / ${percentile(times.far, 90).toFixed(3)} ms). Reported, not asserted: over HTTP on a shared machine the noise is far larger than any comparison could be.`,
        );
      },
    );
  });
});
