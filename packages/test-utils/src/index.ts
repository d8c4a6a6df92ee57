export * from './models.js';
export * from './ports.js';
export * from './redis.js';
export * from './service.js';
