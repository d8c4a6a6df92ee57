import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { HTTP_DEFAULTS, parseCommandLine, type ServeOptions, serve, UsageError } from '../src/index.js';

const parse = (...args: string[]): ServeOptions => {
  const c = parseCommandLine(['serve', '--model-repository', 'm', ...args]);
  if (c.command !== 'serve') throw new Error('not serve');
  return c.options;
};

/** Opens a raw connection, writes `first`, and resolves with what came back once the server closes it. */
function rawUntilClosed(url: string, first: string): Promise<{ text: string; ms: number }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const socket = connect(Number(port), hostname, () => socket.write(first));
    let text = '';
    socket.on('data', (d) => {
      text += d.toString('latin1');
    });
    socket.on('error', reject);
    socket.on('close', () => resolve({ text, ms: performance.now() - t0 }));
  });
}

describe('HTTP limits on slow and idle clients', () => {
  it('flags parse as durations and sizes, and are checked', () => {
    expect(parse()).not.toHaveProperty('headersTimeoutMs');
    expect(
      parse(
        '--headers-timeout',
        '5s',
        '--request-timeout',
        '2m',
        '--keep-alive-timeout',
        '65s',
        '--connection-timeout',
        '0',
        '--body-limit',
        '16mb',
      ),
    ).toMatchObject({
      headersTimeoutMs: 5000,
      requestTimeoutMs: 120_000,
      keepAliveTimeoutMs: 65_000,
      connectionTimeoutMs: 0,
      bodyLimit: 16 * 1024 * 1024,
    });
    expect(parse('--body-limit', '512KiB').bodyLimit).toBe(512 * 1024);
    expect(parse('--body-limit', '1000').bodyLimit).toBe(1000);
    expect(() => parse('--body-limit', 'lots')).toThrow(UsageError);
    expect(() => parse('--body-limit', '0')).toThrow(/--body-limit must be a size/);
    expect(() => parse('--headers-timeout', 'soon')).toThrow(/--headers-timeout must be a duration/);
    expect(() => parse('--headers-timeout', '90s')).toThrow(/at most --request-timeout/);
    expect(() => parse('--headers-timeout', '0')).toThrow(/must be on/);
    expect(parse('--headers-timeout', '0', '--request-timeout', '0')).toMatchObject({
      headersTimeoutMs: 0,
      requestTimeoutMs: 0,
    });
    expect(() => parse('--keep-alive-timeout', '0')).toThrow(UsageError);
  });

  it('mlserve serve sets the defaults on its server, and the flags override them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mlserve-limits-'));
    const out = { out: () => {}, err: () => {} };
    const byDefault = await serve({ ...parse('--port', '0', '--no-warmup'), modelRepository: dir }, out);
    try {
      const s = byDefault.app.server;
      expect(s.headersTimeout).toBe(HTTP_DEFAULTS.headersTimeoutMs);
      expect(s.requestTimeout).toBe(HTTP_DEFAULTS.requestTimeoutMs);
      expect(s.keepAliveTimeout).toBe(HTTP_DEFAULTS.keepAliveTimeoutMs);
      expect(s.timeout).toBe(0);
    } finally {
      await byDefault.close();
    }
    const tight = await serve(
      {
        ...parse(
          '--port',
          '0',
          '--no-warmup',
          '--headers-timeout',
          '300ms',
          '--request-timeout',
          '600ms',
          '--body-limit',
          '1kb',
        ),
        modelRepository: dir,
      },
      out,
    );
    try {
      // Headers that never end, and a body that never comes: both closed with 408, not held.
      const headers = await rawUntilClosed(tight.url, 'GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      expect(headers.text).toMatch(/^HTTP\/1\.1 408 /);
      expect(headers.ms).toBeLessThan(10_000);
      const body = await rawUntilClosed(
        tight.url,
        'POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{',
      );
      expect(body.text).toMatch(/^HTTP\/1\.1 408 /);
      expect(body.ms).toBeLessThan(10_000);
      // The body limit reaches the plugin: a declared 2 KiB body is refused before it is read.
      const big = await rawUntilClosed(
        tight.url,
        'POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2048\r\nConnection: close\r\n\r\n',
      );
      expect(big.text).toMatch(/^HTTP\/1\.1 413 /);
      expect(big.text).toContain('PAYLOAD_TOO_LARGE');
    } finally {
      await tight.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
