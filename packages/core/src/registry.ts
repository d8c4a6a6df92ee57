import { warnDeprecated } from './deprecated.js';
import { Emitter } from './emitter.js';
import { invalidArgument, notFound, type ServeError, toServeError, unavailable } from './errors.js';
import { InFlight } from './in-flight.js';
import type { InferOptions, Model, Tensors } from './types.js';

/** The life of one model version in a {@link ModelRegistry}. */
export type VersionState = 'loading' | 'ready' | 'unavailable' | 'unloading' | 'failed';

/**
 * Where a version stands in a gated rollout (set by a model repository through
 * {@link ModelRegistry.setRollout}). A version in `shadow` or `rejected` is loaded but held: it
 * answers no client (requests naming it get UNAVAILABLE, default routing skips it).
 */
export interface RolloutStatus {
  phase: 'shadow' | 'canary' | 'promoted' | 'rejected';
  /** Percent of the model's default traffic it takes (canary steps). */
  weight?: number;
  /** Why it was rejected or rolled back. */
  reason?: string;
  /** The gate's figures: p99 of each version, their ratio, agreement, requests compared, ... */
  figures?: Record<string, number>;
}

/** One row of {@link ModelRegistry.list}. */
export interface VersionStatus {
  name: string;
  version: string;
  state: VersionState;
  ready: boolean;
  labels: string[];
  inFlight: number;
  /** Why a load failed. */
  error?: string;
  /** Its place in a gated rollout, when it has one. */
  rollout?: RolloutStatus;
}

interface Entry {
  name: string;
  version: string;
  state: VersionState;
  model: Model | undefined;
  inFlight: InFlight;
  handle: Model | undefined;
  error?: ServeError;
  removing?: Promise<void>;
  rollout?: RolloutStatus;
}

const held = (e: Entry) => e.rollout?.phase === 'shadow' || e.rollout?.phase === 'rejected';

/** Events a {@link ModelRegistry} emits. */
export interface RegistryEvents {
  state: [status: VersionStatus];
  error: [error: ServeError, name: string, version: string];
}

/** How `get()` resolves a request with no version: override to route traffic (labels, splits). */
export type VersionResolver = (
  name: string,
  versions: readonly string[],
  options?: InferOptions,
) => string | undefined;

/** Compares versions: numerically where both are integers, else as strings. */
export function compareVersions(a: string, b: string): number {
  const x = Number(a);
  const y = Number(b);
  if (Number.isInteger(x) && Number.isInteger(y) && /^\d+$/.test(a) && /^\d+$/.test(b)) return x - y;
  return a < b ? -1 : a > b ? 1 : 0;
}

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * Many models by name and version, what a server mounts. `get(name, version | label)` returns
 * the version asked for (the latest ready one when none is named); requests through it are
 * counted so that `remove()` can stop new requests, wait for those in flight, then dispose.
 * `close()` turns every version not ready at once, drains and disposes them: call it on SIGTERM.
 *
 * @example
 * ```ts
 * const registry = new ModelRegistry();
 * registry.add(await loadOnnxModel('mnist.onnx', { name: 'mnist', version: '1' }));
 * registry.setLabel('mnist', 'stable', '1');
 * const out = await registry.get('mnist', 'stable').infer({ image });
 * process.on('SIGTERM', () => registry.close());
 * ```
 */
export class ModelRegistry extends Emitter<RegistryEvents> {
  readonly #models = new Map<string, Map<string, Entry>>();
  readonly #labels = new Map<string, Map<string, string>>();
  #closing = false;
  #resolver: VersionResolver | undefined;

  constructor(options: { resolver?: VersionResolver } = {}) {
    super();
    this.#resolver = options.resolver;
  }

  /** True once `close()` has been called. */
  get closing(): boolean {
    return this.#closing;
  }

  /** Sets the resolver that picks a version when a request names none. */
  setResolver(resolver: VersionResolver | undefined): void {
    this.#resolver = resolver;
  }

