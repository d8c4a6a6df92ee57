import { once } from 'node:events';
import { request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ModelRegistry } from '@mlserve/core';
import { echoRegistry, launchChromium, pageServer, requireService } from '@mlserve/test-utils';
import express from 'express';
import Fastify from 'fastify';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MlserveHttpOptions, mlservePlugin, mlserveRouter } from '../src/index.js';

const haveChromium = requireService('chromium', 'apt-get install -y chromium');
const BODY = JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], data: [3] }] });
const INFER = '/v2/models/echo/infer';

interface Started {
  port: number;
  /** `METHOD path status` of every request the server answered. */
  log: string[];
  close(): Promise<void>;
}

/** A page mlserve itself serves (same origin as the API). */
const SAME_ORIGIN_PAGE = '<!doctype html><title>same origin</title>';

async function startFastify(options: Omit<MlserveHttpOptions, 'registry'>, registry: ModelRegistry) {
  const app = Fastify({ logger: false, forceCloseConnections: true });
  const log: string[] = [];
  app.addHook('onResponse', async (req, reply) => {
    log.push(`${req.method} ${req.url} ${reply.statusCode}`);
  });
  app.get('/page', async (_req, reply) => reply.type('text/html').send(SAME_ORIGIN_PAGE));
  await app.register(mlservePlugin, { registry, ...options });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    port: (app.server.address() as AddressInfo).port,
    log,
    close: () => app.close(),
  } satisfies Started;
}

async function startExpress(options: Omit<MlserveHttpOptions, 'registry'>, registry: ModelRegistry) {
  const app = express();
  const log: string[] = [];
  app.use((req, res, next) => {
    res.on('finish', () => log.push(`${req.method} ${req.url} ${res.statusCode}`));
    next();
  });
  app.get('/page', (_req, res) => {
    res.type('html').send(SAME_ORIGIN_PAGE);
  });
  app.use(mlserveRouter({ registry, ...options }));
  const server: Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    log,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  } satisfies Started;
}

const ADAPTERS = [
  ['fastify', startFastify],
  ['express', startExpress],
] as const;

