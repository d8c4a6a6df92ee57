export * from '@mlserve/protocol';
export { ServerStats, tritonConfig } from '@mlserve/protocol/server';
export * from './express.js';
export * from './fastify.js';
export * from './protocol.js';
export * from './tfserving.js';
