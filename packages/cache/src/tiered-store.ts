import type { Tensors } from '@mlserve/core';
import type { CacheStore, CacheStoreStats } from './store.js';

/** Options of {@link tieredStore}. */
export interface TieredStoreOptions {
  /** The fast tier, usually a small `memoryStore` in this process. */
  near: CacheStore;
  /** The shared tier, usually a `redisStore`. */
  far: CacheStore;
  /**
   * The longest an answer stays in `near`, ms (default 60 000; never longer than the cache's
   * `ttlMs`). An answer copied from `far` does not know how long it has left there, so this bounds
   * how long a replica can keep serving an entry that was deleted or expired in `far`.
   */
  nearTtlMs?: number;
}

function isPromise<T>(v: unknown): v is Promise<T> {
  return typeof (v as { then?: unknown } | undefined)?.then === 'function';
}

/**
 * Two stores as one: lookups try `near` first and then `far`, copying a far hit into `near`; writes
 * go to both. With a small in-process `near` in front of Redis, hot answers are served without a
 * network round trip while replicas still share everything through Redis. A near hit is answered
 * synchronously; a far failure reads as a miss (as any store failure does).
 *
 * @example
 * ```ts
 * const store = tieredStore({
 *   near: memoryStore({ maxSize: 32 * 1024 * 1024 }),
 *   far: redisStore({ client, prefix: 'prod:mnist:' }),
 *   nearTtlMs: 60_000,
 * });
 * const served = pipeline(model, responseCache({ store, ttlMs: 3_600_000 }));
 * ```
 */
export function tieredStore({ near, far, nearTtlMs = 60_000 }: TieredStoreOptions): CacheStore {
  if (!near || typeof near.get !== 'function' || !far || typeof far.get !== 'function') {
    throw new TypeError('tieredStore: options.near and options.far must be CacheStores');
  }
  if (!(Number.isSafeInteger(nearTtlMs) && nearTtlMs > 0)) {
    throw new TypeError('tieredStore: options.nearTtlMs must be a positive integer (milliseconds)');
  }
  let nearHits = 0;
  let farHits = 0;
  const nearTtl = (ttlMs: number | undefined) =>
    ttlMs === undefined ? nearTtlMs : Math.min(ttlMs, nearTtlMs);
  const keepNear = (key: string, value: Tensors, ttlMs: number | undefined) => {
    try {
      const done = near.set(key, value, { ttlMs: nearTtl(ttlMs) });
      if (isPromise(done)) done.catch(() => {});
    } catch {
      // The near tier is an optimisation: its failure never fails a lookup.
    }
  };
  return {
    kind: `tiered(${near.kind},${far.kind})`,
    get(key) {
      const close = near.get(key);
      if (!isPromise<Tensors | undefined>(close)) {
        if (close) {
          nearHits++;
          return close;
        }
        return fromFar(key);
      }
      return close.then((found) => {
        if (found) {
          nearHits++;
          return found;
        }
        return fromFar(key);
      });
    },
    set(key, value, options) {
      keepNear(key, value, options.ttlMs);
      return far.set(key, value, options);
    },
    async delete(key) {
      await Promise.all([near.delete(key), far.delete(key)]);
    },
    async clear() {
      await Promise.all([near.clear?.(), far.clear?.()]);
    },
    stats(): CacheStoreStats {
      const n = near.stats?.() ?? {};
      const f = far.stats?.() ?? {};
      return { ...f, ...n, nearHits, farHits, near: n, far: f };
    },
  };

  async function fromFar(key: string): Promise<Tensors | undefined> {
    const found = await far.get(key);
    if (!found) return undefined;
    farHits++;
    // `found` goes to the caller; the near tier keeps its own copy.
    keepNear(key, found, undefined);
    return found;
  }
}
