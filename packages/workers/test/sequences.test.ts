import type { Model, SequenceInfo, Tensors } from '@mlserve/core';
import { STATEFUL_LOADER as STATEFUL } from '@mlserve/test-utils';
import { afterAll, describe, expect, it } from 'vitest';
import { workerPool } from '../src/index.js';
import type { WorkerPoolStats } from '../src/pool.js';

const x = (v: number): Tensors => ({ x: { type: 'float32', dims: [1], data: new Float32Array([v]) } });

async function step(model: Model, v: number, sequence: SequenceInfo) {
  const out = await model.infer(x(v), { sequence });
  return { total: out.total!.data[0] as number, worker: out.worker!.data[0] as number };
}

/** 8 sequences of 6 steps each, every sequence's steps sent at once, all sequences at once. */
async function interleaved(model: Model) {
  const ids = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? i + 1 : `seq-${i}`));
  return Promise.all(
    ids.map((id, k) =>
      Promise.all(
        [1, 2, 3, 4, 5, 6].map((n) => step(model, n * (k + 1), { id, start: n === 1, end: n === 6 })),
      ),
    ),
  );
}

describe.each(['thread', 'process'] as const)('sticky sequences (isolation %s)', (isolation) => {
  const pools: Model[] = [];
  afterAll(async () => {
    await Promise.all(pools.map((p) => p.dispose()));
  });

  it('keeps each sequence on one worker, in order, and spreads sequences over the workers', async () => {
    const model = await workerPool({
      backend: { module: STATEFUL, export: 'loadAccumulator' },
      source: 'accumulator',
      threads: 2,
      isolation,
    });
    pools.push(model);
    const results = await interleaved(model);
    const workers = new Set<number>();
    results.forEach((steps, k) => {
      // 1, 1+2, 1+2+3, ... times (k + 1): only right if every step saw the previous one's state.
      expect(steps.map((s) => s.total)).toEqual([1, 3, 6, 10, 15, 21].map((t) => t * (k + 1)));
      expect(new Set(steps.map((s) => s.worker)).size).toBe(1);
      workers.add(steps[0]!.worker);
    });
    expect(workers.size).toBe(2);
    // Every sequence ended: the pool forgot them, and the workers freed their state.
    const stats = model.stats?.().workers as WorkerPoolStats;
    expect(stats.sequences.open).toBe(0);
    const e = await model.infer(x(1), { sequence: { id: 1 } }).catch((err: unknown) => err);
    expect((e as { code?: string }).code).toBe('FAILED_PRECONDITION');
  });

  it('counts open sequences per worker and still runs plain requests', async () => {
    const model = await workerPool({
      backend: { module: STATEFUL, export: 'loadAccumulator' },
      source: 'accumulator',
      threads: 2,
      isolation,
    });
    pools.push(model);
    for (let i = 0; i < 4; i++) await step(model, 1, { id: i + 100, start: true });
    const stats = model.stats?.().workers as WorkerPoolStats;
    expect(stats.sequences.open).toBe(4);
    expect(Object.values(stats.sequences.byWorker).sort()).toEqual([2, 2]);
    // A request without a sequence is a sequence of one, on any worker.
    expect((await model.infer(x(5))).total!.data[0]).toBe(5);
    expect((await step(model, 2, { id: 100, end: true })).total).toBe(3);
  });
});

describe('workerPool sequenceIdleTimeoutMs', () => {
  it('is validated', async () => {
    await expect(
      workerPool({
        backend: { module: STATEFUL, export: 'loadAccumulator' },
        source: 'a',
        sequenceIdleTimeoutMs: 0,
      }),
    ).rejects.toThrow(/sequenceIdleTimeoutMs/);
  });
});
