import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireService } from '@mlserve/test-utils';
import { describe, expect, it } from 'vitest';
import { luaScript, ms, parseWrk, wrk } from '../src/wrk.js';

const SAMPLE = `Running 3s test @ http://127.0.0.1:41234/v2/models/mnist/infer
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.31ms    4.02ms  67.45ms   95.10%
    Req/Sec     4.12k   512.33     4.90k    80.00%
  Latency Distribution
     50%    1.47ms
     75%    2.01ms
     90%    4.35ms
     99%   50.44ms
  12345 requests in 3.00s, 4.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   4115.00
Transfer/sec:      1.37MB
0m0.004s 0m0.002s
0m0.210s 0m0.090s
`;

describe('wrk output parsing', () => {
  it('reads durations in every unit wrk prints', () => {
    expect(ms('812.00us')).toBeCloseTo(0.812, 6);
    expect(ms('1.47ms')).toBeCloseTo(1.47, 6);
    expect(ms('2.10s')).toBeCloseTo(2100, 6);
    expect(ms('1.05m')).toBeCloseTo(63_000, 6);
    expect(ms('')).toBeNaN();
  });

  it('reads throughput, percentiles, errors and the CPU wrk used', () => {
    const r = parseWrk(SAMPLE, 3);
    expect(r.rps).toBe(4115);
    expect(r.requests).toBe(12345);
    expect(r.errors).toBe(7); // 4 non-2xx + 3 socket errors
    expect(r.p50).toBeCloseTo(1.47, 6);
    expect(r.p90).toBeCloseTo(4.35, 6);
    expect(r.p99).toBeCloseTo(50.44, 6);
    expect(r.mean).toBeCloseTo(2.31, 6);
    expect(r.max).toBeCloseTo(67.45, 6);
    // The children's line (0.21 s user + 0.09 s system) over 3 s.
    expect(r.wrkCores).toBeCloseTo(0.1, 6);
  });
});

describe.runIf(requireService('wrk', 'apt-get install -y wrk'))('wrk against a real server', () => {
  it('POSTs the body and headers from the generated script', async () => {
    let posts = 0;
    let bad = 0;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        if (req.method === 'POST' && req.headers['x-test'] === 'yes' && body === '{"a":[1,2,3]}') posts++;
        else bad++;
        res.end('ok');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const dir = mkdtempSync(join(tmpdir(), 'mlserve-wrk-test-'));
    try {
      const script = luaScript(dir, 'post', Buffer.from('{"a":[1,2,3]}'), { 'X-Test': 'yes' });
      const { port } = server.address() as AddressInfo;
      const run = await wrk(`http://127.0.0.1:${port}/`, script, 1, 2);
      expect(bad).toBe(0);
      expect(posts).toBeGreaterThan(10);
      expect(run.requests).toBeGreaterThan(10);
      expect(run.errors).toBe(0);
      expect(run.p50).toBeGreaterThan(0);
      expect(run.p99).toBeGreaterThanOrEqual(run.p50);
      expect(run.wrkCores).toBeGreaterThan(0);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
