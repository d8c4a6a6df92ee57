export * from './extractors.js';
export * from './monitor.js';
export * from './profile.js';
export * from './sink.js';
export * from './stats.js';
