import { createRequire } from 'node:module';
import { redisStore } from '@mlserve/cache';
import { isModuleNotFound, notInstalled } from '@mlserve/core';
import type { CacheRedisConfig } from '@mlserve/repository';

/** The Redis clients a server opened for its response caches, one per URL. */
export interface RedisCaches {
  /** The `cacheStore` option of the repository. */
  cacheStore: (name: string, redis: CacheRedisConfig | undefined) => object | undefined;
  /** Waits for every client to connect (a bad URL fails here, once, at start). */
  ready(): Promise<void>;
  close(): Promise<void>;
}

interface Client {
  getBuffer(key: string): Promise<Buffer | null>;
  set(...args: unknown[]): Promise<unknown>;
  del(...keys: string[]): Promise<number>;
  quit(): Promise<unknown>;
  disconnect(): void;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  status: string;
}

/**
 * Makes the Redis response-cache stores `mlserve serve --cache-redis` and config.json's
 * `cache.redis` ask for: an ioredis client per URL (no offline queue, one retry: a cache never
 * waits for Redis; it reconnects in the background) and a `redisStore` per model with the
 * model's timeout and prefix, else the flag's. A model whose config.json has no `cache` is not cached.
 */
export function redisCaches(
  defaults: { url?: string; timeoutMs?: number; prefix?: string },
  warn: (line: string) => void,
): RedisCaches {
  let Redis: new (url: string, options: object) => unknown;
  const load = () => {
    try {
      // ioredis is CommonJS: required on first use (synchronously: a config.json's cache.redis
      // is met while the repository builds its pipelines), so servers without Redis never load it.
      Redis ??= createRequire(import.meta.url)('ioredis') as typeof Redis;
    } catch (err) {
      // Not installed: the same UNAVAILABLE as core's importOptional, install command included.
      if (isModuleNotFound(err, 'ioredis'))
        throw notInstalled('ioredis', { neededBy: 'a Redis response cache' }, err);
      throw err;
    }
    return Redis;
  };
  const clients = new Map<string, Client>();
  const client = (url: string): Client => {
    let c = clients.get(url);
    if (!c) {
      const created = new (load())(url, {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        connectTimeout: 2000,
        retryStrategy: (times: number) => Math.min(2000, 100 * times),
      }) as unknown as Client;
      let reported = false;
      created.on('error', (e: unknown) => {
        if (!reported)
          warn(`mlserve: cache Redis ${url}: ${(e as Error).message} (answers are computed meanwhile)`);
        reported = true;
      });
      created.on('ready', () => {
        reported = false;
      });
      clients.set(url, created);
      c = created;
    }
    return c;
  };
  if (defaults.url) client(defaults.url);
  return {
    cacheStore(_name, redis) {
      const url = redis?.url ?? defaults.url;
      if (!url) return undefined;
      const timeoutMs = redis?.timeoutMs ?? defaults.timeoutMs;
      const prefix = redis?.prefix ?? defaults.prefix;
      return redisStore({
        client: client(url) as never,
        ...(timeoutMs !== undefined && { timeoutMs }),
        ...(prefix !== undefined && { prefix }),
      });
    },
    async ready() {
      await Promise.all(
        [...clients.entries()].map(
          ([url, c]) =>
            new Promise<void>((resolve) => {
              if (c.status === 'ready') return resolve();
              const timer = setTimeout(() => {
                warn(`mlserve: cache Redis ${url} not reachable yet; serving without it until it is`);
                resolve();
              }, 3000);
              c.once('ready', () => {
                clearTimeout(timer);
                resolve();
              });
            }),
        ),
      );
    },
    async close() {
      await Promise.all(
        [...clients.values()].map((c) =>
          c.status === 'ready' ? c.quit().catch(() => c.disconnect()) : Promise.resolve(c.disconnect()),
        ),
      );
    },
  };
}
