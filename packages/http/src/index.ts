export * from '@mlserve/protocol';
export {
  AUTH_SCOPES,
  type AuthScope,
  corsPolicy,
  createAuthenticator,
  createKey,
  keyDigest,
  parseKeys,
  type RateLimit,
  readKeysFile,
  ServerStats,
  type StoredKey,
  tritonConfig,
} from '@mlserve/protocol/server';
export * from './express.js';
export * from './fastify.js';
export * from './protocol.js';
export * from './tfserving.js';
