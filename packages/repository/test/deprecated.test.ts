import { deprecationsOf } from '@mlserve/test-utils';
import { expect, it } from 'vitest';
import { parseModelConfig } from '../src/config.js';

it('config.json batching.maxQueueSize, the deprecated name of maxQueue, still sets it and warns once', async () => {
  const seen = await deprecationsOf(() => {
    expect(parseModelConfig({ batching: { maxQueueSize: 64 } }, 'a/config.json').batching).toEqual({
      maxQueue: 64,
    });
    expect(parseModelConfig({ batching: { maxQueueSize: 64 } }, 'b/config.json').batching).toEqual({
      maxQueue: 64,
    });
    expect(parseModelConfig({ batching: { maxQueue: 32 } }, 'c/config.json').batching).toEqual({
      maxQueue: 32,
    });
    expect(() => parseModelConfig({ batching: { maxQueueSize: 0 } }, 'd/config.json')).toThrow(
      'd/config.json: "batching.maxQueueSize" must be a positive integer',
    );
  });
  expect(seen).toEqual(['a/config.json: "batching.maxQueueSize" is deprecated; use "batching.maxQueue"']);
});

it('config.json workers.idleTimeout, the deprecated name of idleTimeoutMs, still sets it and warns once', async () => {
  const seen = await deprecationsOf(() => {
    expect(parseModelConfig({ workers: { threads: 2, idleTimeout: 500 } }, 'a/config.json').workers).toEqual({
      threads: 2,
      idleTimeoutMs: 500,
    });
    expect(parseModelConfig({ workers: { idleTimeoutMs: 700 } }, 'b/config.json').workers).toEqual({
      threads: 1,
      idleTimeoutMs: 700,
    });
    expect(() => parseModelConfig({ workers: { idle: 1 } }, 'c/config.json')).toThrow(
      'c/config.json: "workers.idle" is not a known field (known: threads, intraOpThreads, maxQueue, idleTimeoutMs)',
    );
  });
  expect(seen).toEqual(['a/config.json: "workers.idleTimeout" is deprecated; use "workers.idleTimeoutMs"']);
});
