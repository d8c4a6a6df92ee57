import { type ConnectingClient, whenConnected } from '@mlserve/core';

/** A stored feature value; `null` (or an absent property) means the entity lacks that feature. */
export type FeatureValue = number | string | null;

/** One entity's features, by feature name. */
export type FeatureRecord = Record<string, FeatureValue>;

/**
 * Where features live. One method: fetch several entities' features in one round trip.
 *
 * - `keys` are distinct entity keys (the lookup has already deduplicated them).
 * - `features` are the feature names wanted (a store may ignore it and return more).
 * - The result has one entry per key, in the same order: the entity's record, or `null` when the
 *   entity does not exist.
 * - Reject (with anything) when the store cannot answer; the lookup's `onStoreError` policy then
 *   decides. Timeouts are the lookup's job, not the store's.
 *
 * A DynamoDB store is `BatchGetItem` over the keys (100 per call) mapped back into key order; a
 * Firestore store is `getAll()` over document references. See the README for a worked example.
 *
 * @example
 * ```ts
 * const httpStore: FeatureStore = {
 *   async getMany(keys, features) {
 *     const res = await fetch('http://features.internal/batch', { method: 'POST', body: JSON.stringify({ keys, features }) });
 *     const body = (await res.json()) as Record<string, FeatureRecord>;
 *     return keys.map((k) => body[k] ?? null);
 *   },
 * };
 * ```
 */
export interface FeatureStore {
  getMany(keys: string[], features: string[]): Promise<(FeatureRecord | null)[]>;
  /** Releases what the store owns (never a client it was given). */
  close?(): Promise<void>;
}

/** The in-process store: a map you can change while serving. */
export interface MemoryFeatureStore extends FeatureStore {
  set(key: string, record: FeatureRecord): void;
  delete(key: string): boolean;
  readonly size: number;
}

/**
 * Features held in process: tests, small deployments, or a snapshot loaded at startup.
 *
 * @example
 * ```ts
 * const store = memoryFeatureStore({ 'user:1': { age: 31, country: 'NO' } });
 * store.set('user:2', { age: 45, country: 'SE' });
 * ```
 */
export function memoryFeatureStore(
  entries: Map<string, FeatureRecord> | Record<string, FeatureRecord> = {},
): MemoryFeatureStore {
  const map = new Map<string, FeatureRecord>(entries instanceof Map ? entries : Object.entries(entries));
  return {
    async getMany(keys) {
      return keys.map((k) => map.get(k) ?? null);
    },
    set(key, record) {
      map.set(key, record);
    },
    delete: (key) => map.delete(key),
    get size() {
      return map.size;
    },
  };
}

/** The part of an ioredis client (or cluster) the Redis store uses. */
export interface FeatureRedisClient extends ConnectingClient {
  pipeline(): unknown;
  mgetBuffer(...keys: string[]): Promise<(Buffer | null)[]>;
}

interface HmgetPipeline {
  hmget(key: string, ...fields: string[]): unknown;
  exec(): Promise<[Error | null, unknown][] | null>;
}

/** Options of {@link redisFeatureStore}. */
export interface RedisFeatureStoreOptions {
  /**
   * An ioredis client. Give it `enableOfflineQueue: false` (or a small `maxRetriesPerRequest`) so an
   * outage fails fast. A client still making its first connection is waited for (up to
   * `readyTimeoutMs`, and never longer than the lookup's own `timeoutMs`): no need to await `ready`.
   */
  client: FeatureRedisClient;
  /** How long a lookup waits for a client that is still connecting, in ms (default 1000). */
  readyTimeoutMs?: number;
  /** Prepended to every entity key (default `''`), e.g. `user:`. */
  prefix?: string;
  /**
   * `hash` (default): one Redis hash per entity, a field per feature, fetched with a pipeline of
   * HMGET. `binary`: one string per entity holding the features as little-endian float32 in
   * `fields` order (NaN for missing), fetched with one MGET: 4 bytes a feature, one command.
   */
  layout?: 'hash' | 'binary';
  /** `binary` layout only: the feature order of the stored vectors. */
  fields?: readonly string[];
}

/**
 * A Redis feature store on ioredis.
 *
 * @example
 * ```ts
 * const store = redisFeatureStore({ client: new Redis({ enableOfflineQueue: false }), prefix: 'user:' });
 * // HSET user:42 age 31 visits_7d 12
 * ```
 */
export function redisFeatureStore(options: RedisFeatureStoreOptions): FeatureStore {
  const { client, prefix = '', layout = 'hash', fields, readyTimeoutMs = 1000 } = options;
  if (!(Number.isFinite(readyTimeoutMs) && readyTimeoutMs > 0))
    throw new TypeError('redisFeatureStore: options.readyTimeoutMs must be a positive number');
  if (!client || typeof client.pipeline !== 'function')
    throw new TypeError('redisFeatureStore: options.client must be an ioredis client');
  if (layout !== 'hash' && layout !== 'binary')
    throw new TypeError("redisFeatureStore: options.layout must be 'hash' or 'binary'");
  if (layout === 'binary') {
    if (!Array.isArray(fields) || fields.length === 0) {
      throw new TypeError(
        "redisFeatureStore: options.fields must list the stored feature order for layout 'binary'",
      );
    }
    const order = [...fields];
    return {
      async getMany(keys) {
        await whenConnected(client, readyTimeoutMs);
        const values = await client.mgetBuffer(...keys.map((k) => prefix + k));
        return values.map((buf) => (buf ? decodeBinaryFeatures(order, buf) : null));
      },
    };
  }
  return {
    async getMany(keys, features) {
      await whenConnected(client, readyTimeoutMs);
      const p = client.pipeline() as HmgetPipeline;
      for (const k of keys) p.hmget(prefix + k, ...features);
      const results = await p.exec();
      if (!results) throw new Error('redis pipeline was aborted');
      return results.map(([err, values]) => {
        if (err) throw err;
        const list = values as (string | null)[];
        let any = false;
        const record: FeatureRecord = {};
        features.forEach((f, i) => {
          const v = list[i] ?? null;
          if (v !== null) any = true;
          record[f] = v;
        });
        return any ? record : null;
      });
    },
  };
}

/**
 * The bytes the `binary` layout stores: float32 little-endian in `fields` order, NaN for a
 * missing feature. Use it in the job that writes features.
 *
 * @example
 * ```ts
 * await redis.set('user:42', encodeBinaryFeatures(['age', 'visits_7d'], { age: 31, visits_7d: 12 }));
 * ```
 */
export function encodeBinaryFeatures(fields: readonly string[], record: FeatureRecord): Buffer {
  const buf = Buffer.alloc(fields.length * 4);
  fields.forEach((f, i) => {
    const v = record[f];
    buf.writeFloatLE(
      typeof v === 'number' ? v : v === null || v === undefined ? Number.NaN : Number(v),
      i * 4,
    );
  });
  return buf;
}

/** Reads what {@link encodeBinaryFeatures} wrote; a short buffer leaves the rest missing. */
export function decodeBinaryFeatures(fields: readonly string[], buf: Uint8Array): FeatureRecord {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const record: FeatureRecord = {};
  fields.forEach((f, i) => {
    if ((i + 1) * 4 > buf.byteLength) record[f] = null;
    else {
      const v = view.getFloat32(i * 4, true);
      record[f] = Number.isNaN(v) ? null : v;
    }
  });
  return record;
}
