import { DEPRECATED_CODE } from '@mlserve/core';
import { expect, it } from 'vitest';
import { workerPool } from '../src/index.js';
import { FAULTY } from './helpers.js';

it('idleTimeout, the deprecated name of idleTimeoutMs, still lets idle threads exit and warns once', async () => {
  const warnings: string[] = [];
  const listener = (w: Error & { code?: string }) => {
    if (w.code === DEPRECATED_CODE) warnings.push(w.message);
  };
  process.on('warning', listener);
  const pool = await workerPool({
    backend: { module: FAULTY },
    source: 'unused',
    threads: 2,
    minThreads: 1,
    idleTimeout: 100,
  });
  try {
    await expect(workerPool({ backend: { module: FAULTY }, source: 'x', idleTimeout: -1 })).rejects.toThrow(
      'options.idleTimeout must be a non-negative number of milliseconds',
    );
    const live = () => (pool.stats!().workers as { liveWorkers: number }).liveWorkers;
    expect(live()).toBe(2);
    const t0 = Date.now();
    while (live() > 1 && Date.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 50));
    expect(live()).toBe(1);
  } finally {
    await pool.dispose();
    process.off('warning', listener);
  }
  expect(warnings).toEqual(['workerPool: options.idleTimeout is deprecated; use options.idleTimeoutMs']);
});
