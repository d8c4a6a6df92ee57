export { type MemoryReport, type OnDemandModel, parseBytes, type VersionMemory } from './budget.js';
export type {
  CacheRedisConfig,
  CanaryConfig,
  CompareMode,
  GateConfig,
  ModelConfig,
  ReplaySource,
  RolloutConfig,
  VersionPolicy,
  WarmupConfig,
  WarmupSample,
  WorkersConfig,
} from './config.js';
export {
  cpuBudget,
  defaultServing,
  type RowCheck,
  rowsIndependent,
  type ServingDefaults,
} from './defaults.js';
export type {
  BackendLoader,
  Loaders,
  ModelLoader,
  WorkerPoolLoaderOptions,
  WorkerPoolOptions,
} from './loaders.js';
export type { ModelView, VersionView } from './reconcile.js';
export { loadRepository, type ManagementHooks, Repository, type RepositoryOptions } from './repository.js';
export type { GateFigures } from './rollout.js';
export type { Swappable } from './swap.js';
export type {
  PollReport,
  RepositoryEvents,
  RepositoryLogger,
  RepositoryStats,
  VersionEvent,
  VersionInfo,
} from './types.js';
export { sampleInputs, type WarmupReport, zeroInputs } from './warmup.js';
