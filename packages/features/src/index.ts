export type { LoaderStats } from './loader.js';
export {
  type FeatureLookupOptions,
  type FeatureLookupStats,
  featureLookup,
  type LookupFeature,
} from './lookup.js';
export {
  decodeBinaryFeatures,
  encodeBinaryFeatures,
  type FeatureRecord,
  type FeatureRedisClient,
  type FeatureStore,
  type FeatureValue,
  type MemoryFeatureStore,
  memoryFeatureStore,
  type RedisFeatureStoreOptions,
  redisFeatureStore,
} from './store.js';
