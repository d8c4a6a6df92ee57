import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startMetricsPort } from '../src/cluster.js';
import { parseCommandLine, type ServeOptions, serve, UsageError } from '../src/index.js';

const parse = (...args: string[]): ServeOptions => {
  const c = parseCommandLine(['serve', '--model-repository', 'm', ...args]);
  if (c.command !== 'serve') throw new Error('not serve');
  return c.options;
};

function post(url: string, headers: Record<string, string>): Promise<{ status: number; code?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v2/models/none/infer`, { method: 'POST', headers }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode!, code: JSON.parse(text).code }));
    });
    req.on('error', reject);
    req.end('{"inputs":[]}');
  });
}

describe('cross-origin options', () => {
  it('--trusted-origin and --allowed-host are repeatable and checked', () => {
    expect(parse()).not.toHaveProperty('trustedOrigins');
    expect(
      parse('--trusted-origin', 'http://localhost:5173', '--trusted-origin', 'https://app.example.com/'),
    ).toMatchObject({ trustedOrigins: ['http://localhost:5173', 'https://app.example.com'] });
    expect(parse('--allowed-host', 'models.internal', '--allowed-host', '*')).toMatchObject({
      allowedHosts: ['models.internal', '*'],
    });
    expect(() => parse('--trusted-origin', 'app.example.com')).toThrow(UsageError);
    expect(() => parse('--trusted-origin', 'https://app.example.com/path')).toThrow(/must be an origin/);
    expect(() => parse('--allowed-host', 'models.internal:8000')).toThrow(/without port/);
  });

  it('mlserve serve refuses other origins and rebound hosts by default, and trusts the named origin', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mlserve-origin-'));
    const out = { out: () => {}, err: () => {} };
    const server = await serve(
      {
        ...parse('--port', '0', '--trusted-origin', 'http://127.0.0.1:1', '--no-warmup'),
        modelRepository: dir,
      },
      out,
    );
    try {
      const json = { 'content-type': 'application/json' };
      expect(
        await post(server.url, { ...json, 'sec-fetch-site': 'same-site', origin: 'http://127.0.0.1:2' }),
      ).toEqual({
        status: 403,
        code: 'PERMISSION_DENIED',
      });
      expect(await post(server.url, { 'content-type': 'text/plain' })).toEqual({
        status: 415,
        code: 'UNSUPPORTED_MEDIA_TYPE',
      });
      expect(await post(server.url, { ...json, host: 'rebound.example' })).toEqual({
        status: 403,
        code: 'PERMISSION_DENIED',
      });
      // Past the check: the model does not exist.
      expect(
        await post(server.url, { ...json, 'sec-fetch-site': 'same-site', origin: 'http://127.0.0.1:1' }),
      ).toEqual({
        status: 404,
        code: 'NOT_FOUND',
      });
      expect(await post(server.url, {})).toEqual({ status: 404, code: 'NOT_FOUND' });
    } finally {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('--metrics-port server', () => {
  function get(port: number, host: string): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/metrics', headers: { host } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode!, text }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('refuses a rebound Host on loopback, like the main server, and serves localhost and --allowed-host names', async () => {
    const source = { contentType: 'text/plain', metrics: async () => 'up 1\n' };
    const server = startMetricsPort(source, '127.0.0.1', 0, () => {}, ['models.internal']);
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    try {
      const rebound = await get(port, `evil.example:${port}`);
      expect(rebound.status).toBe(403);
      expect(rebound.text).toMatch(/DNS rebinding/);
      expect(rebound.text).not.toMatch(/up 1/);
      expect(await get(port, `localhost:${port}`)).toEqual({ status: 200, text: 'up 1\n' });
      expect(await get(port, `127.0.0.1:${port}`)).toEqual({ status: 200, text: 'up 1\n' });
      expect(await get(port, 'models.internal')).toEqual({ status: 200, text: 'up 1\n' });
    } finally {
      server.close();
    }
  });
});
