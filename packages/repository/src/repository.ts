import { EventEmitter } from 'node:events';
import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, relative } from 'node:path';
import {
  compareVersions,
  type InferOptions,
  invalidArgument,
  type Middleware,
  type Model,
  type ModelMetadata,
  ModelRegistry,
  notFound,
  pipeline,
  type ServeError,
  toServeError,
  unavailable,
  validation,
  wrap,
} from '@mlserve/core';
import { type ModelConfig, parseModelConfig, type VersionPolicy } from './config.js';
import { defaultLoaders, type Loaders, middlewareFactory } from './loaders.js';
import { assertSafeName, fingerprint, isInside, resolveInside } from './paths.js';
import { type Swappable, swappable } from './swap.js';
import { runWarmup } from './warmup.js';

/** Where a log line goes. Each method is optional; the default logger is silent. */
export interface RepositoryLogger {
  debug?(message: string, fields?: Record<string, unknown>): void;
  info?(message: string, fields?: Record<string, unknown>): void;
  warn?(message: string, fields?: Record<string, unknown>): void;
  error?(message: string, fields?: Record<string, unknown>): void;
}

/** Options of {@link loadRepository}. */
export interface RepositoryOptions {
  /** The registry to fill (default: a new one, closed by `close()`). */
  registry?: ModelRegistry;
  /** Poll the directory for changes this often (ms); 0 or absent: no polling (call `poll()`). */
  pollIntervalMs?: number;
  /** With `pollIntervalMs`, also poll on file-system events (see {@link Repository.watch}). Default false. */
  fsEvents?: boolean;
  /** Replace how models, pools and middleware are created (default: dynamic imports of mlserve packages). */
  loaders?: Loaders;
  /** Where progress and problems are reported. */
  logger?: RepositoryLogger;
  /** Extra outermost layers per version (metrics, tracing), before validation. */
  middleware?: (name: string, version: string) => Middleware[];
  /** ONNX intra-op threads of in-thread sessions whose config does not set them (default min(4, cores)). */
  intraOpThreads?: number;
  /** Run every model without a `workers` config in a pool of this many threads (default: in-thread). */
  workers?: number;
  /** Versions loading at once (default 2): loads compete with serving for the same cores. */
  loadConcurrency?: number;
  /** Turn warmup off everywhere (default: on, as each config says). */
  warmup?: boolean;
}

/** A step in the life of a version, as {@link Repository} reports it. */
export interface VersionEvent {
  name: string;
  version: string;
  /** `reloaded` / `reloadFailed`: a served version was rebuilt in place (config or files changed). */
  phase:
    | 'waiting'
    | 'loading'
    | 'warmup'
    | 'ready'
    | 'failed'
    | 'retired'
    | 'unloaded'
    | 'reloaded'
    | 'reloadFailed';
  /** What runs it (`onnxruntime-node/cpu`, `worker-pool(onnx)`), once known. */
  backend?: string;
  /** The model file, relative to the repository. */
  file?: string;
  /** Milliseconds the phase took (loading + warmup for `ready`). */
  ms?: number;
  /** Why it failed. */
  error?: string;
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

interface ScannedVersion {
  version: string;
  dir: string;
  file: string;
  backend: 'onnx' | 'tfjs';
  fp: string;
}

interface ScannedModel {
  name: string;
  dir: string;
  configFile: string;
  configFp: string;
  config?: ModelConfig;
  configError?: ServeError;
  versions: Map<string, ScannedVersion>;
}

interface VersionRecord {
  version: string;
  state: 'loading' | 'ready' | 'failed';
  fp: string;
  configFp: string;
  file: string;
  backend?: string;
  platform?: string;
  error?: string;
  /** What the pipeline was built from (config minus routing fields), to tell when to rebuild. */
  pipelineKey?: string;
  /** The served model, whose implementation a reload replaces. */
  handle?: Swappable;
  /** A rebuild is running. */
  reloading?: boolean;
}

interface ModelState {
  name: string;
  config: ModelConfig | undefined;
  configFp: string | undefined;
  configError: ServeError | undefined;
  versions: Map<string, VersionRecord>;
  seen: Map<string, string>;
  disabled: boolean;
  appliedLabels: Set<string>;
}

const VERSION_DIR_RE = /^(0|[1-9]\d{0,14})$/;
const MODEL_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** FNV-1a with a murmur3 finish, 32 bits: a stable, well-spread hash for sticky traffic splits. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // murmur3's finalizer: FNV alone leaves the high bits of similar ids correlated.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The versions a policy keeps, ascending. *
 * @example
 * ```ts
 * applyVersionPolicy({ latest: 2 }, ['1', '10', '3']); // ['3', '10']
 * ```
 */
export function applyVersionPolicy(policy: VersionPolicy, versions: readonly string[]): string[] {
  const sorted = [...versions].sort(compareVersions);
  if (policy === 'all') return sorted;
  if ('latest' in policy) return sorted.slice(Math.max(0, sorted.length - policy.latest));
  const wanted = new Set(policy.specific);
  return sorted.filter((v) => wanted.has(v));
}

/**
 * A model repository on disk, served through a {@link ModelRegistry}. Create one with
 * {@link loadRepository}.
 *
 * @example
 * ```ts
 * const repo = new Repository('./models', { logger: console });
 * repo.on('version', (e) => console.log(e.phase, e.name, e.version));
 * await repo.poll();
 * repo.watch(5000);
 * ```
 */
export class Repository extends EventEmitter<RepositoryEvents> {
  /** The registry the repository's versions are served from: mount it in a server. */
  readonly registry: ModelRegistry;
  /** The repository directory as given. */
  readonly dir: string;
  readonly #options: RepositoryOptions;
  readonly #ownsRegistry: boolean;
  readonly #models = new Map<string, ModelState>();
  readonly #loads = new Set<Promise<unknown>>();
  readonly #abort = new AbortController();
  readonly #stats: RepositoryStats = {
    polls: 0,
    loads: 0,
    loadFailures: 0,
    retired: 0,
    unloadedModels: 0,
    configErrors: 0,
    lastPollMs: 0,
  };
  #root: string | undefined;
  #lock: Promise<unknown> = Promise.resolve();
  #polling: Promise<PollReport> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #watcher: FSWatcher | undefined;
  #closing: Promise<void> | undefined;
  #slots: number;
  #waiting: (() => void)[] = [];
  #polledOnce = false;

