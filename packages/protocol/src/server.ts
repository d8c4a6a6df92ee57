/**
 * `@mlserve/protocol/server`: the KServe V2 request path HTTP and gRPC adapters share (Node only):
 * {@link createV2Service}, Triton's statistics and configuration, the constant-time token check,
 * the cross-origin check the HTTP adapters run.
 */
export * from './auth.js';
export * from './origin.js';
export * from './service.js';
export * from './stats.js';
