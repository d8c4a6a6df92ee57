export * from './cache.js';
export * from './codec.js';
export * from './key.js';
export * from './redis-store.js';
export * from './store.js';