  /** Adds a loaded model under its own name and version; it is ready at once (if it says so). */
  add(model: Model, options: { labels?: string[] } = {}): void {
    const entry = this.#newEntry(model.name, model.version);
    entry.model = model;
    this.#setState(entry, 'ready');
    for (const label of options.labels ?? []) this.setLabel(model.name, label, model.version);
  }

  /**
   * Registers `name`/`version` as loading, runs `loader`, and makes it ready when it resolves.
   * A failing loader leaves the version `failed` (reported through the `error` event) and
   * rejects; other versions keep serving.
   */
  async load(name: string, version: string, loader: () => Promise<Model>): Promise<Model> {
    const entry = this.#newEntry(name, version);
    this.#setState(entry, 'loading');
    try {
      const model = await loader();
      if (entry.state !== 'loading') {
        await model.dispose();
        throw unavailable(`model "${name}" version ${version} was removed while it loaded`);
      }
      entry.model = model;
      this.#setState(entry, 'ready');
      return model;
    } catch (err) {
      const e = toServeError(err);
      if (entry.state === 'loading') {
        entry.error = e;
        this.#setState(entry, 'failed');
        if (this.listenerCount('error') > 0) this.emit('error', e, name, version);
      }
      throw e;
    }
  }

  #newEntry(name: string, version: string): Entry {
    if (this.#closing) throw unavailable('the registry is closing');
    if (!NAME_RE.test(name)) throw invalidArgument(`invalid model name ${JSON.stringify(name)}`);
    if (!NAME_RE.test(version)) throw invalidArgument(`invalid version ${JSON.stringify(version)}`);
    let versions = this.#models.get(name);
    if (!versions) {
      versions = new Map();
      this.#models.set(name, versions);
    }
    const existing = versions.get(version);
    if (existing && existing.state !== 'failed') {
      throw invalidArgument(`model "${name}" version ${version} is already registered`);
    }
    const entry: Entry = {
      name,
      version,
      state: 'loading',
      model: undefined,
      inFlight: new InFlight(),
      handle: undefined,
    };
    versions.set(version, entry);
    return entry;
  }

  #setState(entry: Entry, state: VersionState): void {
    entry.state = state;
    this.emit('state', this.#status(entry));
  }

  #status(entry: Entry): VersionStatus {
    const labels: string[] = [];
    for (const [label, v] of this.#labels.get(entry.name) ?? []) if (v === entry.version) labels.push(label);
    const s: VersionStatus = {
      name: entry.name,
      version: entry.version,
      state: entry.state,
      ready: this.#entryReady(entry),
      labels,
      inFlight: entry.inFlight.count,
    };
    if (entry.error) s.error = entry.error.message;
    if (entry.rollout) s.rollout = structuredClone(entry.rollout);
    return s;
  }

  #entryReady(entry: Entry): boolean {
    if (this.#closing || entry.state !== 'ready' || !entry.model || held(entry)) return false;
    return entry.model.isReady ? entry.model.isReady() : true;
  }

