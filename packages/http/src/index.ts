export * from './codec.js';
export * from './express.js';
export * from './fastify.js';
export * from './protocol.js';
export * from './stats.js';
export * from './tfserving.js';
export * from './v2.js';
