export * from './args.js';
export * from './cluster.js';
export * from './keys.js';
export * from './log.js';
export * from './parent.js';
export * from './serve.js';
