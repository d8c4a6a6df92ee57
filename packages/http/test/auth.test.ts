import { connect } from 'node:net';
import { createAuthenticator, createKey } from '@mlserve/protocol/server';
import { echoRegistry, launchChromium, pageServer, requireService } from '@mlserve/test-utils';
import type { Browser } from 'playwright-core';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVERS } from './helpers.js';

const haveChromium = requireService('chromium', 'apt-get install -y chromium');
const BODY = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: [3] }] });
const JSON_TYPE = { 'content-type': 'application/json' };

const inferKey = createKey({ name: 'app', scopes: ['infer'] });
const readerKey = createKey({ name: 'dashboard', scopes: ['metadata', 'metrics'] });
const adminKey = createKey({ name: 'ops', scopes: ['infer', 'metadata', 'metrics', 'management'] });
const slowKey = createKey({ name: 'trial', scopes: ['infer'], rateLimit: { perSecond: 0.2, burst: 2 } });
const KEYS = [inferKey.stored, readerKey.stored, adminKey.stored, slowKey.stored];

describe.each(SERVERS)('auth over real HTTP (%s)', (_name, start) => {
  let url: string;
  let close: () => Promise<void>;
  let calls: { n: number };
  beforeAll(async () => {
    const echo = echoRegistry();
    calls = echo.calls;
    const metrics = new Registry();
    const server = await start({ registry: echo.registry, auth: { keys: KEYS }, management: true, metrics });
    url = server.url;
    close = server.close;
  });
  afterAll(() => close?.());

  const infer = (headers: Record<string, string>) =>
    fetch(`${url}/v2/models/echo/infer`, {
      method: 'POST',
      headers: { ...JSON_TYPE, ...headers },
      body: BODY,
    });

  it('keeps health open and asks every other route for a key (401 UNAUTHENTICATED)', async () => {
    for (const path of ['/v2/health/live', '/v2/health/ready', '/v2/models/echo/ready']) {
      expect((await fetch(`${url}${path}`)).status).toBe(200);
    }
    for (const path of [
      '/v2',
      '/v2/models/echo',
      '/v2/models/echo/config',
      '/v2/models/stats',
      '/metrics',
      '/v1/models/echo',
      '/v2/nothing',
    ]) {
      const res = await fetch(`${url}${path}`);
      expect(res.status, path).toBe(401);
      expect((await res.json()).code).toBe('UNAUTHENTICATED');
    }
    const before = calls.n;
    const res = await infer({});
    expect(res.status).toBe(401);
    expect((await infer({ authorization: `Bearer ${inferKey.key}x` })).status).toBe(401);
    expect((await infer({ 'x-api-key': readerKey.stored.sha256 })).status).toBe(401);
    const repo = await fetch(`${url}/v2/repository/index`, { method: 'POST' });
    expect(repo.status).toBe(401);
    expect(calls.n).toBe(before);
  });

  it('serves a key within its scopes (Bearer or x-api-key) and refuses others with 403 PERMISSION_DENIED', async () => {
    const ok = await infer({ authorization: `Bearer ${inferKey.key}` });
    expect(ok.status).toBe(200);
    expect((await ok.json()).outputs[0].data).toEqual([3]);
    expect((await infer({ 'x-api-key': inferKey.key })).status).toBe(200);
    const predict = await fetch(`${url}/v1/models/echo:predict`, {
      method: 'POST',
      headers: { ...JSON_TYPE, 'x-api-key': inferKey.key },
      body: JSON.stringify({ instances: [[1]] }),
    });
    expect(predict.status).toBe(200);

    const denied = await fetch(`${url}/v2/models/echo`, { headers: { 'x-api-key': inferKey.key } });
    expect(denied.status).toBe(403);
    expect((await denied.json()).code).toBe('PERMISSION_DENIED');
    expect((await infer({ 'x-api-key': readerKey.key })).status).toBe(403);
    const repoDenied = await fetch(`${url}/v2/repository/index`, {
      method: 'POST',
      headers: { 'x-api-key': readerKey.key },
    });
    expect(repoDenied.status).toBe(403);

    expect((await fetch(`${url}/v2/models/echo`, { headers: { 'x-api-key': readerKey.key } })).status).toBe(
      200,
    );
    const metrics = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${readerKey.key}` } });
    expect(metrics.status).toBe(200);
    expect((await fetch(`${url}/v2/models/stats`, { headers: { 'x-api-key': readerKey.key } })).status).toBe(
      200,
    );
    const repo = await fetch(`${url}/v2/repository/index`, {
      method: 'POST',
      headers: { 'x-api-key': adminKey.key },
    });
    expect(repo.status).toBe(200);
    expect(await repo.json()).toEqual([expect.objectContaining({ name: 'echo', state: 'READY' })]);
  });

  it('refuses a request without a key before reading its body, and closes the connection', async () => {
    const { port } = new URL(url);
    const before = calls.n;
    // Headers announce a 32 MiB body that never comes: the answer must not wait for it.
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.write(
          'POST /v2/models/echo/infer HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n' +
            `content-length: ${32 * 1024 * 1024}\r\n\r\n{"inputs":`,
        );
      });
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString();
      });
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 401/);
    expect(answer.toLowerCase()).toContain('connection: close');
    expect(answer).toContain('UNAUTHENTICATED');
    expect(calls.n).toBe(before);
  });

  it("answers 429 RESOURCE_EXHAUSTED with Retry-After past a key's rate limit, other keys unaffected", async () => {
    expect((await infer({ 'x-api-key': slowKey.key })).status).toBe(200);
    expect((await infer({ 'x-api-key': slowKey.key })).status).toBe(200);
    const limited = await infer({ 'x-api-key': slowKey.key });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    const body = await limited.json();
    expect(body.code).toBe('RESOURCE_EXHAUSTED');
    expect(body.error).toContain('trial');
    expect((await infer({ 'x-api-key': inferKey.key })).status).toBe(200);
  });
});

describe('auth options', () => {
  it('refuses auth combined with a management token, and shares one authenticator', async () => {
    const { registry } = echoRegistry();
    await expect(
      SERVERS[0]![1]({ registry, auth: { keys: KEYS }, management: { token: 't' } }),
    ).rejects.toThrow(/cannot be combined/);
    // One Authenticator on two servers: a rate limit counts requests to either.
    const shared = createAuthenticator({ keys: KEYS });
    const a = await SERVERS[0]![1]({ registry, auth: shared });
    const b = await SERVERS[1]![1]({ registry, auth: shared });
    try {
      const send = (u: string) =>
        fetch(`${u}/v2/models/echo/infer`, {
          method: 'POST',
          headers: { ...JSON_TYPE, 'x-api-key': slowKey.key },
          body: BODY,
        });
      expect((await send(a.url)).status).toBe(200);
      expect((await send(b.url)).status).toBe(200);
      expect((await send(a.url)).status).toBe(429);
      expect((await send(b.url)).status).toBe(429);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });
});

describe.each(SERVERS)('CORS over real HTTP (%s)', (_name, start) => {
  it('answers preflights for allowed origins (204) and refuses others (403); answers carry Allow-Origin', async () => {
    const { registry } = echoRegistry();
    const allowed = 'http://127.0.0.1:9';
    const server = await start({ registry, cors: { origins: [allowed], maxAgeSeconds: 120 } });
    try {
      const pre = await fetch(`${server.url}/v2/models/echo/infer`, {
        method: 'OPTIONS',
        headers: {
          origin: allowed,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'content-type, x-api-key',
        },
      });
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe(allowed);
      expect(pre.headers.get('access-control-max-age')).toBe('120');
      expect(pre.headers.get('access-control-allow-methods')).toContain('POST');
      const other = await fetch(`${server.url}/v2/models/echo/infer`, {
        method: 'OPTIONS',
        headers: { origin: 'http://127.0.0.1:10', 'access-control-request-method': 'POST' },
      });
      expect(other.status).toBe(403);
      expect(other.headers.get('access-control-allow-origin')).toBeNull();
      // The allowed origin is trusted by the cross-origin check: its POST is served.
      const post = await fetch(`${server.url}/v2/models/echo/infer`, {
        method: 'POST',
        headers: { ...JSON_TYPE, origin: allowed, 'sec-fetch-site': 'same-site' },
        body: BODY,
      });
      expect(post.status).toBe(200);
      expect(post.headers.get('access-control-allow-origin')).toBe(allowed);
      expect(post.headers.get('access-control-expose-headers')).toContain('x-request-id');
      const refused = await fetch(`${server.url}/v2/models/echo/infer`, {
        method: 'POST',
        headers: { ...JSON_TYPE, origin: 'http://127.0.0.1:10', 'sec-fetch-site': 'same-site' },
        body: BODY,
      });
      expect(refused.status).toBe(403);
      expect(refused.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await server.close();
    }
  });
});

describe.runIf(haveChromium)('CORS and API keys from real Chromium pages', () => {
  let browser: Browser;
  let friend: Awaited<ReturnType<typeof pageServer>>;
  let stranger: Awaited<ReturnType<typeof pageServer>>;
  beforeAll(async () => {
    [friend, stranger] = await Promise.all([pageServer('client'), pageServer('client')]);
    browser = await launchChromium();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await Promise.all([friend?.close(), stranger?.close()]);
  });

  async function callFrom(origin: string, url: string, key: string | undefined) {
    const page = await browser.newPage();
    try {
      await page.goto(`${origin}/`);
      return await page.evaluate(
        async ({ url, body, key }) => {
          try {
            const res = await fetch(url, {
              method: 'POST',
              headers: { 'content-type': 'application/json', ...(key ? { 'x-api-key': key } : {}) },
              body,
            });
            const json = await res.json();
            return {
              status: res.status,
              data: json.outputs?.[0]?.data,
              code: json.code,
              id: res.headers.get('x-request-id'),
            };
          } catch {
            return 'blocked';
          }
        },
        { url, body: BODY, key },
      );
    } finally {
      await page.close();
    }
  }

  it.each(SERVERS)(
    '%s: an allowed origin gets answers to a preflighted JSON POST with a key; another origin is refused',
    async (_name, start) => {
      const { registry, calls } = echoRegistry();
      const server = await start({ registry, cors: { origins: [friend.origin] }, auth: { keys: KEYS } });
      const api = `${server.url}/v2/models/echo/infer`;
      try {
        const ok = await callFrom(friend.origin, api, inferKey.key);
        expect(ok).toEqual({ status: 200, data: [3], code: undefined, id: expect.any(String) });
        expect(calls.n).toBe(1);
        // The page can read the refusal too (CORS headers on errors): 401 without a key.
        expect(await callFrom(friend.origin, api, undefined)).toMatchObject({
          status: 401,
          code: 'UNAUTHENTICATED',
        });
        // Another loopback origin: the preflight is refused, the POST is never sent.
        expect(await callFrom(stranger.origin, api, inferKey.key)).toBe('blocked');
        expect(calls.n).toBe(1);
      } finally {
        await server.close();
      }
    },
    60_000,
  );
});
