export { type BatchingEvents, type BatchingModel, batching } from './batching.js';
export type { BatchEvent, BatchingOptions, BatchingStats, OutputTrim, ReleaseReason } from './options.js';
