import { EventEmitter } from 'node:events';
import { relative } from 'node:path';
import {
  compareVersions,
  invalidArgument,
  type Middleware,
  type Model,
  ModelRegistry,
  notFound,
  type RolloutStatus,
  toServeError,
  unavailable,
  wrap,
} from '@mlserve/core';
import { MemoryBudget, type MemoryReport, parseBytes } from './budget.js';
import { buildPipeline } from './build.js';
import type { CacheRedisConfig, ModelConfig } from './config.js';
import { type ModelState, newModelState, VersionLifecycle, type VersionRecord } from './lifecycle.js';
import type { Loaders } from './loaders.js';
import { assertSafeName, resolveInside } from './paths.js';
import { planVersion, signatureDifference } from './plan.js';
import { reconcile, retirements } from './reconcile.js';
import { replayRequests } from './replay.js';
import { RolloutRun } from './rollout.js';
import { applyLabels, splitTraffic } from './routing.js';
import { listModels, repositoryRoot, type ScannedVersion, scanModel } from './scan.js';
import type {
  PollReport,
  RepositoryEvents,
  RepositoryLogger,
  RepositoryStats,
  VersionEvent,
  VersionInfo,
} from './types.js';
import { Watcher } from './watch.js';

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
  /**
   * ONNX intra-op threads of sessions whose config does not set them. Default
   * ({@link defaultServing}): `cpus - 1` (1 to 4 in the main thread, up to 8 in a worker; 1 on 2
   * CPUs), so onnxruntime never takes the event loop's core.
   */
  intraOpThreads?: number;
  /**
   * Run every model without a `workers` config in a pool of this many threads; 0 runs them in the
   * main thread. Default ({@link defaultServing}): the main thread on up to 2 CPUs; on 3 or more
   * (the CPUs this process may use, cgroup quota included), ONNX models loaded by the default loader
   * run in one worker thread.
   */
  workers?: number;
  /**
   * The CPUs this repository's defaults may use (placement and threads, see `defaultServing`).
   * Default `cpuBudget()`: every CPU this process may use. A process of a cluster passes its share.
   */
  cpus?: number;
  /** Versions loading at once (default 2): loads compete with serving for the same cores. */
  loadConcurrency?: number;
  /** Turn warmup off everywhere (default: on, as each config says). */
  warmup?: boolean;
  /**
   * The store of a model's response cache (a `@mlserve/cache` `CacheStore`, e.g. `redisStore`), given
   * its config.json `cache.redis` (undefined when absent); undefined keeps the in-process store.
   * With a store, `max`/`maxSize` are dropped (the store bounds itself) and `ttlMs` defaults to
   * 10 minutes. `mlserve serve --cache-redis` sets it.
   */
  cacheStore?: (name: string, redis: CacheRedisConfig | undefined) => object | undefined;
  /**
   * Serve models on demand under this memory budget (bytes, or a size such as `'2GiB'`; `mlserve
   * serve --model-memory-budget 2GiB`). Each version is loaded once at its first scan, one load at
   * a time, to measure its cost (process RSS after load and warmup minus before) and read its
   * metadata; when a load would go over the budget, the least recently used idle versions are
   * unloaded first (never one with requests in flight, never a `pinned` one or one in a rollout),
   * and an unloaded version loads again on its next request, which waits within its deadline or
   * gets UNAVAILABLE (503) with a retry hint. Absent: every version stays loaded (as before).
   */
  modelMemoryBudget?: number | string;
  /**
   * What a version counts against the budget, given its measured cost in bytes (default: the
   * measured cost). For tests and for operators who know better than RSS (a model that maps its
   * weights, say).
   */
  memoryCost?: (name: string, version: string, measuredBytes: number) => number;
}

/**
 * The model repository extension's hooks for `@mlserve/http` and `@mlserve/grpc`
 * (`management: repo.management()`).
 */
