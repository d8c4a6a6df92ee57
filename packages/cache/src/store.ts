import { byteSize, cloneTensor, type Tensor, type Tensors } from '@mlserve/core';
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
  let lastLayout: Layout | undefined;
  const lru = new LRUCache<string, Stored>({
    ...(max !== undefined ? { max } : {}),
    ...(maxSize !== undefined ? { maxSize } : {}),
    // Always sized, so `bytes` is known even when only `max` bounds the store.
    maxEntrySize: options.maxEntrySize ?? maxSize ?? Number.MAX_SAFE_INTEGER,
    sizeCalculation: storedSize,
    ttlAutopurge: false,
    updateAgeOnGet: false,
    allowStale: false,
    dispose: (value, key, reason) => {
      if (reason === 'evict') {
        evictions++;
        onEvict?.(key, storedSize(value, key));
      } else if (reason === 'expire') expirations++;
    },
  } as LRUCache.Options<string, Stored, unknown>);
  return {
    kind: 'memory',
    get(key) {
      const found = lru.get(key);
      if (!found) return undefined;
      if (found instanceof Packed) return unpack(found);
      const copy: Tensors = {};
      for (const name of Object.keys(found)) copy[name] = cloneTensor(found[name]!);
      return copy;
    },
    set(key, value, { ttlMs }) {
      // A one-tensor numeric answer (the common case) is kept as its data's copy plus a layout
      // shared by every answer of the same shape, instead of an object tree per entry that every
      // scavenge copies and promotes.
      const layout = layoutOf(value, lastLayout);
      let stored: Stored;
      if (layout !== undefined) {
        lastLayout = layout;
        stored = pack(layout, value);
      } else {
        const copy: Tensors = {};
        for (const name of Object.keys(value)) copy[name] = cloneTensor(value[name]!);
        stored = copy;
      }
      lru.set(key, stored, ttlMs !== undefined ? { ttl: ttlMs } : undefined);
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

type TypedArrayCtor = new (
  ...args: unknown[]
) => ArrayBufferView & { length: number; set(from: ArrayLike<unknown>): void };

/** The shape of a numeric answer: names, types, dims, data classes and byte lengths. */
class Layout {
  readonly names: string[] = [];
  readonly types: Tensor['type'][] = [];
  readonly dims: (readonly number[])[] = [];
  readonly ctors: TypedArrayCtor[] = [];
  readonly byteLengths: number[] = [];
  /** `entrySize` less the key's part. */
  size = 64;

  /** Whether `value` has exactly this shape. */
  fits(value: Tensors, names: string[]): boolean {
    if (names.length !== this.names.length) return false;
    for (let i = 0; i < names.length; i++) {
      const t = value[names[i]!];
      if (names[i] !== this.names[i] || t === undefined || t.type !== this.types[i]) return false;
      const data = t.data as ArrayBufferView;
      if (data.constructor !== this.ctors[i] || data.byteLength !== this.byteLengths[i]) return false;
      const want = this.dims[i]!;
      const dims = t.dims;
      if (dims.length !== want.length) return false;
      for (let d = 0; d < dims.length; d++) if (dims[d] !== want[d]) return false;
    }
    return true;
  }
}

/** A one-tensor numeric answer as kept: its layout (shared) and a copy of its data. */
class Packed {
  constructor(
    readonly layout: Layout,
    readonly data: ArrayBufferView,
  ) {}
}

type Stored = Tensors | Packed;

function storedSize(value: Stored, key: string): number {
  return value instanceof Packed ? value.layout.size + key.length : entrySize(key, value);
}

/** The layout of a numeric answer (`last` when it fits); undefined when it cannot be packed. */
function layoutOf(value: Tensors, last: Layout | undefined): Layout | undefined {
  const names = Object.keys(value);
  if (names.length !== 1) return undefined;
  if (last?.fits(value, names)) return last;
  const layout = new Layout();
  for (const name of names) {
    const t = value[name]!;
    const data = t.data as unknown;
    // (A Buffer's slice() is a view, not a copy: Buffers take the general path.)
    if (
      t.type === 'string' ||
      !ArrayBuffer.isView(data) ||
      data instanceof DataView ||
      Buffer.isBuffer(data)
    ) {
      return undefined;
    }
    const view = data as ArrayBufferView & { length: number };
    layout.names.push(name);
    layout.types.push(t.type);
    layout.dims.push([...t.dims]);
    layout.ctors.push(view.constructor as TypedArrayCtor);
    layout.byteLengths.push(view.byteLength);
    layout.size += 64 + name.length * 2 + t.dims.length * 8 + byteSize(t);
  }
  return layout;
}

function pack(layout: Layout, value: Tensors): Packed {
  return new Packed(
    layout,
    (value[layout.names[0]!]!.data as unknown as { slice(): ArrayBufferView }).slice(),
  );
}

/** Fresh tensors (the caller may keep and mutate them) from a packed answer. */
function unpack(p: Packed): Tensors {
  const layout = p.layout;
  const data = (p.data as unknown as { slice(): ArrayBufferView }).slice();
  return {
    [layout.names[0]!]: { type: layout.types[0]!, dims: [...layout.dims[0]!], data } as unknown as Tensor,
  };
}
