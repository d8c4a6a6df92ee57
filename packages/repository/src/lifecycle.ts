/**
 * Version lifecycle: loading a version into the registry, rebuilding it in place, retiring it,
 * unloading a model; with a bound on loads running at once (they compete with serving for cores).
 */
import { relative } from 'node:path';
import { invalidArgument, type Model, type ModelRegistry, toServeError, unavailable } from '@mlserve/core';
import type { MemoryBudget, Planned } from './budget.js';
import type { BuiltPipeline } from './build.js';
import type { ModelConfig } from './config.js';
import type { ModelView, VersionView } from './reconcile.js';
import type { ScannedVersion } from './scan.js';
import { type Swappable, swappable } from './swap.js';
import type { PollReport, RepositoryLogger, RepositoryStats, VersionEvent } from './types.js';

/** What the repository holds of one version. */
export interface VersionRecord extends VersionView {
  version: string;
  /** The model file, relative to the repository. */
  file: string;
  backend?: string;
  platform?: string;
  error?: string;
  /** The served model, whose implementation a reload replaces. */
  handle?: Swappable;
  /** The innermost model (no validation, cache or batching): what shadow comparisons time. */
  base?: Model;
  /** Under a memory budget: what a load on demand builds from (a reload updates it). */
  source?: { sv: ScannedVersion; config: ModelConfig };
  /** Under a memory budget: served before its first load, its metadata from here. */
  planned?: string;
}

/** What the repository holds of one model. */
export interface ModelState extends ModelView {
  name: string;
  versions: Map<string, VersionRecord>;
  seen: Map<string, string>;
  /** Unloaded by hand: polling leaves it alone until it is loaded by hand. */
  disabled: boolean;
  /** The registry labels the repository set for this model. */
  appliedLabels: Set<string>;
}

/**
 * A fresh model state.
 *
 * @example
 * ```ts
 * models.set('mnist', newModelState('mnist'));
 * ```
 */
