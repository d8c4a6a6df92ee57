import { DEPRECATED_CODE } from '@mlserve/core';
import { expect, test } from 'vitest';
import { batching } from '../src/index.js';
import { codeOf, probe, rowsOf } from './helpers.js';

test('maxQueueSize, the deprecated name of maxQueue, still bounds the queue and warns once', async () => {
  const warnings: string[] = [];
  const listener = (w: Error & { code?: string }) => {
    if (w.code === DEPRECATED_CODE) warnings.push(w.message);
  };
  process.on('warning', listener);
  try {
    const p = probe();
    const served = batching({ maxQueueSize: 8, maxBatchSize: 4 })(p.model);
    batching({ maxQueueSize: 8 })(probe().model);
    expect(await codeOf(served.infer({ x: rowsOf(9) }))).toBe('PAYLOAD_TOO_LARGE');
    expect(await codeOf(served.infer({ x: rowsOf(8) }))).toBe('OK');
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  expect(warnings).toEqual(['batching: options.maxQueueSize is deprecated; use options.maxQueue']);
});
