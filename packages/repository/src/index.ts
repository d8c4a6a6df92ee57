export * from './config.js';
export * from './loaders.js';
export * from './paths.js';
export * from './repository.js';
export * from './swap.js';
export * from './warmup.js';