export function newModelState(name: string, disabled = false): ModelState {
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

/** What a {@link VersionLifecycle} works with. */
export interface LifecycleHost {
  registry: ModelRegistry;
  /** Counters it updates (loads, loadFailures, retired, unloadedModels). */
  stats: RepositoryStats;
  /** The repository's real path. */
  root(): string;
  closed(): boolean;
  emit(event: VersionEvent): void;
  log(level: keyof RepositoryLogger, message: string, fields?: Record<string, unknown>): void;
  /** Builds a version's pipeline (see `buildPipeline`); `file` is for progress events. */
  build(name: string, sv: ScannedVersion, config: ModelConfig, file: string): Promise<BuiltPipeline>;
  /** Wraps what the registry serves (request accounting, mirroring). Default: as it is. */
  serve?(name: string, version: string, model: Model): Model;
  /** A version was built and is about to turn ready (a rollout may hold it first). */
  admit?(state: ModelState, rec: VersionRecord, config: ModelConfig): void;
  /** A version left the registry (retired, unloaded, or failed while loading). */
  gone?(name: string, version: string): void;
  /** With a memory budget: versions load through it, and load again on demand after it unloads them. */
  budget?: MemoryBudget;
  /** Under a budget: whether a model's versions must stay loaded (config.json `pinned`, a rollout). */
  pinned?(name: string): boolean;
  /**
   * Under a budget: a version's metadata without loading it (config.json's `inputs`/`outputs`, the
   * ONNX header), so it is served on demand from the start; `{ why }` when only a load can tell.
   */
  plan?(name: string, sv: ScannedVersion, config: ModelConfig): Promise<Planned | { why: string }>;
}

/**
 * Loads, reloads, retires and unloads versions for a repository. Every operation reports through
 * the host's events and log and records its outcome in the {@link VersionRecord}.
 *
 * @example
 * ```ts
 * const lifecycle = new VersionLifecycle(host, 2);
 * await lifecycle.load(state, scanned, config, report);
 * ```
 */
export class VersionLifecycle {
  readonly #host: LifecycleHost;
  readonly #loads = new Set<Promise<unknown>>();
  #slots: number;
  readonly #waiting: (() => void)[] = [];

  constructor(host: LifecycleHost, loadConcurrency: number) {
    this.#host = host;
    this.#slots = Math.max(1, loadConcurrency);
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

  #track(work: Promise<unknown>): void {
    this.#loads.add(work);
    void work.finally(() => this.#loads.delete(work));
  }

  /** Resolves once no load or reload is running. */
  async drain(): Promise<void> {
    while (this.#loads.size > 0) await Promise.allSettled([...this.#loads]);
  }

  /**
   * Loads a version into the registry (failing with the config's error when `config` is
   * undefined). Never rejects: a failure is recorded, reported and logged.
   */
  load(
    state: ModelState,
    sv: ScannedVersion,
    config: ModelConfig | undefined,
    report: PollReport,
  ): Promise<void> {
    const host = this.#host;
    const { name } = state;
    const { version } = sv;
    const rec: VersionRecord = {
      version,
      state: 'loading',
      fp: sv.fp,
      configFp: state.configFp ?? '',
      file: relative(host.root(), sv.file) || '.',
    };
    state.versions.set(version, rec);
    const started = performance.now();
    host.stats.loads++;
    host.emit({ name, version, phase: 'loading', file: rec.file });
    host.log('info', `loading ${name}/${version} from ${rec.file}`, { model: name, version });
    const configError = state.configError;
    const load = host.registry
      .load(name, version, async () => {
        if (!config) throw configError ?? invalidArgument(`${name}: no valid config`);
        await this.#acquire();
        try {
          if (host.closed()) throw unavailable('the repository is closing');
          if (host.budget) {
            rec.source = { sv, config };
            const planned = await host.plan?.(name, sv, config);
            if (planned && 'why' in planned) {
              host.log('info', `${name}/${version} loads now to read its metadata: ${planned.why}`, {
                model: name,
                version,
              });
            } else if (planned) {
              rec.planned = planned.from;
            }
            rec.handle = await host.budget.add(
              name,
              version,
              () => host.pinned?.(name) ?? false,
              async () => {
                const source = rec.source!;
                const built = await host.build(name, source.sv, source.config, rec.file);
                rec.backend = built.backend;
                rec.platform = built.platform;
                rec.pipelineKey = built.key;
                rec.base = built.base;
                return built.model;
              },
              planned && !('why' in planned) ? planned : undefined,
            );
          } else {
            const built = await host.build(name, sv, config, rec.file);
            rec.backend = built.backend;
            rec.platform = built.platform;
            rec.pipelineKey = built.key;
            rec.base = built.base;
            rec.handle = swappable(built.model);
          }
          host.admit?.(state, rec, config);
          return host.serve ? host.serve(name, version, rec.handle) : rec.handle;
        } finally {
          this.#release();
        }
      })
      .then(
        () => {
          rec.state = 'ready';
          const ms = performance.now() - started;
          report.loaded.push(`${name}/${version}`);
          const resident = host.budget?.resident(name, version);
          host.log(
            'info',
            resident === false
              ? `${name}/${version} ready: loads on its first request (metadata from ${rec.planned ?? 'its last load'})`
              : `${name}/${version} ready (${rec.backend ?? sv.backend}, ${Math.round(ms)} ms)`,
            { model: name, version },
          );
          host.emit({
            name,
            version,
            phase: 'ready',
            file: rec.file,
            backend: rec.backend ?? sv.backend,
            ms,
            ...(resident !== undefined && { resident }),
          });
        },
        (err: unknown) => {
          const e = toServeError(err);
          rec.state = 'failed';
          rec.error = e.message;
          host.gone?.(name, version);
          if (host.closed()) return;
          host.stats.loadFailures++;
          report.failed.push(`${name}/${version}`);
          host.log('error', `${name}/${version} failed to load: ${e.message}`, {
            model: name,
            version,
            code: e.code,
          });
          host.emit({ name, version, phase: 'failed', file: rec.file, error: e.message });
        },
      );
    this.#track(load);
    return load;
  }

  /** Rebuilds a served version (new files or pipeline settings) and swaps it in; on failure the old one stays. */
  async reload(
    state: ModelState,
    rec: VersionRecord,
    sv: ScannedVersion,
    config: ModelConfig,
    key: string,
    report: PollReport,
  ): Promise<void> {
    const host = this.#host;
    const { name } = state;
    const { version } = rec;
    const handle = rec.handle;
    if (!handle) return;
    rec.reloading = true;
    const started = performance.now();
    if (host.budget && rec.source && host.budget.resident(name, version) === false) {
      // Not loaded now: nothing to rebuild. Its next load builds from the new files and config.
      try {
        const planned = await host.plan?.(name, sv, config);
        rec.source = { sv, config };
        host.budget.replan(name, version, planned && !('why' in planned) ? planned : undefined);
        if (planned && !('why' in planned)) rec.planned = planned.from;
        rec.fp = sv.fp;
        rec.pipelineKey = key;
        rec.configFp = state.configFp ?? '';
        report.loaded.push(`${name}/${version}`);
        host.log('info', `${name}/${version} changed while not loaded: its next load uses the new files`, {
          model: name,
          version,
        });
        host.emit({
          name,
          version,
          phase: 'reloaded',
          file: rec.file,
          ms: performance.now() - started,
          resident: false,
        });
      } finally {
        rec.reloading = false;
      }
      return;
    }
    host.log('info', `reloading ${name}/${version}: its files or config.json changed`, {
      model: name,
      version,
    });
    const work = (async () => {
      await this.#acquire();
      try {
        if (host.closed()) return;
        const built = await host.build(name, sv, config, rec.file);
        rec.backend = built.backend;
        rec.platform = built.platform;
        if (host.closed() || state.versions.get(version) !== rec) {
          await built.model.dispose();
          return;
        }
        // The old implementation finishes its requests in flight, then is disposed.
        if (rec.source) rec.source = { sv, config };
        const retired = handle.swap(built.model);
        rec.base = built.base;
        rec.fp = sv.fp;
        rec.pipelineKey = key;
        rec.configFp = state.configFp ?? '';
        report.loaded.push(`${name}/${version}`);
        host.emit({
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
        host.stats.loadFailures++;
        report.failed.push(`${name}/${version}`);
        host.log(
          'error',
          `${name}/${version} failed to reload (the loaded one keeps serving): ${e.message}`,
          {
            model: name,
            version,
          },
        );
        host.emit({ name, version, phase: 'reloadFailed', file: rec.file, error: e.message });
      } finally {
        this.#release();
        rec.reloading = false;
      }
    })();
    this.#track(work);
    await work;
  }

  /** Removes a version from the registry after its requests in flight. */
  async retire(state: ModelState, rec: VersionRecord, report: PollReport): Promise<void> {
    const host = this.#host;
    const { name } = state;
    state.versions.delete(rec.version);
    host.gone?.(name, rec.version);
    const started = performance.now();
    if (host.registry.status(name, rec.version)) {
      await host.registry.remove(name, rec.version).catch(() => undefined);
    }
    if (rec.state !== 'failed') {
      host.stats.retired++;
      report.retired.push(`${name}/${rec.version}`);
      host.log('info', `${name}/${rec.version} retired`, { model: name, version: rec.version });
      host.emit({
        name,
        version: rec.version,
        phase: 'retired',
        file: rec.file,
        ms: performance.now() - started,
      });
    }
  }

  /** Removes every version of a model from the registry after its requests in flight. */
  async unloadModel(name: string, state: ModelState | undefined, report: PollReport): Promise<void> {
    const host = this.#host;
    if (host.registry.versions(name).length === 0) return;
    host.log('info', `model ${name} was removed: unloading after requests in flight`, { model: name });
    await host.registry.remove(name).catch(() => undefined);
    host.stats.unloadedModels++;
    report.removed.push(name);
    for (const rec of state?.versions.values() ?? []) {
      host.gone?.(name, rec.version);
      host.emit({ name, version: rec.version, phase: 'unloaded', file: rec.file });
    }
  }
}
