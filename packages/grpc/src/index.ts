export * from './codec.js';
export * from './proto.js';
export * from './server.js';
