import { fileURLToPath } from 'node:url';
import type { Tensor } from '@mlserve/core';

/** The fixture loaders, as file paths. */
export const FAULTY = fileURLToPath(new URL('./fixtures/faulty-loader.mjs', import.meta.url));
export const ORT_LOADER = fileURLToPath(new URL('./fixtures/ort-loader.mjs', import.meta.url));

/** Input "x" of the faulty model: one row of four floats. */
export function x(...values: number[]): { x: Tensor } {
  const row = Float32Array.from([...values, 0, 0, 0, 0].slice(0, 4));
  return { x: { type: 'float32', dims: [1, 4], data: row } };
}

/** A request that spins its worker for `ms`. */
export const spin = (ms: number) => x(-4, ms);

/** [threadId, start, end, calls] of a faulty-model answer. */
export function info(out: Record<string, Tensor>): {
  threadId: number;
  start: number;
  end: number;
  calls: number;
} {
  const d = out.info!.data as Float64Array;
  return { threadId: d[0]!, start: d[1]!, end: d[2]!, calls: d[3]! };
}

/** The most intervals that overlap at any instant. */
export function maxOverlap(intervals: { start: number; end: number }[]): number {
  const events = intervals.flatMap((i) => [
    [i.start, 1],
    [i.end, -1],
  ]);
  events.sort((a, b) => a[0]! - b[0]! || a[1]! - b[1]!);
  let now = 0;
  let most = 0;
  for (const [, d] of events) {
    now += d!;
    most = Math.max(most, now);
  }
  return most;
}
