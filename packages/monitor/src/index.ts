export * from './extractors.js';
export * from './feedback.js';
export * from './ingest.js';
export * from './monitor.js';
export * from './profile.js';
export * from './sink.js';
export * from './stats.js';
export * from './window.js';
