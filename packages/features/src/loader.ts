import { internal, unavailable } from '@mlserve/core';
import { LRUCache } from 'lru-cache';
import type { FeatureRecord, FeatureStore } from './store.js';

/** Counters of a {@link Loader}. */
export interface LoaderStats {
  /** Store calls made. */
  roundTrips: number;
  /** Keys sent to the store (after merging and deduplication). */
  keysFetched: number;
  /** Key lookups answered by a store call another lookup had already started. */
  joined: number;
  cacheHits: number;
  storeErrors: number;
  /** Store calls abandoned because they took longer than the lookup timeout. */
  callTimeouts: number;
  /** Keys whose store call is in flight now. */
  inflight?: number;
}

interface Pending {
  resolve: (r: FeatureRecord | null) => void;
  reject: (e: unknown) => void;
}

/** Marks a cached "entity does not exist" (lru-cache cannot store null). */
const ABSENT: FeatureRecord = Object.freeze({}) as FeatureRecord;

/**
 * Merges the key lookups of one event-loop turn into one store call (deduplicated, split into
 * chunks of `maxKeys`), joins lookups of keys already in flight, and keeps an optional short-TTL
 * LRU of answers (including "no such entity").
 */
export class Loader {
  readonly #store: FeatureStore;
  readonly #features: string[];
  readonly #maxKeys: number;
  readonly #cache: LRUCache<string, FeatureRecord> | undefined;
  #pending = new Map<string, Pending>();
  #inflight = new Map<string, Promise<FeatureRecord | null>>();
  #scheduled = false;
  readonly #callTimeoutMs: number;
  readonly counters: LoaderStats = {
    roundTrips: 0,
    keysFetched: 0,
    joined: 0,
    cacheHits: 0,
    storeErrors: 0,
    callTimeouts: 0,
  };

  constructor(
    store: FeatureStore,
    features: string[],
    options: { maxKeys: number; callTimeoutMs: number; cache?: { max: number; ttlMs: number } | undefined },
  ) {
    this.#callTimeoutMs = options.callTimeoutMs;
    this.#store = store;
    this.#features = features;
    this.#maxKeys = options.maxKeys;
    if (options.cache) {
      this.#cache = new LRUCache<string, FeatureRecord>({ max: options.cache.max, ttl: options.cache.ttlMs });
    }
  }

  /** Keys whose store call is in flight now. */
  get inflight(): number {
    return this.#inflight.size;
  }

  /** The cached answer for `key`: a record, null (known absent), or undefined (not cached). */
  cached(key: string): FeatureRecord | null | undefined {
    const hit = this.#cache?.get(key);
    if (hit === undefined) return undefined;
    this.counters.cacheHits++;
    return hit === ABSENT ? null : hit;
  }

  load(key: string): Promise<FeatureRecord | null> {
    const inflight = this.#inflight.get(key);
    if (inflight) {
      this.counters.joined++;
      return inflight;
    }
    const promise = new Promise<FeatureRecord | null>((resolve, reject) => {
      this.#pending.set(key, { resolve, reject });
    });
    // A lookup whose request gave up (timeout) must not leave an unhandled rejection behind.
    promise.catch(() => undefined);
    this.#inflight.set(key, promise);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.#flush());
    }
    return promise;
  }

  /** One store call for these keys now, not merged with other requests (`merge: false`). */
  loadNow(keys: string[]): Promise<(FeatureRecord | null)[]> {
    const batch = new Map<string, Pending>();
    const promises = keys.map(
      (k) =>
        new Promise<FeatureRecord | null>((resolve, reject) => {
          batch.set(k, { resolve, reject });
        }),
    );
    const all = Promise.all(promises);
    all.catch(() => undefined);
    this.#fetch(keys, batch, false);
    return all;
  }

  #flush(): void {
    this.#scheduled = false;
    const batch = this.#pending;
    this.#pending = new Map();
    const keys = [...batch.keys()];
    for (let i = 0; i < keys.length; i += this.#maxKeys) this.#fetch(keys.slice(i, i + this.#maxKeys), batch);
  }

  #fetch(keys: string[], batch: Map<string, Pending>, shared = true): void {
    this.counters.roundTrips++;
    this.counters.keysFetched += keys.length;
    let settled = false;
    const settle = (key: string) => {
      if (shared && this.#inflight.get(key) !== undefined) this.#inflight.delete(key);
      return batch.get(key)!;
    };
    let call: Promise<(FeatureRecord | null)[]>;
    try {
      call = this.#store.getMany(keys, this.#features);
    } catch (err) {
      call = Promise.reject(err);
    }
    // A store that never answers must not pin its keys in flight (and their waiters) for ever.
    const timer = setTimeout(() => {
      settled = true;
      this.counters.callTimeouts++;
      const err = unavailable(`feature store did not answer within ${this.#callTimeoutMs} ms`);
      for (const k of keys) settle(k).reject(err);
    }, this.#callTimeoutMs);
    call.then(
      (records) => {
        clearTimeout(timer);
        if (settled) {
          // Too late for its requests, but still good for the next ones.
          if (Array.isArray(records) && records.length === keys.length) {
            for (const [i, k] of keys.entries()) this.#cache?.set(k, records[i] ?? ABSENT);
          }
          return;
        }
        if (!Array.isArray(records) || records.length !== keys.length) {
          this.counters.storeErrors++;
          const err = internal(
            `feature store returned ${Array.isArray(records) ? records.length : 'no'} records for ${keys.length} keys`,
          );
          for (const k of keys) settle(k).reject(err);
          return;
        }
        keys.forEach((k, i) => {
          const r = records[i] ?? null;
          this.#cache?.set(k, r ?? ABSENT);
          settle(k).resolve(r);
        });
      },
      (err) => {
        clearTimeout(timer);
        this.counters.storeErrors++;
        if (!settled) for (const k of keys) settle(k).reject(err);
      },
    );
  }
}