  /**
   * Sets (or clears, with undefined) a version's place in a gated rollout. While its phase is
   * `shadow` or `rejected` the version is held: requests naming it get UNAVAILABLE and default
   * routing skips it. Emits `state`. NOT_FOUND for an unknown version.
   *
   * @example
   * ```ts
   * registry.setRollout('mnist', '2', { phase: 'shadow' });
   * registry.setRollout('mnist', '2', { phase: 'promoted', figures: { agreement: 1 } });
   * ```
   */
  setRollout(name: string, version: string, rollout: RolloutStatus | undefined): void {
    const entry = this.#models.get(name)?.get(version);
    if (!entry) throw notFound(`unknown version "${version}" of model "${name}"`);
    if (rollout) entry.rollout = structuredClone(rollout);
    else delete entry.rollout;
    this.emit('state', this.#status(entry));
  }

  /** Points a label (`stable`, `canary`) at a version. */
  setLabel(name: string, label: string, version: string): void {
    if (!NAME_RE.test(label)) throw invalidArgument(`invalid label ${JSON.stringify(label)}`);
    let labels = this.#labels.get(name);
    if (!labels) {
      labels = new Map();
      this.#labels.set(name, labels);
    }
    labels.set(label, version);
  }

  /** Removes a label. */
  removeLabel(name: string, label: string): void {
    this.#labels.get(name)?.delete(label);
  }

  /** The version a label points at. */
  labelVersion(name: string, label: string): string | undefined {
    return this.#labels.get(name)?.get(label);
  }

  /** Names of the models that have at least one version. */
  names(): string[] {
    return [...this.#models.keys()].filter((n) => (this.#models.get(n)?.size ?? 0) > 0).sort();
  }

  /** Versions of a model, in ascending order. */
  versions(name: string): string[] {
    return [...(this.#models.get(name)?.keys() ?? [])].sort(compareVersions);
  }

  /** Every version of every model with its state. */
  list(): VersionStatus[] {
    const out: VersionStatus[] = [];
    for (const name of this.names()) {
      for (const v of this.versions(name)) out.push(this.#status(this.#models.get(name)!.get(v)!));
    }
    return out;
  }

  /** The status of one version (or of the version `get()` would pick), undefined if unknown. */
  status(name: string, version?: string): VersionStatus | undefined {
    const entry = this.#find(name, version);
    return entry ? this.#status(entry) : undefined;
  }

  /**
   * Whether the registry (no name), a model (its default version) or a version is ready.
   * Turns false as soon as `close()` starts.
   */
  isReady(name?: string, version?: string): boolean {
    if (this.#closing) return false;
    if (name === undefined) {
      for (const n of this.names()) {
        for (const e of this.#models.get(n)!.values()) {
          if (e.state === 'loading') return false;
        }
      }
      return true;
    }
    const entry = this.#find(name, version);
    return entry ? this.#entryReady(entry) : false;
  }

  #find(name: string, versionOrLabel?: string, options?: InferOptions): Entry | undefined {
    const versions = this.#models.get(name);
    if (!versions || versions.size === 0) return undefined;
    if (versionOrLabel !== undefined && versionOrLabel !== '') {
      const direct = versions.get(versionOrLabel);
      if (direct) return direct;
      const labelled = this.#labels.get(name)?.get(versionOrLabel);
      return labelled === undefined ? undefined : versions.get(labelled);
    }
    const readyVersions = [...versions.values()]
      .filter((e) => e.state === 'ready' && !held(e))
      .map((e) => e.version)
      .sort(compareVersions);
    if (this.#resolver) {
      const picked = this.#resolver(name, readyVersions, options);
      if (picked !== undefined) return versions.get(picked);
    }
    const latest = readyVersions[readyVersions.length - 1];
    if (latest !== undefined) return versions.get(latest);
    // None ready: report the newest so the caller gets a useful state.
    const all = [...versions.keys()].sort(compareVersions);
    return versions.get(all[all.length - 1]!);
  }

  /**
   * The model for `name` and a version or label (the resolver's pick, else the latest ready
   * version, when none is named). Throws NOT_FOUND for an unknown model or version and UNAVAILABLE
   * for one that is not ready. Requests through the returned model are counted for draining.
   */
  get(name: string, versionOrLabel?: string, options?: InferOptions): Model {
    // While and after closing, every request is UNAVAILABLE (503), never NOT_FOUND: a draining
    // server must not tell load balancers that its models vanished.
    if (this.#closing) throw unavailable('the server is shutting down');
    const entry = this.#find(name, versionOrLabel, options);
    if (!entry) {
      if (!this.#models.get(name)?.size) throw notFound(`unknown model "${name}"`);
      throw notFound(`unknown version "${versionOrLabel}" of model "${name}"`);
    }
    if (entry.state !== 'ready' || !entry.model) {
      const why = entry.error ? `: ${entry.error.message}` : '';
      throw unavailable(`model "${name}" version ${entry.version} is ${entry.state}${why}`);
    }
    if (held(entry)) {
      const why = entry.rollout?.reason ? `: ${entry.rollout.reason}` : '';
      throw unavailable(
        `model "${name}" version ${entry.version} is ${entry.rollout?.phase === 'shadow' ? 'in shadow, not serving yet' : 'rejected'}${why}`,
      );
    }
    entry.handle ??= this.#handle(entry);
    return entry.handle;
  }

  /** Shorthand for `get(name, version, options).infer(inputs, options)`. */
  infer(
    name: string,
    versionOrLabel: string | undefined,
    inputs: Tensors,
    options?: InferOptions,
  ): Promise<Tensors> {
    try {
      return this.get(name, versionOrLabel, options).infer(inputs, options);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #handle(entry: Entry): Model {
    const model = entry.model!;
    return {
      name: model.name,
      version: model.version,
      inner: model,
      metadata: () => model.metadata(),
      async infer(inputs, options) {
        if (entry.state !== 'ready') {
          throw unavailable(`model "${entry.name}" version ${entry.version} is ${entry.state}`);
        }
        entry.inFlight.enter();
        try {
          return await model.infer(inputs, options);
        } finally {
          entry.inFlight.leave();
        }
      },
      dispose: () => this.remove(entry.name, entry.version),
      isReady: () => this.#entryReady(entry),
      warmup: async () => model.warmup?.(),
      stats: () => model.stats?.() ?? {},
    };
  }

  /**
   * Retires a version (or every version when none is given): it stops taking new requests at
   * once, the requests in flight finish on it, then it is disposed and forgotten.
   */
  async remove(name: string, version?: string): Promise<void> {
    const versions = this.#models.get(name);
    if (!versions) throw notFound(`unknown model "${name}"`);
    const targets = version === undefined ? [...versions.values()] : [versions.get(version)];
    if (targets.some((e) => !e)) throw notFound(`unknown version "${version}" of model "${name}"`);
    await Promise.all(targets.map((e) => this.#retire(e!)));
  }

  /**
   * Alias of `remove(name)`: unload every version of a model.
   *
   * @deprecated Nothing in mlserve calls it: use {@link ModelRegistry.remove} (`remove(name)`
   * retires every version, as this does). It warns once (MLSERVE_DEPRECATED) and will be removed
   * in a later minor version.
   */
  unload(name: string): Promise<void> {
    warnDeprecated('ModelRegistry.unload', 'ModelRegistry.unload(name) is deprecated; use remove(name)');
    return this.remove(name);
  }

  #retire(entry: Entry): Promise<void> {
    entry.removing ??= (async () => {
      const wasLoading = entry.state === 'loading';
      this.#setState(entry, 'unloading');
      if (!wasLoading && entry.inFlight.count > 0) await entry.inFlight.idle();
      try {
        await entry.model?.dispose();
      } finally {
        const versions = this.#models.get(entry.name);
        if (versions?.get(entry.version) === entry) versions.delete(entry.version);
        if (versions && versions.size === 0) {
          this.#models.delete(entry.name);
          this.#labels.delete(entry.name);
        }
        for (const [label, v] of this.#labels.get(entry.name) ?? []) {
          if (v === entry.version) this.#labels.get(entry.name)!.delete(label);
        }
        this.#setState(entry, 'unavailable');
      }
    })();
    return entry.removing;
  }

  /**
   * Shuts down: readiness turns false at once, new requests get UNAVAILABLE, requests in flight
   * finish, then every model is disposed.
   */
  async close(): Promise<void> {
    this.#closing = true;
    const all: Entry[] = [];
    for (const versions of this.#models.values()) all.push(...versions.values());
    await Promise.all(all.map((e) => this.#retire(e)));
  }
}
