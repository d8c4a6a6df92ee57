import { fileURLToPath } from 'node:url';
import type { Model, ServeError } from '@mlserve/core';
import { expect } from 'vitest';

/** A fixture model written by fixtures/make-fixtures.py. */
export function fixture(name: string): string {
  return fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));
}

/** Index of the largest value in each row of a [rows, cols] float array. */
export function argmaxRows(data: Float32Array, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < data.length / cols; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (data[r * cols + c]! > data[r * cols + best]!) best = c;
    out.push(best);
  }
  return out;
}

/** Awaits a rejection and checks it is a ServeError with the code; returns it for more checks. */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: string,
  message?: RegExp,
): Promise<ServeError> {
  let caught: unknown;
  try {
    await promise;
  } catch (err) {
    caught = err;
  }
  expect(caught, 'expected a rejection').toBeDefined();
  const e = caught as ServeError;
  expect(e.name).toBe('ServeError');
  expect(e.code).toBe(code);
  if (message) expect(e.message).toMatch(message);
  return e;
}

export type Loader = (source: string | Uint8Array | URL | ArrayBuffer, options?: object) => Promise<Model>;
