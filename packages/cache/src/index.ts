export {
  type CacheCommonOptions,
  type CacheEvent,
  type CacheStats,
  type InProcessCacheOptions,
  type ResponseCacheOptions,
  responseCache,
  type StoreCacheOptions,
} from './cache.js';
export { CODEC_VERSION, decodeTensors, encodeTensors } from './codec.js';
export { cacheKey, type KeyScope } from './key.js';
export { type RedisClientLike, type RedisStoreOptions, redisStore } from './redis-store.js';
export {
  type CacheStore,
  type CacheStoreStats,
  entrySize,
  type MemoryBounds,
  type MemoryStoreOptions,
  memoryStore,
} from './store.js';
export { type TieredStoreOptions, tieredStore } from './tiered-store.js';
