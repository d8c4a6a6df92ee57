import { byteSize, cloneTensor, type Tensors } from '@mlserve/core';
import { LRUCache } from 'lru-cache';

/** Counters a store may report (all optional: a shared store may not know its size). */
export interface CacheStoreStats {
  entries?: number;
  bytes?: number;
  evictions?: number;
  expirations?: number;
  [key: string]: unknown;
}

/**
 * Where a response cache keeps answers. `get` and `set` may be synchronous (in process) or
 * asynchronous (a network store); an asynchronous store is expected to time out on its own and to
 * reject (never hang) when it cannot answer.
 *
 * Ownership: `set` must not keep the tensors it is given (copy or encode them); `get` returns
 * tensors that the caller may keep and mutate.
 */
export interface CacheStore {
  /** A short name for stats and messages (`memory`, `redis`). */
  readonly kind: string;
  get(key: string): Tensors | undefined | Promise<Tensors | undefined>;
  set(key: string, value: Tensors, options: { ttlMs?: number | undefined }): void | Promise<void>;
  delete(key: string): void | Promise<void>;
  clear?(): void | Promise<void>;
  stats?(): CacheStoreStats;
}

/** Bounds of an in-process store: `max` entries and/or `maxSize` bytes, at least one required. */
export type MemoryBounds =
  | { max: number; maxSize?: number | undefined }
  | { maxSize: number; max?: number | undefined };

/** Options of {@link memoryStore}. */
export type MemoryStoreOptions = MemoryBounds & {
  /** Largest single answer kept, in bytes (default: `maxSize`, or unlimited with `max` only). */
  maxEntrySize?: number | undefined;
  /** Called when an entry leaves to make room (LRU eviction), with the bytes it held. */
  onEvict?: ((key: string, bytes: number) => void) | undefined;
};

/**
 * Bytes an entry is charged against `maxSize`: its tensors' data plus a fixed overhead per entry,
 * tensor and name (string elements are charged 16 bytes each on top of their bytes).
 *
 * @example
 * ```ts
 * entrySize(key, { logits }); // 4000 bytes of data for 1000 float32 logits, plus about 200
 * ```
 */
export function entrySize(key: string, value: Tensors): number {
  let n = 64 + key.length;
  for (const name of Object.keys(value)) {
    const t = value[name]!;
    n += 64 + name.length * 2 + t.dims.length * 8 + byteSize(t);
    if (t.type === 'string') n += 16 * t.data.length;
  }
  return n;
}

/** @internal exact messages shared with responseCache. */
export function checkBounds(
  where: string,
  options: { max?: unknown; maxSize?: unknown; maxEntrySize?: unknown },
): void {
  const { max, maxSize, maxEntrySize } = options;
  if (max === undefined && maxSize === undefined) {
    throw new TypeError(
      `${where}: options.max or options.maxSize is required (an unbounded cache grows until the process runs out of memory)`,
    );
  }
  if (max !== undefined && !(Number.isSafeInteger(max) && (max as number) > 0)) {
    throw new TypeError(`${where}: options.max must be a positive integer`);
  }
  if (maxSize !== undefined && !(Number.isSafeInteger(maxSize) && (maxSize as number) > 0)) {
    throw new TypeError(`${where}: options.maxSize must be a positive integer (bytes)`);
  }
  if (maxEntrySize !== undefined && !(Number.isSafeInteger(maxEntrySize) && (maxEntrySize as number) > 0)) {
    throw new TypeError(`${where}: options.maxEntrySize must be a positive integer (bytes)`);
  }
}

/**
 * The in-process store, on lru-cache: least recently used entries leave first once `max` entries
 * or `maxSize` bytes are reached; a TTL per entry. Stored tensors are copies, and `get` hands out
 * fresh copies, so no caller can corrupt what another reads. One store may back several models'
 * caches (keys include the model name and version) to share one byte budget.
 *
 * @example
 * ```ts
 * const shared = memoryStore({ maxSize: 256 * 1024 * 1024 });
 * const a = pipeline(modelA, responseCache({ store: shared, ttlMs: 60_000 }));
 * const b = pipeline(modelB, responseCache({ store: shared, ttlMs: 60_000 }));
 * ```
 */
export function memoryStore(options: MemoryStoreOptions): CacheStore {
  checkBounds('memoryStore', options);
  const { max, maxSize, onEvict } = options;
  let evictions = 0;
  let expirations = 0;
  const lru = new LRUCache<string, Tensors>({
    ...(max !== undefined ? { max } : {}),
    ...(maxSize !== undefined ? { maxSize } : {}),
    // Always sized, so `bytes` is known even when only `max` bounds the store.
    maxEntrySize: options.maxEntrySize ?? maxSize ?? Number.MAX_SAFE_INTEGER,
    sizeCalculation: (value: Tensors, key: string) => entrySize(key, value),
    ttlAutopurge: false,
    updateAgeOnGet: false,
    allowStale: false,
    dispose: (value, key, reason) => {
      if (reason === 'evict') {
        evictions++;
        onEvict?.(key, entrySize(key, value));
      } else if (reason === 'expire') expirations++;
    },
  } as LRUCache.Options<string, Tensors, unknown>);
  return {
    kind: 'memory',
    get(key) {
      const found = lru.get(key);
      if (!found) return undefined;
      const copy: Tensors = {};
      for (const name of Object.keys(found)) copy[name] = cloneTensor(found[name]!);
      return copy;
    },
    set(key, value, { ttlMs }) {
      const copy: Tensors = {};
      for (const name of Object.keys(value)) copy[name] = cloneTensor(value[name]!);
      lru.set(key, copy, ttlMs !== undefined ? { ttl: ttlMs } : undefined);
    },
    delete(key) {
      lru.delete(key);
    },
    clear() {
      lru.clear();
    },
    stats: () => ({ entries: lru.size, bytes: lru.calculatedSize, evictions, expirations }),
  };
}
