import { DEPRECATED_CODE, isServeError, type ServeError } from '@mlserve/core';

/** The ServeError `p` rejects with; fails when it resolves or rejects with anything else. */
export async function rejection(p: Promise<unknown>): Promise<ServeError> {
  try {
    await p;
  } catch (err) {
    if (isServeError(err)) return err;
    throw err;
  }
  throw new Error('expected a rejection');
}

/** The MLSERVE_DEPRECATED warnings `fn` emits (process warnings arrive on the next tick). */
export async function deprecationsOf(fn: () => unknown): Promise<string[]> {
  const seen: string[] = [];
  const listener = (w: Error & { code?: string }) => {
    if (w.code === DEPRECATED_CODE) seen.push(w.message);
  };
  process.on('warning', listener);
  try {
    await fn();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  return seen;
}
