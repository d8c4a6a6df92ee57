/**
 * Retry-After as other servers and proxies send it (the header alone, seconds or an HTTP date), from
 * a real HTTP server on loopback that refuses the first requests, then answers like a V2 server.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isServeError, tensor } from '@mlserve/core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createClient } from '../src/index.js';

let server: Server;
let url: string;
const arrivals: { at: number; url: string; body: string }[] = [];
let refusals: { status: number; retryAfter: string }[] = [];

async function bodyOf(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

beforeAll(async () => {
  server = createServer(async (req, res) => {
    arrivals.push({ at: Date.now(), url: req.url ?? '', body: await bodyOf(req) });
    const refusal = refusals.shift();
    if (refusal) {
      res.writeHead(refusal.status, { 'retry-after': refusal.retryAfter, 'content-type': 'text/plain' });
      res.end('busy, come back later');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({
        model_name: 'm',
        model_version: '1',
        outputs: [{ name: 'y', datatype: 'FP32', shape: [1], data: [42] }],
      }),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const x = tensor('float32', [1], [1]);

it('waits the seconds of a 429 Retry-After header before retrying', async () => {
  arrivals.length = 0;
  refusals = [{ status: 429, retryAfter: '1' }];
  const c = createClient({ url, binary: false });
  const out = await c.infer('m', { x });
  expect(Array.from(out.y!.data as Float32Array)).toEqual([42]);
  expect(arrivals).toHaveLength(2);
  // Not earlier than asked (a lower bound: the property is that the client waited).
  expect(arrivals[1]!.at - arrivals[0]!.at).toBeGreaterThanOrEqual(950);
  await c.close();
});

it('reads a 503 Retry-After HTTP date, and resends the time that is left', async () => {
  arrivals.length = 0;
  refusals = [{ status: 503, retryAfter: new Date(Date.now() + 1500).toUTCString() }];
  const c = createClient({ url, binary: false });
  await c.infer('m', { x }, { timeoutMs: 10_000 });
  expect(arrivals).toHaveLength(2);
  expect(arrivals[1]!.at - arrivals[0]!.at).toBeGreaterThanOrEqual(300);
  const t0 = JSON.parse(arrivals[0]!.body).parameters.timeout as number;
  const t1 = JSON.parse(arrivals[1]!.body).parameters.timeout as number;
  expect(t0).toBeLessThanOrEqual(10_000_000);
  expect(t1).toBeLessThan(t0);
  await c.close();
});

it("passes the 429 on when Retry-After is past the deadline, with the server's text", async () => {
  arrivals.length = 0;
  refusals = [{ status: 429, retryAfter: '120' }];
  const c = createClient({ url, binary: false });
  const e = await c.infer('m', { x }, { timeoutMs: 5000 }).catch((err: unknown) => err);
  expect(isServeError(e) && e.code).toBe('RESOURCE_EXHAUSTED');
  expect(isServeError(e) && e.status).toBe(429);
  expect(isServeError(e) && e.retryAfterMs).toBe(120_000);
  expect((e as Error).message).toBe('busy, come back later');
  expect(arrivals).toHaveLength(1);
  await c.close();
});

it('does not retry a 500', async () => {
  arrivals.length = 0;
  refusals = [{ status: 500, retryAfter: '0' }];
  const c = createClient({ url, binary: false });
  const e = await c.infer('m', { x }).catch((err: unknown) => err);
  expect(isServeError(e) && e.code).toBe('INTERNAL');
  expect(arrivals).toHaveLength(1);
  await c.close();
});