  /** Use {@link loadRepository}; the constructor does no I/O (call `poll()` to load). */
  constructor(dir: string, options: RepositoryOptions = {}) {
    super();
    this.dir = dir;
    this.#options = options;
    this.#ownsRegistry = options.registry === undefined;
    this.registry = options.registry ?? new ModelRegistry();
    this.#slots = Math.max(1, options.loadConcurrency ?? 2);
    this.registry.setResolver((name, versions, opts) => this.#route(name, versions, opts));
    // A version removed from the registry behind the repository's back (an HTTP unload) stays
    // unloaded until loadModel(), instead of being reloaded by the next poll.
    this.registry.on('state', (s) => {
      if (s.state !== 'unavailable' || this.closed || this.registry.closing) return;
      const state = this.#models.get(s.name);
      const rec = state?.versions.get(s.version);
      if (!state || !rec || rec.state !== 'ready') return;
      state.versions.delete(s.version);
      state.disabled = true;
      this.#log(
        'info',
        `${s.name}/${s.version} was unloaded through the registry; polling leaves ${s.name} alone`,
      );
    });
  }

  /**
   * The model repository extension's hooks for `@mlserve/http` (`management: repo.management()`):
   * `load` runs {@link Repository.loadModel} and fails when a version failed to load; `index`
   * lists models on disk that are not loaded.
   */
  management(): {
    load: (name: string) => Promise<void>;
    index: () => Promise<{ name: string; state: string; reason: string }[]>;
  } {
    return {
      load: async (name) => {
        const report = await this.loadModel(name);
        if (report.failed.length > 0) {
          const why = this.versions()
            .filter((v) => v.name === name && v.state === 'failed')
            .map((v) => `${v.version}: ${v.error}`)
            .join('; ');
          throw unavailable(`model "${name}" failed to load (${why})`);
        }
      },
      index: async () => {
        const root = await this.#rootDir();
        const entries = await readdir(root, { withFileTypes: true });
        const loaded = new Set(this.registry.names());
        return entries
          .filter(
            (e) =>
              (e.isDirectory() || e.isSymbolicLink()) && MODEL_NAME_RE.test(e.name) && !loaded.has(e.name),
          )
          .map((e) => ({
            name: e.name,
            state: 'UNAVAILABLE',
            reason: this.#models.get(e.name)?.disabled ? 'unloaded' : 'not loaded',
          }));
      },
    };
  }