/** A raw request with exactly these headers (plus Host), the way curl or a server would send it. */
function raw(
  port: number,
  path: string,
  headers: Record<string, string>,
  body?: string,
  method = body === undefined ? 'GET' : 'POST',
): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        resolve({ status: res.statusCode!, json: text ? JSON.parse(text) : undefined });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe.each(ADAPTERS)('cross-origin protection over real HTTP (%s)', (_name, start) => {
  let server: Started;
  let calls: { n: number };
  beforeAll(async () => {
    const echo = echoRegistry();
    calls = echo.calls;
    server = await start({ crossOrigin: { trustedOrigins: ['http://127.0.0.1:1'] } }, echo.registry);
  });
  afterAll(() => server?.close());

  it('serves requests without browser headers: JSON, none (tritonclient), Node fetch', async () => {
    const json = await raw(server.port, INFER, { 'content-type': 'application/json' }, BODY);
    expect(json.status).toBe(200);
    expect(json.json.outputs[0].data).toEqual([3]);
    expect((await raw(server.port, INFER, {}, BODY)).status).toBe(200);
    const fetched = await fetch(`http://127.0.0.1:${server.port}${INFER}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: BODY,
    });
    expect(fetched.status).toBe(200);
    expect(
      (await raw(server.port, '/v1/models/echo:predict', {}, JSON.stringify({ instances: [[1]] }))).status,
    ).toBe(200);
  });

  it('refuses cross-origin and same-site POSTs with 403 PERMISSION_DENIED, before the model runs', async () => {
    const before = calls.n;
    const cases: Record<string, string>[] = [
      { 'sec-fetch-site': 'same-site', origin: 'http://127.0.0.1:9' },
      { 'sec-fetch-site': 'cross-site', origin: 'https://evil.example' },
      { origin: 'http://127.0.0.1:9' },
    ];
    for (const headers of cases) {
      const res = await raw(server.port, INFER, { 'content-type': 'application/json', ...headers }, BODY);
      expect(res.status).toBe(403);
      expect(res.json.code).toBe('PERMISSION_DENIED');
    }
    for (const path of ['/v1/models/echo:predict', '/v2/repository/index', '/v2/models/echo/feedback']) {
      const res = await raw(server.port, path, { 'sec-fetch-site': 'cross-site' }, '{}');
      expect(res.status).toBe(403);
    }
    expect(calls.n).toBe(before);
  });

  it('serves same-origin browser requests and trusted origins', async () => {
    const port = server.port;
    const same = { 'sec-fetch-site': 'same-origin', origin: `http://127.0.0.1:${port}` };
    expect((await raw(port, INFER, { 'content-type': 'application/json', ...same }, BODY)).status).toBe(200);
    expect(
      (
        await raw(
          port,
          INFER,
          { 'content-type': 'application/json', origin: `http://127.0.0.1:${port}` },
          BODY,
        )
      ).status,
    ).toBe(200);
    const trusted = { 'sec-fetch-site': 'same-site', origin: 'http://127.0.0.1:1' };
    expect((await raw(port, INFER, { 'content-type': 'application/json', ...trusted }, BODY)).status).toBe(
      200,
    );
  });

  it('answers 415 UNSUPPORTED_MEDIA_TYPE to text/plain, form and multipart bodies', async () => {
    for (const type of [
      'text/plain;charset=UTF-8',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=b',
    ]) {
      for (const path of [INFER, '/v1/models/echo:predict']) {
        const res = await raw(server.port, path, { 'content-type': type }, BODY);
        expect(res.status).toBe(415);
        expect(res.json.code).toBe('UNSUPPORTED_MEDIA_TYPE');
      }
    }
  });

  it('refuses a rebound DNS name on loopback (403) and keeps reads working for localhost names', async () => {
    for (const host of ['rebound.example', `rebound.example:${server.port}`]) {
      const res = await raw(server.port, '/v2/models/echo', { host });
      expect(res.status).toBe(403);
      expect(res.json.code).toBe('PERMISSION_DENIED');
    }
    for (const host of [`localhost:${server.port}`, `[::1]:${server.port}`, `127.0.0.1:${server.port}`]) {
      expect((await raw(server.port, '/v2/models/echo', { host })).status).toBe(200);
    }
  });

  it('is configurable: allowed hosts, and off with crossOrigin: false', async () => {
    const echo = echoRegistry();
    const open = await start({ crossOrigin: false }, echo.registry);
    const named = await start({ crossOrigin: { allowedHosts: ['models.internal'] } }, echo.registry);
    try {
      expect((await raw(open.port, INFER, { 'content-type': 'text/plain' }, BODY)).status).toBe(200);
      expect((await raw(open.port, '/v2/models/echo', { host: 'rebound.example' })).status).toBe(200);
      expect((await raw(named.port, '/v2/models/echo', { host: 'models.internal' })).status).toBe(200);
      expect((await raw(named.port, '/v2/models/echo', { host: 'rebound.example' })).status).toBe(403);
    } finally {
      await Promise.all([open.close(), named.close()]);
    }
  });
});

describe.runIf(haveChromium)('cross-origin protection from real Chromium pages', () => {
  let browser: Browser;
  let evil: Awaited<ReturnType<typeof pageServer>>;
  let friend: Awaited<ReturnType<typeof pageServer>>;
  beforeAll(async () => {
    [evil, friend] = await Promise.all([pageServer(), pageServer()]);
    browser = await launchChromium();
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await Promise.all([evil?.close(), friend?.close()]);
  });

  /** Runs fetch(url, init) in a page at `origin`; the status the page could read, or 'blocked'. */
  async function fetchFrom(
    origin: string,
    url: string,
    init: { contentType?: string; mode?: 'cors' | 'no-cors' },
  ): Promise<string> {
    const page = await browser.newPage();
    try {
      await page.goto(`${origin}/`);
      return await page.evaluate(
        async ({ url, body, contentType, mode }) => {
          try {
            // A Blob without a type sends no Content-Type at all (the header-less simple request).
            const res = await fetch(url, {
              method: 'POST',
              mode,
              ...(contentType
                ? { headers: { 'content-type': contentType }, body }
                : { body: new Blob([body]) }),
            });
            return res.type === 'opaque' ? 'opaque' : `status ${res.status}`;
          } catch {
            return 'blocked';
          }
        },
        { url, body: BODY, contentType: init.contentType, mode: init.mode ?? 'cors' },
      );
    } finally {
      await page.close();
    }
  }

  it.each(ADAPTERS)(
    '%s: a page on another loopback port is refused; a trusted one and the same origin are served',
    async (_name, start) => {
      const { registry, calls } = echoRegistry();
      const server = await start({ crossOrigin: { trustedOrigins: [friend.origin] } }, registry);
      const api = `http://127.0.0.1:${server.port}${INFER}`;
      try {
        // text/plain: a simple request, sent without a preflight; mlserve refuses it (403: same-site).
        expect(await fetchFrom(evil.origin, api, { contentType: 'text/plain' })).toBe('blocked');
        expect(server.log.at(-1)).toBe(`POST ${INFER} 403`);
        // No Content-Type at all, no-cors: still a POST the browser sends; refused by Sec-Fetch-Site.
        expect(await fetchFrom(evil.origin, api, { mode: 'no-cors' })).toBe('opaque');
        expect(server.log.at(-1)).toBe(`POST ${INFER} 403`);
        // JSON: the preflight gets no CORS answer, so the browser never sends the POST.
        const before = server.log.length;
        expect(await fetchFrom(evil.origin, api, { contentType: 'application/json' })).toBe('blocked');
        expect(server.log.slice(before).some((l) => l.startsWith('POST'))).toBe(false);
        expect(calls.n).toBe(0);

        // The trusted origin's POST reaches the model (the page cannot read the answer without CORS).
        expect(await fetchFrom(friend.origin, api, { mode: 'no-cors' })).toBe('opaque');
        expect(server.log.at(-1)).toBe(`POST ${INFER} 200`);
        expect(calls.n).toBe(1);
        // text/plain stays 415 even from a trusted origin: browsers would skip the preflight for it.
        await fetchFrom(friend.origin, api, { contentType: 'text/plain' });
        expect(server.log.at(-1)).toBe(`POST ${INFER} 415`);

        // A page mlserve's own server serves: same-origin JSON is answered and readable.
        const page = await browser.newPage();
        try {
          await page.goto(`http://127.0.0.1:${server.port}/page`);
          const out = await page.evaluate(
            async ({ body, path }) => {
              const res = await fetch(path, {
                method: 'POST',
                headers: { 'content-type': 'application/json' },
                body,
              });
              return { status: res.status, data: (await res.json()).outputs?.[0]?.data };
            },
            { body: BODY, path: INFER },
          );
          expect(out).toEqual({ status: 200, data: [3] });
        } finally {
          await page.close();
        }
        expect(calls.n).toBe(2);
      } finally {
        await server.close();
      }
    },
    60_000,
  );
});
