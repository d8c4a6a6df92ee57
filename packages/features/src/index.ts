export type { LoaderStats } from './loader.js';
export * from './lookup.js';
export * from './store.js';
