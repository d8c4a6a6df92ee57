import type { Tensor } from '@mlserve/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareTransfer, workerPool } from '../src/index.js';
import { FAULTY } from './helpers.js';

const f32 = (data: Float32Array): { x: Tensor } => ({ x: { type: 'float32', dims: [1, 4], data } });

describe('prepareTransfer', () => {
  it('moves a typed array that spans its whole buffer, once even when two tensors share it', () => {
    const data = Float32Array.of(1, 2, 3, 4);
    const { tensors, transferList } = prepareTransfer({ a: f32(data).x, b: f32(data).x });
    expect(transferList).toEqual([data.buffer]);
    expect(tensors.a!.data).toBe(data);
  });

  it('copies a view into a larger buffer, so the neighbours stay whole', () => {
    const big = new Float32Array(16).fill(7);
    const view = big.subarray(4, 8);
    const { tensors, transferList } = prepareTransfer(f32(view));
    expect(tensors.x!.data).not.toBe(view);
    expect(transferList).toHaveLength(1);
    expect(transferList[0]).not.toBe(big.buffer);
    expect((tensors.x!.data as Float32Array).byteLength).toBe(16);
  });

  it("copies a Node Buffer (the shared pool's slices are not transferable)", () => {
    const buf = Buffer.from([1, 2, 3, 4]);
    const { tensors, transferList } = prepareTransfer({ u: { type: 'uint8', dims: [4], data: buf } });
    expect(Buffer.isBuffer(tensors.u!.data)).toBe(false);
    expect(Array.from(tensors.u!.data as Uint8Array)).toEqual([1, 2, 3, 4]);
    expect(transferList[0]).not.toBe(buf.buffer);
  });

  it('copies everything with copy: true, and leaves shared memory and strings alone', () => {
    const data = Float32Array.of(1, 2, 3, 4);
    const shared = new Float32Array(new SharedArrayBuffer(16));
    const copied = prepareTransfer({ a: f32(data).x, s: f32(shared).x }, { copy: true });
    expect(copied.tensors.a!.data).not.toBe(data);
    expect(copied.tensors.s!.data).toBe(shared);
    expect(copied.transferList).toHaveLength(1);
    const words = prepareTransfer({ w: { type: 'string', dims: [2], data: ['a', 'b'] } });
    expect(words.transferList).toEqual([]);
    expect(words.tensors.w!.data).toEqual(['a', 'b']);
  });
});

describe('buffers crossing to a worker pool', () => {
  let pool: Awaited<ReturnType<typeof workerPool>>;
  let copying: Awaited<ReturnType<typeof workerPool>>;
  beforeAll(async () => {
    [pool, copying] = await Promise.all([
      workerPool({ backend: { module: FAULTY }, source: 'unused', threads: 1 }),
      workerPool({ backend: { module: FAULTY }, source: 'unused', threads: 1, copyInputs: true }),
    ]);
  });
  afterAll(() => Promise.all([pool.dispose(), copying.dispose()]));

  it("moves a whole-buffer input: the caller's array is detached", async () => {
    const data = Float32Array.of(1, 2, 3, 4);
    const out = await pool.infer(f32(data));
    expect(Array.from(out.y!.data as Float32Array)).toEqual([2, 4, 6, 8]);
    expect(data.byteLength).toBe(0);
    expect(data.buffer.byteLength).toBe(0);
  });

  it('with copyInputs the caller keeps its array', async () => {
    const data = Float32Array.of(1, 2, 3, 4);
    const out = await copying.infer(f32(data));
    expect(Array.from(out.y!.data as Float32Array)).toEqual([2, 4, 6, 8]);
    expect(Array.from(data)).toEqual([1, 2, 3, 4]);
  });

  it('copies a view into a larger buffer (an HTTP body): the body and its other parts stay intact', async () => {
    const body = new Float32Array(12).map((_, i) => i + 1);
    const results = await Promise.all([
      pool.infer(f32(body.subarray(0, 4))),
      pool.infer(f32(body.subarray(4, 8))),
    ]);
    expect(results.map((r) => Array.from(r.y!.data as Float32Array))).toEqual([
      [2, 4, 6, 8],
      [10, 12, 14, 16],
    ]);
    expect(body.byteLength).toBe(48);
    expect(Array.from(body)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });
});
