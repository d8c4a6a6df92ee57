import { batching } from '@mlserve/batching';
import { responseCache } from '@mlserve/cache';
import { type Model, pipeline, type ServeError } from '@mlserve/core';
import { rejection } from '@mlserve/test-utils';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { computeBudget, setComputeBudget, workerPool } from '../src/index.js';
import { FAULTY, info, maxOverlap, spin, x } from './helpers.js';

const faulty = (extra: Partial<Parameters<typeof workerPool>[0]> = {}) =>
  workerPool({ backend: { module: FAULTY }, source: 'unused', intraOpThreads: 1, ...extra });

describe('a busy pool does not block the event loop', () => {
  let pool: Model;
  beforeAll(async () => {
    setComputeBudget(2);
    pool = await faulty({ threads: 2 });
  });
  afterAll(() => pool.dispose());

  it('runs `threads` requests at once while a main-thread timer still fires on time', async () => {
    const busy = [pool.infer(spin(600)), pool.infer(spin(600))];
    const t0 = performance.now();
    const fired = await new Promise<number>((resolve) =>
      setTimeout(() => resolve(performance.now() - t0), 20),
    );
    expect(fired).toBeLessThan(200);
    const runs = (await Promise.all(busy)).map(info);
    expect(new Set(runs.map((r) => r.threadId)).size).toBe(2);
    expect(maxOverlap(runs)).toBe(2);
  });
});

describe('queueing', () => {
  let pool: Model;
  beforeAll(async () => {
    setComputeBudget(2);
    pool = await faulty({ threads: 1, maxQueue: 2, rejectStatus: 503 });
  });
  afterAll(() => pool.dispose());

  it('an aborted request leaves the queue without running', async () => {
    const first = pool.infer(spin(300));
    const ac = new AbortController();
    const queued = pool.infer(x(1), { signal: ac.signal });
    setTimeout(() => ac.abort(), 30);
    const err = await rejection(queued);
    expect(err.code).toBe('CANCELLED');
    const ran = info(await first);
    const next = info(await pool.infer(x(1)));
    expect(next.calls).toBe(ran.calls + 1);
  });

  it('an expired request leaves the queue without running', async () => {
    const first = pool.infer(spin(1_000));
    const t0 = Date.now();
    const err = await rejection(pool.infer(x(1), { deadline: Date.now() + 50 }));
    expect(err.code).toBe('DEADLINE_EXCEEDED');
    // It left the queue on time, not when the thread came free.
    expect(Date.now() - t0).toBeLessThan(800);
    const ran = info(await first);
    expect(info(await pool.infer(x(1))).calls).toBe(ran.calls + 1);
  });

  it('a request already past its deadline or aborted never starts', async () => {
    expect((await rejection(pool.infer(x(1), { deadline: Date.now() - 1 }))).code).toBe('DEADLINE_EXCEEDED');
    expect((await rejection(pool.infer(x(1), { signal: AbortSignal.abort() }))).code).toBe('CANCELLED');
  });

  it('sheds load past maxQueue with RESOURCE_EXHAUSTED and the configured status', async () => {
    const running = pool.infer(spin(200));
    const waiting = [pool.infer(x(1)), pool.infer(x(2))];
    const err = await rejection(pool.infer(x(3)));
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.status).toBe(503);
    await Promise.all([running, ...waiting]);
    const stats = pool.stats!().workers as { queued: number; running: number };
    expect(stats).toMatchObject({ queued: 0, running: 0 });
  });
});

describe('dispose', () => {
  it('ends every worker: running and queued requests fail with UNAVAILABLE, later ones too', async () => {
    const pool = await faulty({ threads: 1 });
    const running = rejection(pool.infer(spin(5_000)));
    const queued = rejection(pool.infer(x(1)));
    await new Promise((r) => setTimeout(r, 50));
    const t0 = performance.now();
    await pool.dispose();
    expect((await running).code).toBe('UNAVAILABLE');
    expect((await queued).code).toBe('UNAVAILABLE');
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(pool.isReady!()).toBe(false);
    expect((await rejection(pool.infer(x(1)))).code).toBe('UNAVAILABLE');
    await pool.dispose();
  });
});

describe('the shared compute budget', () => {
  afterEach(() => setComputeBudget(2));

  it('three pools together never keep more compute threads busy than the budget', async () => {
    setComputeBudget(2);
    const pools = await Promise.all([faulty({ threads: 2 }), faulty({ threads: 2 }), faulty({ threads: 2 })]);
    try {
      const runs = (await Promise.all(pools.flatMap((p) => [1, 2, 3].map(() => p.infer(spin(60)))))).map(
        info,
      );
      expect(runs).toHaveLength(9);
      expect(maxOverlap(runs)).toBeLessThanOrEqual(2);
      expect(computeBudget().peak).toBe(2);
      expect(computeBudget()).toMatchObject({ inUse: 0, queued: 0 });
      // Each pool alone still gets both its threads.
      const alone = (await Promise.all([pools[0]!.infer(spin(200)), pools[0]!.infer(spin(200))])).map(info);
      expect(maxOverlap(alone)).toBe(2);
    } finally {
      await Promise.all(pools.map((p) => p.dispose()));
    }
  });

  it('a request counts its intra-op threads: two of a 2-thread-per-request pool do not overlap', async () => {
    setComputeBudget(2);
    const pool = await faulty({ threads: 2, intraOpThreads: 2 });
    try {
      const runs = (await Promise.all([pool.infer(spin(80)), pool.infer(spin(80))])).map(info);
      expect(maxOverlap(runs)).toBe(1);
    } finally {
      await pool.dispose();
    }
  });

  it('defaults: threads from the budget, intra-op threads so that their product fits it', async () => {
    setComputeBudget(2);
    const pool = await faulty({ intraOpThreads: undefined });
    try {
      expect(pool.metadata().concurrency).toBe(2);
      expect(pool.stats!().workers).toMatchObject({ threads: 2, intraOpThreads: 1 });
    } finally {
      await pool.dispose();
    }
    expect(() => setComputeBudget(0)).toThrow('total must be a positive integer');
  });
});

