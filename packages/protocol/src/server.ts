/**
 * `@mlserve/protocol/server`: the KServe V2 request path HTTP and gRPC adapters share (Node only):
 * {@link createV2Service}, Triton's statistics and configuration, the constant-time token check,
 * the cross-origin check and CORS the HTTP adapters run, and API-key authentication with scopes and
 * rate limits (shared by HTTP and gRPC).
 */
export { checkBearer, type ManagementOptions } from './auth.js';
export { type CorsOptions, type CorsPolicy, type CorsRequest, corsPolicy } from './cors.js';
export {
  AUTH_SCOPES,
  type Authenticator,
  type AuthHeaders,
  type AuthOptions,
  type AuthScope,
  createAuthenticator,
  createKey,
  keyDigest,
  type Principal,
  parseKeys,
  type RateLimit,
  readKeysFile,
  type StoredKey,
} from './keys.js';
export { type CrossOriginOptions, crossOriginCheck, type OriginRequest } from './origin.js';
export {
  createV2Service,
  type IndexRow,
  type ModelAction,
  type V2Call,
  type V2Result,
  type V2Service,
  type V2ServiceOptions,
} from './service.js';
export {
  type BatchSizeCounts,
  type BatchSizeSource,
  type BatchStat,
  type ModelStats,
  ServerStats,
  type Stat,
  tritonConfig,
} from './stats.js';