export interface ManagementHooks {
  /** Loads (or refreshes) a model by name; rejects UNAVAILABLE naming each version that failed. */
  load: (name: string, parameters?: Record<string, unknown>) => Promise<void>;
  /** Unloads every version of a model after its requests in flight; polling leaves it unloaded until `load`. */
  unload: (name: string, parameters?: Record<string, unknown>) => Promise<void>;
  /** Models on disk that are not loaded, with why. */
  index: () => Promise<{ name: string; state: string; reason: string }[]>;
  /** Promotes a version held by a rollout (in shadow, canary or rejected) to serve, whatever its figures. */
  promote: (name: string, version: string) => Promise<void>;
  /** Rejects a version in shadow or canary steps: it stays loaded but answers no client. */
  reject: (name: string, version: string, reason?: string) => Promise<void>;
}

const emptyReport = (): PollReport => ({ loaded: [], failed: [], retired: [], removed: [] });

/**
 * A model repository on disk, served through a {@link ModelRegistry}. Create one with
 * {@link loadRepository}. It composes the repository's parts: scanning (`scan.ts`), reconciling
 * (`reconcile.ts`), the version lifecycle (`lifecycle.ts`), pipeline building (`build.ts`),
 * routing (`routing.ts`) and watching (`watch.ts`).
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
  readonly #lifecycle: VersionLifecycle;
  readonly #watcher: Watcher;
  /** The rollout in progress per model (one candidate at a time). */
  readonly #rollouts = new Map<string, RolloutRun>();
  #root: string | undefined;
  #lock: Promise<unknown> = Promise.resolve();
  #polling: Promise<PollReport> | undefined;
  #closing: Promise<void> | undefined;
  #polledOnce = false;
  readonly #budget: MemoryBudget | undefined;

  /** Use {@link loadRepository}; the constructor does no I/O (call `poll()` to load). */
  constructor(dir: string, options: RepositoryOptions = {}) {
    super();
    this.dir = dir;
    this.#options = options;
    this.#ownsRegistry = options.registry === undefined;
    this.registry = options.registry ?? new ModelRegistry();
    if (options.modelMemoryBudget !== undefined) {
      this.#budget = new MemoryBudget(parseBytes(options.modelMemoryBudget, 'modelMemoryBudget'), {
        ...(options.memoryCost && { cost: options.memoryCost }),
        event: (e) => {
          // Loads at a scan report `ready` through the lifecycle; here only what the budget adds.
          if (e.kind === 'loaded' && e.cause === 'start') return;
          const rec = this.#models.get(e.name)?.versions.get(e.version);
          this.#emitVersion({
            name: e.name,
            version: e.version,
            phase: e.kind === 'evicted' ? 'evicted' : 'coldStart',
            ...(rec && { file: rec.file }),
            ...(rec?.backend && { backend: rec.backend }),
            ...(e.ms !== undefined && { ms: e.ms }),
            bytes: e.bytes,
          });
          this.#log(
            'info',
            e.kind === 'evicted'
              ? `${e.name}/${e.version} unloaded to make room (memory budget)`
              : `${e.name}/${e.version} loaded on demand in ${Math.round(e.ms ?? 0)} ms`,
            { model: e.name, version: e.version, bytes: e.bytes },
          );
        },
        warn: (message) => this.#log('warn', message),
      });
    }
    this.#lifecycle = new VersionLifecycle(
      {
        registry: this.registry,
        stats: this.#stats,
        root: () => this.#root!,
        closed: () => this.closed,
        emit: (e) => this.#emitVersion(e),
        log: (level, message, fields) => this.#log(level, message, fields),
        build: (name, sv, config, file) =>
          buildPipeline(
            {
              root: this.#root!,
              signal: this.#abort.signal,
              ...(options.loaders && { loaders: options.loaders }),
              ...(options.middleware && { middleware: options.middleware }),
              ...(options.intraOpThreads !== undefined && { intraOpThreads: options.intraOpThreads }),
              ...(options.workers !== undefined && { workers: options.workers }),
              ...(options.cpus !== undefined && { cpus: options.cpus }),
              ...(options.warmup !== undefined && { warmup: options.warmup }),
              ...(options.cacheStore && { cacheStore: options.cacheStore }),
              onWarmup: (backend, progress) =>
                this.#emitVersion({
                  name,
                  version: sv.version,
                  phase: 'warmup',
                  file,
                  backend,
                  ...(progress && { progress }),
                }),
              debug: (message, fields) => this.#log('debug', message, fields),
              info: (message, fields) => this.#log('info', message, fields),
            },
            { name, version: sv.version, dir: sv.dir, file: sv.file, backend: sv.backend, config },
          ),
        serve: (name, version, model) => this.#tap(name, version, model),
        admit: (state, rec, config) => this.#admit(state, rec, config),
        gone: (name, version) => this.#gone(name, version),
        ...(this.#budget && {
          budget: this.#budget,
          plan: async (name: string, sv: ScannedVersion, config: ModelConfig) => {
            const planned = await planVersion(
              {
                root: this.#root!,
                ...(options.loaders && { loaders: options.loaders }),
                ...(options.workers !== undefined && { workers: options.workers }),
              },
              { name, version: sv.version, dir: sv.dir, file: sv.file, backend: sv.backend, config },
            );
            if ('why' in planned) return planned;
            return { ...planned, differs: (loaded) => signatureDifference(planned.metadata, loaded) };
          },
          pinned: (name: string) =>
            this.#models.get(name)?.config?.pinned === true || this.#rollouts.has(name),
        }),
      },
      options.loadConcurrency ?? 2,
    );
    this.#watcher = new Watcher({
      poll: () => this.poll(),
      root: () => this.#rootDir(),
      settling: () => [...this.#models.values()].some((m) => m.seen.size > 0),
      closed: () => this.closed,
      warn: (message) => this.#log('warn', message),
      error: (message) => this.#log('error', message),
    });
    // One routing model: a canary step's weights while a rollout is in canary, else the
    // config's fixed `traffic` split, else the latest ready version.
    this.registry.setResolver((name, versions, opts) => {
      const weights = this.#rollouts.get(name)?.weights() ?? this.#models.get(name)?.config?.traffic;
      return weights ? splitTraffic(weights, name, versions, opts) : undefined;
    });
    // A version removed from the registry behind the repository's back stays unloaded until
    // loadModel(), instead of being reloaded by the next poll.
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
   * The model repository extension's hooks for `@mlserve/http` and `@mlserve/grpc`
   * (`management: repo.management()`): `load` runs {@link Repository.loadModel} and fails when a
   * version failed to load; `unload` runs {@link Repository.unloadModel}; `index` lists models on
   * disk that are not loaded.
   *
   * @example
   * ```ts
   * await app.register(mlservePlugin, { registry: repo.registry, management: repo.management() });
   * ```
   */
  management(): ManagementHooks {
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
      unload: async (name) => this.unloadModel(name),
      promote: async (name, version) => this.promote(name, version),
      reject: async (name, version, reason) => this.reject(name, version, reason),
      index: async () => {
        const names = await listModels(await this.#rootDir());
        const loaded = new Set(this.registry.names());
        const rows: { name: string; version?: string; state: string; reason: string }[] = names
          .filter((n) => !loaded.has(n))
          .map((n) => ({
            name: n,
            state: 'UNAVAILABLE',
            reason: this.#models.get(n)?.disabled ? 'unloaded' : 'not loaded',
          }));
        // Under a memory budget: which served versions are loaded now, which load on demand.
        for (const v of this.#budget?.report().versions ?? []) {
          const mib = (v.bytes / 2 ** 20).toFixed(1);
          rows.push({
            name: v.name,
            version: v.version,
            state: 'READY',
            reason: v.resident
              ? `loaded (${mib} MiB of the memory budget${v.pinned ? ', pinned' : ''})`
              : `not loaded: loads on its next request (${v.measured ? '' : 'about '}${mib} MiB${v.measured ? '' : ', estimated'})`,
          });
        }
        return rows;
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

  /**
   * The memory budget's figures (`modelMemoryBudget`): what each version costs, which are loaded,
   * loads, cold starts, evictions. Undefined without a budget.
   *
   * @example
   * ```ts
   * const m = repo.memory();
   * if (m) console.log(`${m.used} of ${m.budget} bytes, ${m.evictions} evictions`);
   * ```
   */
  memory(): MemoryReport | undefined {
    return this.#budget?.report();
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
        const rollout = this.registry.status(state.name, rec.version)?.rollout;
        if (rollout) info.rollout = rollout;
        const resident = this.#budget?.resident(state.name, rec.version);
        if (resident !== undefined) info.resident = resident;
        out.push(info);
      }
    }
    return out;
  }

  async #rootDir(): Promise<string> {
    this.#root ??= await repositoryRoot(this.dir);
    return this.#root;
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
    if (this.closed) return Promise.resolve(emptyReport());
    this.#polling ??= this.#exclusive(() => this.#poll()).finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  async #poll(): Promise<PollReport> {
    const started = performance.now();
    const report = emptyReport();
    const initial = !this.#polledOnce;
    this.#polledOnce = true;
    this.#stats.polls++;
    const root = await this.#rootDir();
    let names: string[];
    try {
      names = await listModels(root);
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
      await resolveInside(root, name);
      const state = this.#models.get(name);
      if (state) state.disabled = false;
      const report = emptyReport();
      const found = await this.#syncModel(name, true, report);
      if (!found) throw notFound(`model "${name}" is not a directory in the repository`);
      return report;
    });
  }

  /**
   * Unloads every version of a model after its requests in flight; polling leaves it unloaded
   * until `loadModel(name)`. NOT_FOUND for a model neither loaded nor known.
   */
  unloadModel(name: string): Promise<void> {
    assertSafeName(name);
    return this.#exclusive(async () => {
      const state = this.#models.get(name);
      if (!state && this.registry.versions(name).length === 0) throw notFound(`unknown model "${name}"`);
      await this.#removeModel(name, emptyReport());
      this.#models.set(name, newModelState(name, true));
    });
  }

  async #removeModel(name: string, report: PollReport): Promise<void> {
    const state = this.#models.get(name);
    this.#models.delete(name);
    await this.#lifecycle.unloadModel(name, state, report);
  }

  /** Scans one model and acts on what reconciling decides. False when it is not a directory. */
  async #syncModel(name: string, force: boolean, report: PollReport): Promise<boolean> {
    if (this.closed) return true;
    let state = this.#models.get(name);
    if (state?.disabled) return true;
    const root = await this.#rootDir();
    let scan: Awaited<ReturnType<typeof scanModel>>;
    try {
      scan = await scanModel(root, name, (message, fields) => this.#log('warn', message, fields));
    } catch (err) {
      this.#log('warn', `skipping model ${name}: ${toServeError(err).message}`, { model: name });
      return true;
    }
    if (!scan) return false;
    if (!state) {
      state = newModelState(name);
      this.#models.set(name, state);
    }
    const plan = reconcile(state, scan, force);
    const change = plan.configChange;
    if (change) {
      state.configFp = change.configFp;
      if (change.kind === 'invalid') {
        state.configError = change.error;
        this.#stats.configErrors++;
        const keeps = change.keepsServing ? '; the versions already loaded keep serving' : '';
        this.#log('error', `${change.error.message}${keeps}`, { model: name });
        this.emit('configError', name, change.error);
      } else {
        if (change.hadConfig) this.#log('info', `${scan.configFile} changed`);
        state.config = change.config;
        state.configError = undefined;
      }
    }
    state.seen = plan.seen;
    const work: Promise<void>[] = [];
    for (const action of plan.actions) {
      const sv = scan.versions.get(action.version)!;
      if (action.type === 'wait') {
        this.#emitVersion({ name, version: action.version, phase: 'waiting', file: relative(root, sv.file) });
        this.#log('debug', `${name}/${action.version}: waiting for its files to stop changing`);
      } else if (action.type === 'load') {
        work.push(this.#lifecycle.load(state, sv, action.config, report));
      } else {
        const rec = state.versions.get(action.version)!;
        work.push(this.#lifecycle.reload(state, rec, sv, action.config, action.key, report));
      }
    }
    await Promise.all(work);
    const retire = retirements(state, new Set(scan.versions.keys()), plan.desired);
    await Promise.all(retire.map((v) => this.#lifecycle.retire(state, state.versions.get(v)!, report)));
    if (plan.config) {
      const s = state;
      applyLabels(
        this.registry,
        name,
        plan.config.labels,
        (v) => s.versions.get(v)?.state === 'ready' && !s.versions.get(v)?.gated,
        s.appliedLabels,
      );
    }
    return true;
  }

  /** The serving version of a model: the latest ready one not held by a rollout. */
  #serving(state: ModelState, except: string): VersionRecord | undefined {
    const ready = [...state.versions.values()]
      .filter((r) => r.version !== except && r.state === 'ready' && !r.gated)
      .sort((a, b) => compareVersions(a.version, b.version));
    return ready[ready.length - 1];
  }

  /** A new version was built: with a rollout config and a version serving, it starts held. */
  #admit(state: ModelState, rec: VersionRecord, config: ModelConfig): void {
    const rollout = config.rollout;
    if (!rollout || (!rollout.gate && !rollout.canary) || this.closed) return;
    const stable = this.#serving(state, rec.version);
    if (!stable) return;
    // Under a memory budget the serving version may have been unloaded to make room for this one:
    // the shadow compares against it, so load it again (both stay loaded while the rollout runs).
    this.#budget?.load(state.name, stable.version);
    // A version served on demand is not loaded yet: the shadow runs on it.
    this.#budget?.load(state.name, rec.version);
    const { name } = state;
    this.#rollouts.get(name)?.stop();
    rec.gated = true;
    const candidate = rec.version;
    const run: RolloutRun = new RolloutRun({
      name,
      stable: { version: stable.version, base: () => this.#base(state, stable.version) },
      candidate: { version: candidate, base: () => this.#base(state, candidate) },
      gate: rollout.gate,
      canary: rollout.canary,
      replay: async () => {
        const base = this.#base(state, stable.version);
        if (!base) return [];
        const source = rollout.gate?.replay;
        if (source === false) return [];
        const payloadLog =
          source && typeof source === 'object'
            ? await resolveInside(this.#root!, name, source.payloadLog)
            : undefined;
        return replayRequests(base.metadata(), config.warmup, payloadLog ? { payloadLog } : {});
      },
      update: (status) => {
        if (this.#rollouts.get(name) !== run) return;
        this.#setRollout(name, candidate, status);
      },
      done: (outcome, status) => {
        if (this.#rollouts.get(name) === run) this.#rollouts.delete(name);
        this.#conclude(state, candidate, outcome, status);
      },
      log: (message) => this.#log('info', message, { model: name, version: candidate }),
    });
    this.#rollouts.set(name, run);
    run.start();
  }

  /** A version's innermost model, while it is loaded (under a budget it may have been unloaded). */
  #base(state: ModelState, version: string): Model | undefined {
    if (this.#budget?.resident(state.name, version) === false) return undefined;
    return state.versions.get(version)?.base;
  }

  #setRollout(name: string, version: string, status: RolloutStatus): void {
    if (!this.registry.status(name, version) || this.registry.status(name, version)?.version !== version)
      return;
    this.registry.setRollout(name, version, status);
    const rec = this.#models.get(name)?.versions.get(version);
    this.#emitVersion({
      name,
      version,
      phase: status.phase,
      ...(rec && { file: rec.file }),
      ...(rec?.backend && { backend: rec.backend }),
      rollout: status,
    });
  }

  /** A rollout ended: a promoted version serves (the one it replaces retires), a rejected one stays held. */
  #conclude(
    state: ModelState,
    version: string,
    outcome: 'promoted' | 'rejected',
    status: RolloutStatus,
  ): void {
    const rec = state.versions.get(version);
    if (!rec || this.closed) return;
    rec.gated = outcome === 'rejected';
    this.#setRollout(state.name, version, status);
    if (outcome === 'promoted') {
      // Retire what the policy no longer keeps, and move labels, now that the new version serves.
      void this.#exclusive(() => this.#syncModel(state.name, false, emptyReport())).catch((err: unknown) =>
        this.#log('error', `after promoting ${state.name}/${version}: ${toServeError(err).message}`),
      );
    }
  }

  #gone(name: string, version: string): void {
    const run = this.#rollouts.get(name);
    if (!run) return;
    if (run.candidate === version) {
      run.stop();
      this.#rollouts.delete(name);
    } else if (run.stable === version) {
      // Nothing left to compare with: the new version serves.
      run.promote('the serving version was removed');
    }
  }

  /** What the registry serves: mirrors live requests to a shadow and counts canary outcomes. */
  #tap(name: string, version: string, model: Model): Model {
    const rollouts = this.#rollouts;
    return wrap(model, {
      layer: 'rollout',
      infer: async function rolloutTap(inputs, options) {
        const run = rollouts.get(name);
        if (!run) return model.infer(inputs, options);
        const copy = run.stable === version && run.wantsCopy() ? run.copy(inputs) : undefined;
        const started = performance.now();
        let out: Awaited<ReturnType<Model['infer']>>;
        try {
          out = await model.infer(inputs, options);
        } catch (err) {
          run.observe(version, performance.now() - started, (toServeError(err).status ?? 500) >= 500);
          throw err;
        }
        run.observe(version, performance.now() - started, false);
        if (copy) run.mirror(copy);
        return out;
      },
    });
  }

  /**
   * Promotes a version held by a rollout (in shadow, in a canary step, or rejected): it serves at
   * once, whatever its figures, and the version it replaces retires as the policy says.
   *
   * @example
   * ```ts
   * await repo.promote('mnist', '2');
   * ```
   */
  async promote(name: string, version: string): Promise<void> {
    assertSafeName(name);
    const run = this.#rollouts.get(name);
    if (run?.candidate === version) {
      run.promote();
      return;
    }
    const state = this.#models.get(name);
    const rec = state?.versions.get(version);
    if (!state || !rec) throw notFound(`unknown version "${version}" of model "${name}"`);
    if (!rec.gated) throw invalidArgument(`${name}/${version} is not held by a rollout`);
    this.#conclude(state, version, 'promoted', { phase: 'promoted', reason: 'promoted by hand' });
  }

  /**
   * Rejects a version in shadow or in canary steps: it stops taking traffic and stays loaded,
   * held (`rejected` in `registry.list()`), until a newer version replaces it or it is promoted.
   *
   * @example
   * ```ts
   * await repo.reject('mnist', '2', 'bad outputs on the holdout set');
   * ```
   */
  async reject(name: string, version: string, reason = 'rejected by hand'): Promise<void> {
    assertSafeName(name);
    const run = this.#rollouts.get(name);
    if (run?.candidate === version) {
      run.reject(reason);
      return;
    }
    const rec = this.#models.get(name)?.versions.get(version);
    if (!rec) throw notFound(`unknown version "${version}" of model "${name}"`);
    throw invalidArgument(
      `${name}/${version} is not in a rollout: only a version in shadow or canary can be rejected`,
    );
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
    this.#watcher.start(intervalMs, options);
    return () => this.#watcher.stop();
  }

  /**
   * Stops polling, stops warmups, and unloads every version after its requests in flight (the
   * whole registry when the repository created it). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#watcher.stop();
      this.#abort.abort();
      for (const run of this.#rollouts.values()) run.stop();
      this.#rollouts.clear();
      if (this.#ownsRegistry) await this.registry.close();
      else
        await Promise.all(
          [...this.#models.keys()].map((n) => this.registry.remove(n).catch(() => undefined)),
        );
      await this.#lifecycle.drain();
    })();
    return this.#closing;
  }
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