describe('gate accounting under a mix of outcomes', () => {
  it('every request settles and every slot comes back (successes, errors, aborts, deadlines, overflow)', async () => {
    setComputeBudget(2);
    const pools = await Promise.all([
      faulty({ threads: 2, maxQueue: 20 }),
      faulty({ threads: 1, maxQueue: 20 }),
    ]);
    try {
      let seed = 7;
      const rand = () => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed / 2 ** 31;
      };
      const calls: Promise<string>[] = [];
      for (let i = 0; i < 80; i++) {
        const pool = pools[i % 2]!;
        const r = rand();
        const ac = new AbortController();
        let p: Promise<unknown>;
        if (r < 0.4) p = pool.infer(spin(Math.floor(rand() * 15)));
        else if (r < 0.55) p = pool.infer(x(-1));
        else if (r < 0.7) {
          p = pool.infer(spin(5), { signal: ac.signal });
          setTimeout(() => ac.abort(), Math.floor(rand() * 20));
        } else if (r < 0.85) p = pool.infer(spin(5), { deadline: Date.now() + Math.floor(rand() * 30) });
        else p = pool.infer(x(r), { priority: Math.floor(rand() * 3) });
        calls.push(
          p.then(
            () => 'ok',
            (e: ServeError) => e.code,
          ),
        );
      }
      const codes = await Promise.all(calls);
      expect(codes).toHaveLength(80);
      expect(
        codes.every((c) =>
          ['ok', 'INTERNAL', 'CANCELLED', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED'].includes(c),
        ),
      ).toBe(true);
      expect(codes).toContain('ok');
      expect(codes).toContain('INTERNAL');
      // Work behind an abandoned request may still be finishing; give it a moment.
      await new Promise((r) => setTimeout(r, 200));
      expect(computeBudget()).toMatchObject({ inUse: 0, queued: 0 });
      expect(computeBudget().peak).toBeLessThanOrEqual(2);
      for (const p of pools) expect(p.stats!().workers).toMatchObject({ running: 0, queued: 0 });
      // And the pools still serve.
      expect(Array.from((await pools[0]!.infer(x(1))).y!.data as Float32Array)).toEqual([2, 0, 0, 0]);
    } finally {
      await Promise.all(pools.map((p) => p.dispose()));
    }
  });
});

describe('composition', () => {
  it('a response cache in front answers hits on the main thread, without a worker', async () => {
    const pool = await faulty({ threads: 1 });
    const served = pipeline(pool, responseCache({ max: 100 }));
    try {
      const first = info(await served.infer(x(1, 2)));
      const context: Record<string, unknown> = {};
      const again = info(await served.infer(x(1, 2), { context }));
      expect(again.calls).toBe(first.calls);
      expect(context.cacheHit).toBe(true);
      expect(info(await served.infer(x(3))).calls).toBe(first.calls + 1);
    } finally {
      await served.dispose();
    }
  });

  it('batching in front sends batches to all workers at once (the pool advertises its threads)', async () => {
    const pool = await workerPool({
      backend: { module: FAULTY, export: 'spinner' },
      source: 'unused',
      threads: 2,
    });
    const served = pipeline(pool, batching({ maxBatchSize: 2, maxDelayMs: 5 }));
    try {
      const row = (id: number) => ({
        x: { type: 'float32' as const, dims: [1, 2], data: Float32Array.of(150, id) },
      });
      const contexts = [0, 1, 2, 3].map((): Record<string, unknown> => ({}));
      const outs = await Promise.all(
        [0, 1, 2, 3].map((i) => served.infer(row(i), { context: contexts[i]! })),
      );
      const rows = outs.map((o) => {
        const d = o.y!.data as Float64Array;
        return { threadId: d[0]!, start: d[1]!, end: d[2]!, id: d[3]! };
      });
      expect(rows.map((r) => r.id)).toEqual([0, 1, 2, 3]);
      expect(contexts.map((c) => c.batchSize)).toEqual([2, 2, 2, 2]);
      const batches = [...new Map(rows.map((r) => [`${r.threadId}/${r.start}`, r])).values()];
      expect(batches).toHaveLength(2);
      expect(new Set(batches.map((b) => b.threadId)).size).toBe(2);
      expect(maxOverlap(batches)).toBe(2);
    } finally {
      await served.dispose();
    }
  });
});
