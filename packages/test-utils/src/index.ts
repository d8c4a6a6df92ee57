export * from './browser.js';
export * from './errors.js';
export * from './models.js';
export * from './ports.js';
export * from './random.js';
export * from './redis.js';
export * from './registries.js';
export * from './service.js';
