/**
 * `@mlserve/protocol`: KServe V2 (the Open Inference Protocol) without a transport. This entry is
 * browser-safe (no Buffer, no `node:` imports): the tensor codec (JSON and the binary tensor
 * extension, both ways, BYTES included), requests and responses for servers and clients, the
 * classification extension and model metadata. The request path servers share (one lookup,
 * validation, deadlines, spans, statistics, the repository extension) is at
 * `@mlserve/protocol/server` (Node only).
 */
export * from './codec.js';
export * from './v2.js';
