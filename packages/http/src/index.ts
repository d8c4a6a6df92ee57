export * from '@mlserve/protocol';
export * from './express.js';
export * from './fastify.js';
export * from './protocol.js';
export * from './stats.js';
export * from './tfserving.js';
