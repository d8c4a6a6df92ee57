export * from './ports.js';
export * from './redis.js';
export * from './service.js';
export * from './models.js';
