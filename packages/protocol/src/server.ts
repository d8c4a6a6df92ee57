/**
 * `@mlserve/protocol/server`: the KServe V2 request path HTTP and gRPC adapters share (Node only):
 * {@link createV2Service}, Triton's statistics and configuration, the constant-time token check,
 * the cross-origin check and CORS the HTTP adapters run, and API-key authentication with scopes and
 * rate limits (shared by HTTP and gRPC).
 */
export * from './auth.js';
export * from './cors.js';
export * from './keys.js';
export * from './origin.js';
export * from './service.js';
export * from './stats.js';