  /** True once `close()` has been called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /** Counters: polls, loads, failures, retirements. */
  stats(): RepositoryStats {
    return { ...this.#stats };
  }

  /** A model's validated config (the last valid one), undefined for an unknown model. */
  config(name: string): ModelConfig | undefined {
    const config = this.#models.get(name)?.config;
    return config ? structuredClone(config) : undefined;
  }

  /** Every version the repository loaded, is loading or failed to load. */
  versions(): VersionInfo[] {
    const out: VersionInfo[] = [];
    for (const state of [...this.#models.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
      for (const rec of [...state.versions.values()].sort((a, b) => compareVersions(a.version, b.version))) {
        const info: VersionInfo = {
          name: state.name,
          version: rec.version,
          state: rec.state,
          file: rec.file,
          labels: this.registry.status(state.name, rec.version)?.labels ?? [],
        };
        if (rec.backend) info.backend = rec.backend;
        if (rec.platform) info.platform = rec.platform;
        if (rec.error) info.error = rec.error;
        out.push(info);
      }
    }
    return out;
  }

  async #rootDir(): Promise<string> {
    if (this.#root) return this.#root;
    let real: string;
    try {
      real = await realpath(this.dir);
    } catch {
      throw notFound(`model repository ${this.dir} does not exist`);
    }
    if (!(await stat(real)).isDirectory())
      throw invalidArgument(`model repository ${this.dir} is not a directory`);
    this.#root = real;
    return real;
  }

  #log(level: keyof RepositoryLogger, message: string, fields?: Record<string, unknown>): void {
    this.#options.logger?.[level]?.(message, fields);
  }

  #emitVersion(event: VersionEvent): void {
    this.emit('version', event);
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn, fn);
    this.#lock = run.catch(() => undefined);
    return run;
  }

  /**
   * Scans the repository once: loads new versions whose files have stopped changing (the same
   * size and mtime as at the previous poll; at the first poll, at once), warms them up, retires
   * versions the policy no longer keeps once a kept one is ready, and unloads removed models after
   * their requests in flight. Overlapping calls share one scan.
   */
  poll(): Promise<PollReport> {
    if (this.closed) return Promise.resolve({ loaded: [], failed: [], retired: [], removed: [] });
    this.#polling ??= this.#exclusive(() => this.#poll()).finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  async #poll(): Promise<PollReport> {
    const started = performance.now();
    const report: PollReport = { loaded: [], failed: [], retired: [], removed: [] };
    const initial = !this.#polledOnce;
    this.#polledOnce = true;
    this.#stats.polls++;
    const root = await this.#rootDir();
    let names: string[];
    try {
      const entries = await readdir(root, { withFileTypes: true });
      names = entries
        .filter(
          (e) =>
            (e.isDirectory() || e.isSymbolicLink()) && MODEL_NAME_RE.test(e.name) && !e.name.includes('..'),
        )
        .map((e) => e.name);
    } catch (err) {
      this.#log('error', `cannot read the model repository: ${toServeError(err).message}`, { dir: this.dir });
      return report;
    }
    const present = new Set(names);
    const removals: Promise<void>[] = [];
    for (const name of [...this.#models.keys()]) {
      if (!present.has(name)) removals.push(this.#removeModel(name, report));
    }
    await Promise.all([...removals, ...names.map((name) => this.#syncModel(name, initial, report))]);
    this.#stats.lastPollMs = performance.now() - started;
    return report;
  }

  /**
   * Loads (or refreshes) one model now, without waiting for its files to settle: the explicit
   * control a management endpoint offers. Names are checked: nothing outside the repository can
   * be reached (INVALID_ARGUMENT), an unknown model is NOT_FOUND.
   */
  loadModel(name: string): Promise<PollReport> {
    assertSafeName(name);
    return this.#exclusive(async () => {
      if (this.closed) throw unavailable('the repository is closed');
      const root = await this.#rootDir();
      const dir = await resolveInside(root, name);
      if (!(await stat(dir)).isDirectory())
        throw notFound(`model "${name}" is not a directory in the repository`);
      const state = this.#models.get(name);
      if (state) state.disabled = false;
      const report: PollReport = { loaded: [], failed: [], retired: [], removed: [] };
      await this.#syncModel(name, true, report);
      return report;
    });
  }

  /**
   * Unloads every version of a model after its requests in flight; polling leaves it unloaded
   * until `loadModel(name)`.
   */
  unloadModel(name: string): Promise<void> {
    assertSafeName(name);
    return this.#exclusive(async () => {
      const state = this.#models.get(name);
      if (!state && this.registry.versions(name).length === 0) throw notFound(`unknown model "${name}"`);
      const report: PollReport = { loaded: [], failed: [], retired: [], removed: [] };
      await this.#removeModel(name, report);
      this.#models.set(name, this.#newState(name, true));
    });
  }

  #newState(name: string, disabled = false): ModelState {
    return {
      name,
      config: undefined,
      configFp: undefined,
      configError: undefined,
      versions: new Map(),
      seen: new Map(),
      disabled,
      appliedLabels: new Set(),
    };
  }

  async #removeModel(name: string, report: PollReport): Promise<void> {
    const state = this.#models.get(name);
    this.#models.delete(name);
    if (this.registry.versions(name).length === 0) return;
    this.#log('info', `model ${name} was removed: unloading after requests in flight`, { model: name });
    await this.registry.remove(name).catch(() => undefined);
    this.#stats.unloadedModels++;
    report.removed.push(name);
    for (const rec of state?.versions.values() ?? []) {
      this.#emitVersion({ name, version: rec.version, phase: 'unloaded', file: rec.file });
    }
  }

  async #scanModel(root: string, name: string): Promise<ScannedModel | undefined> {
    const dir = await resolveInside(root, name);
    if (!(await stat(dir)).isDirectory()) return undefined;
    const scanned: ScannedModel = {
      name,
      dir,
      configFile: join(name, 'config.json'),
      configFp: '',
      versions: new Map(),
    };
    let text: string | undefined;
    try {
      const configPath = await resolveInside(root, name, 'config.json');
      text = await readFile(configPath, 'utf8');
    } catch (err) {
      if (toServeError(err).code !== 'NOT_FOUND') {
        scanned.configError = toServeError(err);
        scanned.configFp = `error:${scanned.configError.message}`;
      }
    }
    if (text !== undefined) {
      scanned.configFp = text;
      try {
        let raw: unknown;
        try {
          raw = JSON.parse(text);
        } catch (err) {
          throw invalidArgument(`${scanned.configFile}: invalid JSON (${(err as Error).message})`);
        }
        scanned.config = parseModelConfig(raw, scanned.configFile);
      } catch (err) {
        scanned.configError = toServeError(err);
      }
    } else if (!scanned.configError) {
      scanned.config = parseModelConfig({}, scanned.configFile);
    }
    const config = scanned.config;
    const entries = await readdir(dir, { withFileTypes: true });
    for (const e of entries) {
      if (!VERSION_DIR_RE.test(e.name) || !(e.isDirectory() || e.isSymbolicLink())) continue;
      try {
        const vdir = await resolveInside(root, name, e.name);
        if (!(await stat(vdir)).isDirectory()) continue;
        const found = await this.#modelFile(root, name, e.name, vdir, config);
        if (!found) continue;
        const fp = await fingerprint(root, vdir);
        scanned.versions.set(e.name, { version: e.name, dir: vdir, fp, ...found });
      } catch (err) {
        this.#log('warn', `skipping ${name}/${e.name}: ${toServeError(err).message}`, {
          model: name,
          version: e.name,
        });
      }
    }
    return scanned;
  }

  async #modelFile(
    root: string,
    name: string,
    version: string,
    vdir: string,
    config: ModelConfig | undefined,
  ): Promise<{ file: string; backend: 'onnx' | 'tfjs' } | undefined> {
    const candidates: { file: string; backend: 'onnx' | 'tfjs' }[] = [];
    if (config?.modelFile) {
      const backend = config.backend ?? (config.modelFile.endsWith('.onnx') ? 'onnx' : 'tfjs');
      candidates.push({ file: config.modelFile, backend });
    } else {
      if (config?.backend !== 'tfjs') candidates.push({ file: 'model.onnx', backend: 'onnx' });
      if (config?.backend !== 'onnx') {
        candidates.push({ file: 'model.json', backend: 'tfjs' }, { file: 'saved_model.pb', backend: 'tfjs' });
      }
    }
    for (const c of candidates) {
      let real: string;
      try {
        real = await realpath(join(vdir, c.file));
      } catch {
        continue;
      }
      if (!isInside(root, real)) {
        throw invalidArgument(`${join(name, version, c.file)} resolves outside the model repository`);
      }
      // A SavedModel is a directory: load the directory, not the .pb file.
      const file = c.file === 'saved_model.pb' ? vdir : real;
      return { file, backend: c.backend };
    }
    return undefined;
  }

  async #syncModel(name: string, force: boolean, report: PollReport): Promise<void> {
    if (this.closed) return;
    let state = this.#models.get(name);
    if (state?.disabled) return;
    const root = await this.#rootDir();
    let scan: ScannedModel | undefined;
    try {
      scan = await this.#scanModel(root, name);
    } catch (err) {
      this.#log('warn', `skipping model ${name}: ${toServeError(err).message}`, { model: name });
      return;
    }
    if (!scan) return;
    if (!state) {
      state = this.#newState(name);
      this.#models.set(name, state);
    }
    if (scan.configFp !== state.configFp) {
      state.configFp = scan.configFp;
      if (scan.configError) {
        state.configError = scan.configError;
        this.#stats.configErrors++;
        const keeps = state.config ? '; the versions already loaded keep serving' : '';
        this.#log('error', `${scan.configError.message}${keeps}`, { model: name });
        this.emit('configError', name, scan.configError);
      } else {
        if (state.config) this.#log('info', `${scan.configFile} changed`);
        state.config = scan.config;
        state.configError = undefined;
      }
    }
    if (state.configError) {
      // Nothing new loads on a broken config; versions never loaded are marked failed so the
      // registry says why.
      if (!state.config) {
        for (const v of applyVersionPolicy({ latest: 1 }, [...scan.versions.keys()])) {
          const rec = state.versions.get(v);
          if (rec?.state === 'failed' && rec.configFp === state.configFp) continue;
          const sv = scan.versions.get(v)!;
          await this.#loadVersion(state, sv, undefined, report);
        }
      }
      await this.#retireStale(state, scan, [], report);
      return;
    }
    const config = state.config!;
    const desired = applyVersionPolicy(config.versionPolicy, [...scan.versions.keys()]);
    const loads: Promise<void>[] = [];
    for (const v of desired) {
      const sv = scan.versions.get(v)!;
      const rec = state.versions.get(v);
      if (rec && rec.state !== 'failed') {
        // A served version whose files or pipeline settings changed is rebuilt in place, once its
        // files have settled; routing-only changes (labels, traffic, policy) need no rebuild.
        if (rec.state !== 'ready' || rec.reloading) continue;
        const key = pipelineKey(config);
        if (rec.fp === sv.fp && rec.pipelineKey === key) continue;
        const settled = force || rec.fp === sv.fp || state.seen.get(v) === sv.fp;
        state.seen.set(v, sv.fp);
        if (!settled) continue;
        state.seen.delete(v);
        loads.push(this.#reloadVersion(state, rec, sv, config, key, report));
        continue;
      }
      if (rec?.state === 'failed' && rec.fp === sv.fp && rec.configFp === state.configFp) continue;
      const stable = force || state.seen.get(v) === sv.fp;
      state.seen.set(v, sv.fp);
      if (!stable) {
        this.#emitVersion({ name, version: v, phase: 'waiting', file: relative(root, sv.file) });
        this.#log('debug', `${name}/${v}: waiting for its files to stop changing`);
        continue;
      }
      state.seen.delete(v);
      loads.push(this.#loadVersion(state, sv, config, report));
    }
    await Promise.all(loads);
    await this.#retireStale(state, scan, desired, report);
    this.#applyLabels(state);
  }

  async #retireStale(
    state: ModelState,
    scan: ScannedModel,
    desired: string[],
    report: PollReport,
  ): Promise<void> {
    const keep = new Set(desired);
    const readyKept = desired.some((v) => state.versions.get(v)?.state === 'ready');
    const retiring: Promise<void>[] = [];
    for (const [v, rec] of state.versions) {
      if (keep.has(v)) continue;
      const onDisk = scan.versions.has(v);
      if (onDisk && !readyKept && rec.state === 'ready') continue;
      if (onDisk && rec.state === 'loading') continue;
      if (onDisk && rec.state === 'failed' && !readyKept) continue;
      retiring.push(this.#retire(state, rec, report));
    }
    await Promise.all(retiring);
  }

  async #retire(state: ModelState, rec: VersionRecord, report: PollReport): Promise<void> {
    const { name } = state;
    state.versions.delete(rec.version);
    const started = performance.now();
    if (this.registry.status(name, rec.version)) {
      await this.registry.remove(name, rec.version).catch(() => undefined);
    }
    if (rec.state !== 'failed') {
      this.#stats.retired++;
      report.retired.push(`${name}/${rec.version}`);
      this.#log('info', `${name}/${rec.version} retired`, { model: name, version: rec.version });
      this.#emitVersion({
        name,
        version: rec.version,
        phase: 'retired',
        file: rec.file,
        ms: performance.now() - started,
      });
    }
  }

  #applyLabels(state: ModelState): void {
    const labels = state.config?.labels ?? {};
    for (const label of state.appliedLabels) {
      if (!(label in labels)) {
        this.registry.removeLabel(state.name, label);
        state.appliedLabels.delete(label);
      }
    }
    for (const [label, version] of Object.entries(labels)) {
      if (state.versions.get(version)?.state === 'ready') {
        this.registry.setLabel(state.name, label, version);
        state.appliedLabels.add(label);
      } else if (state.appliedLabels.has(label)) {
        this.registry.removeLabel(state.name, label);
        state.appliedLabels.delete(label);
      }
    }
  }

  #route(name: string, versions: readonly string[], options?: InferOptions): string | undefined {
    const traffic = this.#models.get(name)?.config?.traffic;
    if (!traffic) return undefined;
    const candidates = Object.entries(traffic).filter(([v, w]) => w > 0 && versions.includes(v));
    if (candidates.length === 0) return undefined;
    const total = candidates.reduce((sum, [, w]) => sum + w, 0);
    const point =
      (options?.id !== undefined ? fnv1a(`${name}\u0000${options.id}`) / 2 ** 32 : Math.random()) * total;
    let acc = 0;
    for (const [v, w] of candidates) {
      acc += w;
      if (point < acc) return v;
    }
    return candidates[candidates.length - 1]![0];
  }

  async #acquire(): Promise<void> {
    if (this.#slots > 0) {
      this.#slots--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#slots++;
  }

  #loadVersion(
    state: ModelState,
    sv: ScannedVersion,
    config: ModelConfig | undefined,
    report: PollReport,
  ): Promise<void> {
    const { name } = state;
    const { version } = sv;
    const root = this.#root!;
    const rec: VersionRecord = {
      version,
      state: 'loading',
      fp: sv.fp,
      configFp: state.configFp ?? '',
      file: relative(root, sv.file) || '.',
    };
    state.versions.set(version, rec);
    const started = performance.now();
    this.#stats.loads++;
    this.#emitVersion({ name, version, phase: 'loading', file: rec.file });
    this.#log('info', `loading ${name}/${version} from ${rec.file}`, { model: name, version });
    const configError = state.configError;
    const load = this.registry
      .load(name, version, async () => {
        if (!config) throw configError ?? invalidArgument(`${name}: no valid config`);
        await this.#acquire();
        try {
          if (this.closed) throw unavailable('the repository is closing');
          const built = await this.#build(name, version, sv, config, rec);
          rec.pipelineKey = pipelineKey(config);
          rec.handle = swappable(built);
          return rec.handle;
        } finally {
          this.#release();
        }
      })
      .then(
        () => {
          rec.state = 'ready';
          const ms = performance.now() - started;
          report.loaded.push(`${name}/${version}`);
          this.#log('info', `${name}/${version} ready (${rec.backend ?? sv.backend}, ${Math.round(ms)} ms)`, {
            model: name,
            version,
          });
          this.#emitVersion({
            name,
            version,
            phase: 'ready',
            file: rec.file,
            backend: rec.backend ?? sv.backend,
            ms,
          });
        },
        (err: unknown) => {
          const e = toServeError(err);
          rec.state = 'failed';
          rec.error = e.message;
          if (this.closed) return;
          this.#stats.loadFailures++;
          report.failed.push(`${name}/${version}`);
          this.#log('error', `${name}/${version} failed to load: ${e.message}`, {
            model: name,
            version,
            code: e.code,
          });
          this.#emitVersion({ name, version, phase: 'failed', file: rec.file, error: e.message });
        },
      );
    this.#loads.add(load);
    void load.finally(() => this.#loads.delete(load));
    return load;
  }

  /** Rebuilds a served version (new files or pipeline settings) and swaps it in; on failure the old one stays. */
  async #reloadVersion(
    state: ModelState,
    rec: VersionRecord,
    sv: ScannedVersion,
    config: ModelConfig,
    key: string,
    report: PollReport,
  ): Promise<void> {
    const { name } = state;
    const { version } = rec;
    const handle = rec.handle;
    if (!handle) return;
    rec.reloading = true;
    const started = performance.now();
    this.#log('info', `reloading ${name}/${version}: its files or config.json changed`, {
      model: name,
      version,
    });
    const work = (async () => {
      await this.#acquire();
      try {
        if (this.closed) return;
        const next = await this.#build(name, version, sv, config, rec);
        if (this.closed || state.versions.get(version) !== rec) {
          await next.dispose();
          return;
        }
        // The old implementation finishes its requests in flight, then is disposed.
        const retired = handle.swap(next);
        rec.fp = sv.fp;
        rec.pipelineKey = key;
        rec.configFp = state.configFp ?? '';
        report.loaded.push(`${name}/${version}`);
        this.#emitVersion({
          name,
          version,
          phase: 'reloaded',
          file: rec.file,
          ms: performance.now() - started,
          ...(rec.backend && { backend: rec.backend }),
        });
        await retired;
      } catch (err) {
        const e = toServeError(err);
        // Remember what failed so the same files and config are not retried at every poll.
        rec.fp = sv.fp;
        rec.pipelineKey = key;
        this.#stats.loadFailures++;
        report.failed.push(`${name}/${version}`);
        this.#log(
          'error',
          `${name}/${version} failed to reload (the loaded one keeps serving): ${e.message}`,
          {
            model: name,
            version,
          },
        );
        this.#emitVersion({ name, version, phase: 'reloadFailed', file: rec.file, error: e.message });
      } finally {
        this.#release();
        rec.reloading = false;
      }
    })();
    this.#loads.add(work);
    void work.finally(() => this.#loads.delete(work));
    await work;
  }

  async #build(
    name: string,
    version: string,
    sv: ScannedVersion,
    config: ModelConfig,
    rec: VersionRecord,
  ): Promise<Model> {
    const loaders = this.#options.loaders ?? {};
    // Middleware first: a missing package fails before a model is loaded.
    const cache = config.cache ? await middlewareFactory(loaders, 'cache') : undefined;
    const batching = config.batching ? await middlewareFactory(loaders, 'batching') : undefined;
    const opts: Record<string, unknown> = { name, version, ...config.backendOptions };
    if (config.padValues) opts.padValues = config.padValues;
    const classLabels = await this.#classLabels(sv.dir, join(sv.dir, '..'), config.labelsFile);
    const workers =
      config.workers ?? (this.#options.workers ? { threads: this.#options.workers } : undefined);
    let base: Model;
    if (workers) {
      const pool = loaders.workerPool ?? defaultLoaders.workerPool;
      base = await pool({
        backend: sv.backend,
        source: sv.file,
        options: opts,
        threads: workers.threads,
        ...(workers.intraOpThreads !== undefined && { intraOpThreads: workers.intraOpThreads }),
        ...(workers.maxQueue !== undefined && { maxQueue: workers.maxQueue }),
        ...(workers.idleTimeout !== undefined && { idleTimeout: workers.idleTimeout }),
      });
    } else {
      if (sv.backend === 'onnx' && opts.intraOpNumThreads === undefined) {
        opts.intraOpNumThreads =
          this.#options.intraOpThreads ?? Math.max(1, Math.min(4, availableParallelism()));
      }
      const loader = loaders[sv.backend] ?? defaultLoaders[sv.backend];
      base = await loader(sv.file, opts);
    }
    try {
      base = identity(base, name, version, classLabels);
      const meta = base.metadata();
      rec.backend = meta.backend ?? sv.backend;
      rec.platform = meta.platform;
      const layers: Middleware[] = [...(this.#options.middleware?.(name, version) ?? [])];
      if (config.validation.enabled) {
        layers.push(
          validation(config.validation.maxBatchSize ? { maxBatchSize: config.validation.maxBatchSize } : {}),
        );
      }
      if (cache) layers.push(cache(config.cache!));
      if (batching) layers.push(batching(config.batching!));
      const model = pipeline(base, ...layers);
      if (this.#options.warmup !== false && config.warmup.enabled) {
        await model.warmup?.();
        this.#emitVersion({ name, version, phase: 'warmup', file: rec.file, backend: rec.backend });
        const report = await runWarmup(base, config.warmup, {
          ...(config.batching && { batching: config.batching }),
          file: join(name, 'config.json'),
          signal: this.#abort.signal,
          onProgress: (done, total, batchSize) =>
            this.#emitVersion({
              name,
              version,
              phase: 'warmup',
              file: rec.file,
              backend: rec.backend,
              progress: { done, total, batchSize },
            }),
        });
        this.#log(
          'debug',
          `${name}/${version} warmed up: ${report.requests} requests in ${Math.round(report.ms)} ms`,
          {
            model: name,
            version,
            batchSizes: report.batchSizes,
            truncated: report.truncated,
          },
        );
      }
      return model;
    } catch (err) {
      await base.dispose().catch(() => undefined);
      throw err;
    }
  }

  async #classLabels(versionDir: string, modelDir: string, file: string): Promise<string[] | undefined> {
    const root = this.#root!;
    for (const dir of [versionDir, modelDir]) {
      const path = join(dir, file);
      let real: string;
      try {
        real = await realpath(path);
      } catch {
        continue;
      }
      if (!isInside(root, real))
        throw invalidArgument(`${relative(root, path)} resolves outside the model repository`);
      const text = await readFile(real, 'utf8');
      const lines = text.split(/\r?\n/);
      while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
      return lines.map((l) => l.trim());
    }
    return undefined;
  }

  /**
   * Polls every `intervalMs` until `close()` (or the returned stop function). With `fsEvents`,
   * file-system events also trigger a poll (debounced by `debounceMs`, default 250), and polls
   * repeat while new files are settling, so changes are picked up in well under the interval;
   * where recursive watching is unavailable it logs a warning and keeps polling. Neither the timer
   * nor the watcher keeps the process alive.
   *
   * @example
   * ```ts
   * const stop = repo.watch(30_000, { fsEvents: true });
   * ```
   */
  watch(intervalMs: number, options: { fsEvents?: boolean; debounceMs?: number } = {}): () => void {
    if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
      throw new TypeError('intervalMs must be a positive number');
    }
    const debounceMs = options.debounceMs ?? 250;
    this.#stopWatching();
    const schedule = (ms: number) => {
      if (this.closed) return;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(tick, ms);
      this.#timer.unref();
    };
    const tick = () => {
      this.#timer = undefined;
      if (this.closed) return;
      this.poll()
        .catch((err: unknown) => this.#log('error', `poll failed: ${toServeError(err).message}`))
        .finally(() => {
          if (this.closed || this.#timer !== undefined) return;
          // Files seen changing are confirmed settled by a quick second look when events drive us.
          const settling = [...this.#models.values()].some((m) => m.seen.size > 0);
          schedule(this.#watcher && settling ? debounceMs : intervalMs);
        });
    };
    schedule(intervalMs);
    if (options.fsEvents) {
      void this.#rootDir().then(
        (root) => {
          if (this.closed) return;
          try {
            const watcher = fsWatch(root, { recursive: true }, () => schedule(debounceMs));
            watcher.on('error', (err) => {
              this.#log('warn', `file watching stopped (${err.message}); polling every ${intervalMs} ms`);
              watcher.close();
              if (this.#watcher === watcher) this.#watcher = undefined;
            });
            watcher.unref();
            this.#watcher = watcher;
          } catch (err) {
            this.#log('warn', `file watching is unavailable (${toServeError(err).message}); polling only`);
          }
        },
        (err: unknown) => this.#log('error', toServeError(err).message),
      );
    }
    return () => this.#stopWatching();
  }

  #stopWatching(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  /**
   * Stops polling, stops warmups, and unloads every version after its requests in flight (the
   * whole registry when the repository created it). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stopWatching();
      this.#abort.abort();
      if (this.#ownsRegistry) await this.registry.close();
      else
        await Promise.all(
          [...this.#models.keys()].map((n) => this.registry.remove(n).catch(() => undefined)),
        );
      while (this.#loads.size > 0) await Promise.allSettled([...this.#loads]);
    })();
    return this.#closing;
  }
}

/** The config fields that shape a version's pipeline (routing fields apply without a rebuild). */
function pipelineKey(config: ModelConfig): string {
  const { labels: _l, traffic: _t, versionPolicy: _v, description: _d, ...rest } = config;
  return JSON.stringify(rest);
}

/** Makes a loaded model answer to the repository's name and version, with its class labels. */
function identity(base: Model, name: string, version: string, labels: string[] | undefined): Model {
  if (base.name === name && base.version === version && !labels) return base;
  let meta: ModelMetadata | undefined;
  const model = wrap(base, {
    layer: 'repository',
    metadata: () => {
      meta ??= (() => {
        const m = base.metadata();
        const out: ModelMetadata = { ...m, name, version };
        if (labels) out.extra = { ...m.extra, labels };
        return out;
      })();
      return structuredClone(meta);
    },
  });
  return Object.defineProperties(model, {
    name: { value: name, enumerable: true },
    version: { value: version, enumerable: true },
  });
}

/**
 * Opens a model repository laid out like Triton's (`<dir>/<model>/<version>/model.onnx`, or a
 * TF.js `model.json`, with an optional `<dir>/<model>/config.json`), loads what each version
 * policy keeps, warms it up and serves it through `repository.registry`. With `pollIntervalMs`
 * it keeps watching: new versions load once their files settle, old ones retire once the new one
 * is ready, removed models unload after their requests in flight. A version that fails to load is
 * logged and marked failed; it never stops the others.
 *
 * @example
 * ```ts
 * import { loadRepository } from '@mlserve/repository';
 * const repo = await loadRepository('./model-repository', { pollIntervalMs: 5000 });
 * const out = await repo.registry.infer('mnist', undefined, { image }, { id: 'req-1' });
 * process.on('SIGTERM', () => repo.close());
 * ```
 */
export async function loadRepository(dir: string, options: RepositoryOptions = {}): Promise<Repository> {
  const repo = new Repository(dir, options);
  try {
    await repo.poll();
  } catch (err) {
    await repo.close();
    throw err;
  }
  if (options.pollIntervalMs && options.pollIntervalMs > 0) {
    repo.watch(options.pollIntervalMs, { fsEvents: options.fsEvents ?? false });
  }
  return repo;
}
