import { execFileSync } from 'node:child_process';
import type { Model } from '@mlserve/core';
import { rejection } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { workerPool } from '../src/index.js';
import { FAULTY, info, maxOverlap, spin, x } from './helpers.js';

/** Child processes of this process running the built child.js. */
function childProcesses(): number {
  return execFileSync('ps', ['-eo', 'ppid=,args='], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.trim().startsWith(`${process.pid} `) && line.includes('child.js')).length;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("isolation: 'process'", () => {
  let pool: Model;
  beforeAll(async () => {
    pool = await workerPool({
      backend: { module: FAULTY },
      source: 'unused',
      threads: 2,
      intraOpThreads: 1,
      isolation: 'process',
    });
  });
  afterAll(() => pool.dispose());

  it('runs requests in child processes; the caller keeps its arrays (they are copied)', async () => {
    const data = Float32Array.of(1, 2, 3, 4);
    const context: Record<string, unknown> = {};
    const out = await pool.infer({ x: { type: 'float32', dims: [1, 4], data } }, { context });
    expect(Array.from(out.y!.data as Float32Array)).toEqual([2, 4, 6, 8]);
    expect(Array.from(data)).toEqual([1, 2, 3, 4]);
    expect(context.worker).not.toBe(process.pid);
    expect(alive(context.worker as number)).toBe(true);
    expect(pool.metadata()).toMatchObject({ concurrency: 2, backend: 'worker-pool(test/faulty)' });
  });

  it("warmup() runs the model's warmup in every child", async () => {
    await pool.warmup!();
    const contexts = [{}, {}] as Record<string, unknown>[];
    await Promise.all(contexts.map((context) => pool.infer(spin(80), { context })));
    expect(new Set(contexts.map((c) => c.worker)).size).toBe(2);
    expect(contexts.map((c) => c.warmups)).toEqual([1, 1]);
  });

  it('runs `threads` requests at once', async () => {
    const runs = (await Promise.all([pool.infer(spin(150)), pool.infer(spin(150))])).map(info);
    expect(maxOverlap(runs)).toBe(2);
  });

  it("keeps a ServeError's code across the process boundary", async () => {
    const err = await rejection(pool.infer(x(-2)));
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT', message: 'bad pixel', details: { pixel: 3 } });
  });

  it('survives a native crash: only that request fails (UNAVAILABLE), the process is replaced', async () => {
    const crashed = await rejection(pool.infer(x(-6)));
    expect(crashed.code).toBe('UNAVAILABLE');
    expect(crashed.message).toContain('SIGABRT');
    const outs = await Promise.all([pool.infer(x(1)), pool.infer(x(2))]);
    expect(outs.map((o) => (o.y!.data as Float32Array)[0])).toEqual([2, 4]);
    expect((pool.stats!().workers as { workerDeaths: number }).workerDeaths).toBe(1);
  });

  it('dispose ends every child process', async () => {
    const own = await workerPool({
      backend: { module: FAULTY },
      source: 'u',
      threads: 2,
      isolation: 'process',
    });
    const contexts = [{}, {}] as Record<string, unknown>[];
    await Promise.all(contexts.map((context) => own.infer(spin(50), { context })));
    const pids = contexts.map((c) => c.worker as number);
    expect(new Set(pids).size).toBe(2);
    expect(pids.every(alive)).toBe(true);
    expect(childProcesses()).toBeGreaterThanOrEqual(2);
    await own.dispose();
    expect(pids.some(alive)).toBe(false);
    expect((await rejection(own.infer(x(1)))).code).toBe('UNAVAILABLE');
  });

  it("fails to start with the loader's error, and leaves no process behind", async () => {
    const before = childProcesses();
    const err = await rejection(
      workerPool({
        backend: { module: FAULTY },
        source: 'u',
        options: { failLoad: true },
        isolation: 'process',
      }),
    );
    expect(err.code).toBe('NOT_FOUND');
    expect(childProcesses()).toBe(before);
  });
});
