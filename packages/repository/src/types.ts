import type { RolloutStatus, ServeError } from '@mlserve/core';

/** Where a log line goes. Each method is optional; the default logger is silent. */
export interface RepositoryLogger {
  debug?(message: string, fields?: Record<string, unknown>): void;
  info?(message: string, fields?: Record<string, unknown>): void;
  warn?(message: string, fields?: Record<string, unknown>): void;
  error?(message: string, fields?: Record<string, unknown>): void;
}

/** A step in the life of a version, as {@link Repository} reports it. */
export interface VersionEvent {
  name: string;
  version: string;
  /**
   * `reloaded` / `reloadFailed`: a served version was rebuilt in place (config or files changed).
   * `coldStart` / `evicted`: under a memory budget, loaded on a request / unloaded to make room.
   */
  phase:
    | 'waiting'
    | 'loading'
    | 'warmup'
    | 'ready'
    | 'failed'
    | 'retired'
    | 'unloaded'
    | 'reloaded'
    | 'reloadFailed'
    | 'shadow'
    | 'canary'
    | 'promoted'
    | 'rejected'
    | 'coldStart'
    | 'evicted';
  /** What runs it (`onnxruntime-node/cpu`, `worker-pool(onnx)`), once known. */
  backend?: string;
  /** The model file, relative to the repository. */
  file?: string;
  /** Milliseconds the phase took (loading + warmup for `ready`). */
  ms?: number;
  /** Why it failed. */
  error?: string;
  /** `shadow`, `canary`, `promoted`, `rejected`: the rollout's status, with the gate's figures. */
  rollout?: RolloutStatus;
  /** `coldStart` / `evicted` (under a memory budget): the version's measured cost, bytes. */
  bytes?: number;
  /**
   * `ready` / `reloaded` under a memory budget: whether the version is loaded now (false: it is
   * served on demand and loads on its first request).
   */
  resident?: boolean;
  /** Warmup progress: `{ done, total, batchSize }`. */
  progress?: { done: number; total: number; batchSize: number };
}

/** Events a {@link Repository} emits. */
export interface RepositoryEvents {
  version: [event: VersionEvent];
  /** A model's config.json is invalid (the versions it serves keep serving). */
  configError: [name: string, error: ServeError];
}

/** What one `poll()` changed, as `name/version` strings. */
export interface PollReport {
  loaded: string[];
  failed: string[];
  retired: string[];
  removed: string[];
}

/** One served or failed version, for printing. */
export interface VersionInfo {
  name: string;
  version: string;
  state: 'loading' | 'ready' | 'failed';
  file: string;
  backend?: string;
  platform?: string;
  labels: string[];
  error?: string;
  /** Its place in a gated rollout (`shadow`, `canary`, `promoted`, `rejected`) with the figures. */
  rollout?: RolloutStatus;
  /** Under a memory budget: loaded now (else it loads on its next request). */
  resident?: boolean;
}

/** Counters of a repository. */
export interface RepositoryStats {
  polls: number;
  loads: number;
  loadFailures: number;
  retired: number;
  unloadedModels: number;
  configErrors: number;
  lastPollMs: number;
}
