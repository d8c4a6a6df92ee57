import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromFunction, pipeline } from '@mlserve/core';
import { type RedisServer, requireService, startRedis } from '@mlserve/test-utils';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  columns,
  jsonLinesSink,
  monitor,
  type PayloadRecord,
  profile,
  redisStreamSink,
} from '../src/index.js';

const record = (i: number): PayloadRecord => ({
  time: Date.now(),
  model: 'm',
  version: '1',
  id: `r${i}`,
  inputs: { x: { type: 'float32', dims: [1, 4], data: Float32Array.of(i, 1, 2, 3) } },
  outputs: { y: { type: 'int64', dims: [1], data: BigInt64Array.of(BigInt(i)) } },
});

describe('jsonLinesSink', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sink-'));
  });
  afterAll(() => rm(dir, { recursive: true }));

  it('rotates by size and keeps the newest files', async () => {
    const path = join(dir, 'payloads.jsonl');
    const sink = jsonLinesSink({ path, maxBytes: 2000, keep: 2 });
    for (let i = 0; i < 100; i++) expect(sink.write(record(i))).toBe(true);
    await sink.close();
    expect((await readdir(dir)).sort()).toEqual(['payloads.jsonl', 'payloads.jsonl.1', 'payloads.jsonl.2']);
    for (const f of ['payloads.jsonl', 'payloads.jsonl.1', 'payloads.jsonl.2']) {
      expect((await stat(join(dir, f))).size).toBeLessThanOrEqual(2000);
    }
    const lines = (await readFile(path, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.at(-1)).toMatchObject({
      id: 'r99',
      inputs: { x: { type: 'float32', dims: [1, 4], data: [99, 1, 2, 3] } },
      outputs: { y: { type: 'int64', data: ['99'] } },
    });
    expect(sink.stats()).toMatchObject({ written: 100, dropped: 0, errors: 0, pending: 0 });
  });

  it('drops, and counts, what does not fit in its buffer', async () => {
    const sink = jsonLinesSink({ path: join(dir, 'small.jsonl'), maxPending: 10 });
    let accepted = 0;
    for (let i = 0; i < 1000; i++) if (sink.write(record(i))) accepted++;
    expect(accepted).toBeLessThanOrEqual(10);
    expect(sink.stats().dropped).toBe(1000 - accepted);
    await sink.close();
    expect(sink.write(record(0))).toBe(false);
  });

  it('logs a sampled fraction of a monitored model without slowing it', async () => {
    const path = join(dir, 'served.jsonl');
    const ex = [columns('x', ['a'])];
    const ref = await profile(
      [{ inputs: { x: { type: 'float32', dims: [2, 1], data: Float32Array.of(1, 2) } } }],
      {
        extractors: ex,
      },
    );
    const model = fromFunction({
      name: 'echo',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 1] }],
      outputs: [{ name: 'x', type: 'float32', dims: [-1, 1] }],
      infer: (inputs) => inputs,
    });
    const sink = jsonLinesSink({ path });
    const served = pipeline(model, monitor({ profile: ref, extractors: ex, sink, sinkSampleRate: 0.5 }));
    for (let i = 0; i < 400; i++) {
      await served.infer({ x: { type: 'float32', dims: [1, 1], data: Float32Array.of(i) } }, { id: `q${i}` });
    }
    await served.dispose();
    const lines = (await readFile(path, 'utf8')).trim().split('\n');
    expect(lines.length).toBeGreaterThan(120);
    expect(lines.length).toBeLessThan(280);
    expect(JSON.parse(lines[0]!)).toMatchObject({ model: 'echo', id: expect.stringMatching(/^q\d+$/) });
  });
});

const haveRedis = requireService('redis-server', 'apt-get install -y redis-server');

describe.runIf(haveRedis)('redisStreamSink', () => {
  let server: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    server = await startRedis();
    client = new Redis(server.port, '127.0.0.1', { maxRetriesPerRequest: null, retryStrategy: () => 50 });
    client.on('error', () => undefined);
  });
  afterAll(async () => {
    client.disconnect();
    await server.stop();
  });

  it('appends to a capped stream', async () => {
    const sink = redisStreamSink({ client, stream: 'p', maxLen: 1000, maxPending: 10_000 });
    for (let i = 0; i < 5000; i++) sink.write(record(i));
    await sink.flush();
    expect(sink.stats()).toMatchObject({ written: 5000, dropped: 0, errors: 0 });
    const len = await client.xlen('p');
    expect(len).toBeGreaterThanOrEqual(1000);
    expect(len).toBeLessThan(1200);
    const [[, fields]] = (await client.xrevrange('p', '+', '-', 'COUNT', 1)) as [[string, string[]]];
    expect(JSON.parse(fields[1]!)).toMatchObject({ id: 'r4999' });
  });

  it('stays bounded while Redis is down and resumes when it is back', async () => {
    const sink = redisStreamSink({ client, stream: 'q', maxPending: 50 });
    await server.kill();
    let accepted = 0;
    for (let i = 0; i < 500; i++) if (sink.write(record(i))) accepted++;
    await new Promise((r) => setTimeout(r, 100));
    for (let i = 0; i < 500; i++) if (sink.write(record(i))) accepted++;
    expect(sink.stats().pending).toBeLessThanOrEqual(50);
    expect(sink.stats().dropped).toBe(1000 - accepted);
    expect(sink.stats().dropped).toBeGreaterThan(800);
    await server.restart();
    await sink.flush();
    expect(sink.stats().written + sink.stats().errors).toBe(accepted);
    expect(sink.write(record(1))).toBe(true);
    await sink.flush();
    expect(await client.xlen('q')).toBeGreaterThan(0);
  });
});
