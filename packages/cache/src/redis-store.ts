import { type ConnectingClient, type Tensors, unavailable, whenConnected } from '@mlserve/core';
import { decodeTensors, encodeTensors } from './codec.js';
import type { CacheStore, CacheStoreStats } from './store.js';

/**
 * The few ioredis commands the store uses (an ioredis `Redis` or `Cluster` satisfies it). Declared
 * here so that ioredis stays an optional peer dependency.
 */
export interface RedisClientLike extends ConnectingClient {
  getBuffer(key: string): Promise<Buffer | null>;
  set(key: string, value: Buffer, mode: 'PX', ttlMs: number): Promise<unknown>;
  set(key: string, value: Buffer): Promise<unknown>;
  del(...keys: string[]): Promise<number>;
}

/** Options of {@link redisStore}. */
export interface RedisStoreOptions {
  /**
   * An ioredis client. Create it with `enableOfflineQueue: false` (commands fail at once while
   * disconnected instead of queueing) and a small `maxRetriesPerRequest`: a cache must never wait
   * for Redis. A client that is still making its first connection is waited for, within
   * `timeoutMs`: there is no need to await its `ready` event before serving.
   */
  client: RedisClientLike;
  /** Prepended to every key, one per deployment or model set (default `mlserve:cache:`). */
  prefix?: string;
  /**
   * How long a lookup or write may take before it counts as failed, in ms (default 50). A lookup
   * that times out is served as a miss; this also covers a connection that hangs without closing,
   * and a client still connecting (the command waits for `ready` within this budget).
   */
  timeoutMs?: number;
  /**
   * A circuit breaker: after `failures` failed or timed-out commands in a row, the store stops
   * calling Redis for `cooldownMs` (lookups read as misses at once, writes are dropped), so that a
   * hung Redis costs each request nothing rather than `timeoutMs`. Default
   * `{ failures: 5, cooldownMs: 1000 }`; `false` turns it off.
   */
  breaker?: { failures?: number; cooldownMs?: number } | false;
}

/**
 * A store in Redis, so replicas behind a load balancer share one cache. Answers go in a compact
 * binary encoding (a small header, then the raw little-endian tensor bytes), written with
 * `SET key value PX ttl`. Every command is bounded by `timeoutMs`; failures reject, and
 * `responseCache` turns them into misses and a `storeErrors` count: a request never fails because
 * of Redis. The store does not own the client: close it yourself.
 *
 * @example
 * ```ts
 * import Redis from 'ioredis';
 * const client = new Redis(process.env.REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1 });
 * const served = pipeline(model, responseCache({ store: redisStore({ client, prefix: 'prod:mnist:' }), ttlMs: 600_000 }));
 * ```
 */
export function redisStore({
  client,
  prefix = 'mlserve:cache:',
  timeoutMs = 50,
  breaker = {},
}: RedisStoreOptions): CacheStore {
  if (!client || typeof client.getBuffer !== 'function' || typeof client.set !== 'function') {
    throw new TypeError('redisStore: options.client must be an ioredis client');
  }
  if (typeof prefix !== 'string') throw new TypeError('redisStore: options.prefix must be a string');
  if (!(typeof timeoutMs === 'number' && timeoutMs > 0 && Number.isFinite(timeoutMs))) {
    throw new TypeError('redisStore: options.timeoutMs must be a positive number');
  }
  const threshold = breaker === false ? Number.POSITIVE_INFINITY : (breaker.failures ?? 5);
  const cooldownMs = breaker === false ? 0 : (breaker.cooldownMs ?? 1000);
  if (breaker !== false) {
    if (!(Number.isSafeInteger(threshold) && threshold > 0)) {
      throw new TypeError('redisStore: options.breaker.failures must be a positive integer');
    }
    if (!(Number.isFinite(cooldownMs) && cooldownMs > 0)) {
      throw new TypeError('redisStore: options.breaker.cooldownMs must be a positive number');
    }
  }
  let bytesRead = 0;
  let bytesWritten = 0;
  let timeouts = 0;
  let failuresInARow = 0;
  let openUntil = 0;
  let breakerOpens = 0;
  let shortCircuited = 0;

  const isOpen = () => openUntil !== 0 && performance.now() < openUntil;
  const failed = () => {
    failuresInARow++;
    if (failuresInARow >= threshold) {
      if (!isOpen()) breakerOpens++;
      openUntil = performance.now() + cooldownMs;
    }
  };
  const succeeded = () => {
    failuresInARow = 0;
    openUntil = 0;
  };

  /** Runs `command` now, or once a connecting client is ready (the wait counts against `timeoutMs`). */
  function send<T>(command: () => Promise<T>): Promise<T> {
    const connecting = whenConnected(client, timeoutMs);
    return connecting ? connecting.then(command) : command();
  }

  function bounded<T>(command: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        timeouts++;
        failed();
        reject(unavailable(`redis ${what} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      command.then(
        (v) => {
          clearTimeout(timer);
          succeeded();
          resolve(v);
        },
        (err: unknown) => {
          clearTimeout(timer);
          failed();
          reject(
            unavailable(`redis ${what} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err }),
          );
        },
      );
    });
  }

  return {
    kind: 'redis',
    async get(key): Promise<Tensors | undefined> {
      if (isOpen()) {
        shortCircuited++;
        return undefined;
      }
      const raw = await bounded(
        send(() => client.getBuffer(prefix + key)),
        'GET',
      );
      if (raw === null) return undefined;
      bytesRead += raw.byteLength;
      return decodeTensors(raw);
    },
    set(key, value, { ttlMs }) {
      if (isOpen()) {
        shortCircuited++;
        return;
      }
      // Encoded synchronously: the value may be handed to a caller right after this returns.
      const bytes = encodeTensors(value);
      bytesWritten += bytes.byteLength;
      const command = send(() =>
        ttlMs !== undefined ? client.set(prefix + key, bytes, 'PX', ttlMs) : client.set(prefix + key, bytes),
      );
      return bounded(command, 'SET').then(() => undefined);
    },
    delete(key) {
      return bounded(
        send(() => client.del(prefix + key)),
        'DEL',
      ).then(() => undefined);
    },
    stats: (): CacheStoreStats => ({
      bytesRead,
      bytesWritten,
      timeouts,
      breakerOpen: isOpen(),
      breakerOpens,
      shortCircuited,
    }),
  };
}
