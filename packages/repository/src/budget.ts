/**
 * Models on demand under a memory budget: each version is loaded one at a time and its cost
 * measured (process RSS after its load and warmup minus before), the least recently used idle
 * versions are unloaded to make room, and an unloaded version loads again on its next request.
 */
import {
  type InferOptions,
  invalidArgument,
  type Model,
  type ModelMetadata,
  raceExpiry,
  type Tensors,
  toServeError,
  unavailable,
} from '@mlserve/core';
import { type Swappable, swappable } from './swap.js';

const UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  ki: 2 ** 10,
  kib: 2 ** 10,
  mi: 2 ** 20,
  mib: 2 ** 20,
  gi: 2 ** 30,
  gib: 2 ** 30,
  ti: 2 ** 40,
  tib: 2 ** 40,
};

/**
 * Parses a size: a number of bytes, or a string such as `2GiB`, `512MiB`, `1.5GB`, `300M`
 * (binary units `KiB`..`TiB`, decimal `KB`..`TB`, case-insensitive). INVALID_ARGUMENT otherwise.
 *
 * @example
 * ```ts
 * import { parseBytes } from '@mlserve/repository';
 * parseBytes('2GiB'); // 2147483648
 * parseBytes('500MB'); // 500000000
 * ```
 */
export function parseBytes(value: string | number, what = 'size'): number {
  if (typeof value === 'number') {
    if (!(Number.isFinite(value) && value > 0))
      throw invalidArgument(`${what} must be a positive number of bytes`);
    return Math.floor(value);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined || !(Number(m[1]) > 0)) {
    throw invalidArgument(`${what} ${JSON.stringify(value)} is not a size such as 2GiB, 512MiB or 1.5GB`);
  }
  return Math.floor(Number(m[1]) * unit);
}

/** What {@link pickEvictions} knows of one version under the budget. */
export interface BudgetEntry {
  key: string;
  /** Loaded now. */
  resident: boolean;
  /** Its measured cost, bytes. */
  cost: number;
  /** When it last took a request (a counter: larger is more recent). */
  lastUsed: number;
  /** Requests waiting for it or running on it. */
  inFlight: number;
  /** Never unloaded to make room (config.json `pinned`, or in a rollout). */
  pinned: boolean;
}

/**
 * Which resident versions to unload so that `need` more bytes fit under `budget`: the least
 * recently used first, never one with requests in flight, never a pinned one, never `except`.
 * Returns as many as it can; the caller sees from the sum whether that was enough.
 *
 * @example
 * ```ts
 * pickEvictions(entries, 100 * 2 ** 20, 500 * 2 ** 20); // ['a/1'] when a/1 is the oldest idle one
 * ```
 */
export function pickEvictions(
  entries: readonly BudgetEntry[],
  need: number,
  budget: number,
  except?: string,
): string[] {
  let used = 0;
  for (const e of entries) if (e.resident) used += e.cost;
  const out: string[] = [];
  if (used + need <= budget) return out;
  const candidates = entries
    .filter((e) => e.resident && e.inFlight === 0 && !e.pinned && e.key !== except)
    .sort((a, b) => a.lastUsed - b.lastUsed);
  for (const e of candidates) {
    if (used + need <= budget) break;
    out.push(e.key);
    used -= e.cost;
  }
  return out;
}

/** One version as `Repository.memory()` reports it. */
export interface VersionMemory {
  name: string;
  version: string;
  /** Loaded now (else it loads on its next request). */
  resident: boolean;
  /**
   * What it counts against the budget, bytes: its measured cost at its last load, or before its
   * first load an estimate (see `measured`).
   */
  bytes: number;
  /** False while `bytes` is an estimate (the version has not loaded yet). */
  measured: boolean;
  /** Never unloaded to make room. */
  pinned: boolean;
  /** Requests waiting for it or running on it. */
  inFlight: number;
  /** Times it was loaded (the first load included) and unloaded to make room. */
  loads: number;
  evictions: number;
  /** How long its last load took (load and warmup), ms. */
  lastLoadMs: number | undefined;
}

/** What `Repository.memory()` reports (undefined without a budget). */
export interface MemoryReport {
  /** The budget, bytes. */
  budget: number;
  /** The sum of the resident versions' costs, bytes. */
  used: number;
  /** Loads: at start and on demand (cold starts). */
  loads: number;
  coldStarts: number;
  /** Milliseconds the cold starts took, summed. */
  coldStartMs: number;
  evictions: number;
  /** Loads after which the resident versions were over budget (all others pinned or busy). */
  overBudget: number;
  versions: VersionMemory[];
}

/** What a {@link MemoryBudget} reports through. */
export interface BudgetHost {
  /** Process RSS, bytes (default `process.memoryUsage.rss()`). */
  rss?: () => number;
  /** What a version counts against the budget, given its measured cost (default: the measured cost). */
  cost?: (name: string, version: string, measuredBytes: number) => number;
  /** A version was loaded (`demand`: a cold start on a request) or unloaded to make room. */
  event(e: {
    name: string;
    version: string;
    kind: 'loaded' | 'evicted';
    cause: 'start' | 'demand';
    ms?: number;
    bytes: number;
  }): void;
  warn(message: string): void;
}

interface Slot {
  key: string;
  name: string;
  version: string;
  pinned: () => boolean;
  rebuild: () => Promise<Model>;
  impl: Swappable | undefined;
  loading: Promise<Model> | undefined;
  meta: ModelMetadata | undefined;
  /** Served before the first load (planned): the loaded model must agree with it. */
  planned: Planned | undefined;
  cost: number;
  measured: boolean;
  loadMs: number | undefined;
  inFlight: number;
  lastUsed: number;
  removed: boolean;
  loads: number;
  evictions: number;
  /** Its files' size, bytes (for the estimate of its cost before it is measured). */
  fileBytes: number | undefined;
}

/** What a version is served with before its first load (see `planVersion`). */
export interface Planned {
  metadata: ModelMetadata;
  /** Where its inputs and outputs come from, for messages (`config.json`, `onnx header`). */
  from: string;
  /** Its files' size, bytes: the cost estimate before the first load is this times a factor. */
  fileBytes: number;
  /** The first difference between the planned and the loaded metadata, or undefined. */
  differs(loaded: ModelMetadata): string | undefined;
}

/**
 * The cost of a version never loaded, per byte of its files, until one version has been measured:
 * RSS growth over file size at a first load, measured here (2026-12-07, 2 cores) for MobileNetV2
 * (13.3 MiB file) with the repository's default warmup (up to batch 32): 415-418 MiB, so 30x;
 * without warmup 98 MiB (7x). Reloads after an eviction grow RSS less (147 MiB in bench `models`:
 * the allocator reuses what the evicted session freed). Once versions with files of 1 MiB or more
 * have been measured, their mean ratio is used instead.
 */
export const DEFAULT_COST_FACTOR = 30;
/** Files smaller than this say too little about the ratio (their RSS growth is noise). */
const MIN_FACTOR_BYTES = 2 ** 20;

/** A version's served model under a budget: loads on demand; `swap` replaces it (a reload). */
export type OnDemandModel = Swappable;

/**
 * The memory budget of a repository's versions. Loads run one at a time, so each one's RSS
 * growth is its own; before a load, the least recently used idle unpinned versions are unloaded
 * until its expected cost (its last measured cost, else the mean of those measured) fits; after
 * it, again until the measured cost fits.
 *
 * @example
 * ```ts
 * const budget = new MemoryBudget(parseBytes('2GiB'), { event: console.log, warn: console.warn });
 * const served = await budget.add('mnist', '1', () => false, () => buildIt());
 * ```
 */
export class MemoryBudget {
  readonly bytes: number;
  readonly #host: BudgetHost;
  readonly #slots = new Map<string, Slot>();
  /** The last measured cost of each version this process loaded (kept when it leaves the budget). */
  readonly #known = new Map<string, { cost: number; fileBytes: number | undefined; loadMs: number }>();
  #serial: Promise<unknown> = Promise.resolve();
  #tick = 0;
  /** Milliseconds of loads queued or running (their expected times). */
  #pendingMs = 0;
  readonly #stats = { loads: 0, coldStarts: 0, coldStartMs: 0, evictions: 0, overBudget: 0 };

  constructor(bytes: number, host: BudgetHost) {
    this.bytes = bytes;
    this.#host = host;
  }

  /** The budget's figures and every version under it. */
  report(): MemoryReport {
    const versions: VersionMemory[] = [];
    let used = 0;
    for (const s of this.#slots.values()) {
      if (s.impl) used += s.cost;
      versions.push({
        name: s.name,
        version: s.version,
        resident: s.impl !== undefined,
        bytes: s.cost,
        measured: s.measured,
        pinned: s.pinned(),
        inFlight: s.inFlight,
        loads: s.loads,
        evictions: s.evictions,
        lastLoadMs: s.loadMs,
      });
    }
    return { budget: this.bytes, used, ...this.#stats, versions };
  }

  /** Whether a version is loaded now (undefined when it is not under the budget). */
  resident(name: string, version: string): boolean | undefined {
    const s = this.#slots.get(`${name}/${version}`);
    return s ? s.impl !== undefined : undefined;
  }

  /**
   * Loads a version that is not loaded now (in the background; failures are for its next
   * request to see). A rollout calls it for the serving version it compares against.
   */
  load(name: string, version: string): void {
    const slot = this.#slots.get(`${name}/${version}`);
    if (slot && !slot.impl && !slot.removed) this.#load(slot, 'demand').catch(() => undefined);
  }

  /**
   * Puts a version under the budget and returns the model to serve, which loads it on its first
   * request and again on demand after it has been unloaded. With `planned` (its metadata known
   * without loading it) nothing loads now and its cost is estimated until its first load (the
   * last cost measured for this version in this process, else its file size times the measured
   * cost per byte of the others, else times {@link DEFAULT_COST_FACTOR}); without, it loads now
   * (making room first) to measure it and read its metadata, and rejects when that load fails
   * (nothing stays under the budget then).
   */
  async add(
    name: string,
    version: string,
    pinned: () => boolean,
    rebuild: () => Promise<Model>,
    planned?: Planned,
  ): Promise<OnDemandModel> {
    const key = `${name}/${version}`;
    const known = this.#known.get(key);
    const slot: Slot = {
      key,
      name,
      version,
      pinned,
      rebuild,
      impl: undefined,
      loading: undefined,
      meta: planned ? structuredClone(planned.metadata) : undefined,
      planned,
      cost: 0,
      measured: false,
      loadMs: undefined,
      inFlight: 0,
      lastUsed: ++this.#tick,
      removed: false,
      loads: 0,
      evictions: 0,
      fileBytes: planned?.fileBytes,
    };
    if (planned) {
      if (known && known.fileBytes === planned.fileBytes) {
        slot.cost = known.cost;
        slot.measured = true;
        slot.loadMs = known.loadMs;
      } else slot.cost = this.#estimate(planned.fileBytes);
      this.#slots.set(key, slot);
      return this.#served(slot);
    }
    this.#slots.set(key, slot);
    try {
      await this.#load(slot, 'start');
    } catch (err) {
      slot.removed = true;
      this.#slots.delete(key);
      throw err;
    }
    return this.#served(slot);
  }

  /**
   * A version's files or config changed while it is not loaded (a reload of an evicted version):
   * its next load builds from them, and until then it is served with `planned` (when given), its
   * cost estimated again from its files.
   */
  replan(name: string, version: string, planned: Planned | undefined): void {
    const slot = this.#slots.get(`${name}/${version}`);
    if (!slot || slot.impl || slot.removed) return;
    this.#known.delete(slot.key);
    if (!planned) return;
    slot.planned = planned;
    slot.meta = structuredClone(planned.metadata);
    slot.fileBytes = planned.fileBytes;
    slot.measured = false;
    slot.loadMs = undefined;
    slot.cost = this.#estimate(planned.fileBytes);
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#serial.then(fn, fn);
    this.#serial = run.catch(() => undefined);
    return run;
  }

  /**
   * The expected cost of a version never measured: with its file size, that size times the mean
   * cost per byte of the measured versions with files of 1 MiB or more (else
   * {@link DEFAULT_COST_FACTOR}); without (loaded at start to be measured), the mean measured cost.
   */
  #estimate(fileBytes?: number): number {
    let sum = 0;
    let n = 0;
    let ratio = 0;
    let m = 0;
    for (const s of this.#slots.values()) {
      if (!s.measured) continue;
      sum += s.cost;
      n++;
      if (s.fileBytes !== undefined && s.fileBytes >= MIN_FACTOR_BYTES) {
        ratio += s.cost / s.fileBytes;
        m++;
      }
    }
    if (fileBytes !== undefined) return Math.round(fileBytes * (m > 0 ? ratio / m : DEFAULT_COST_FACTOR));
    return n === 0 ? 0 : sum / n;
  }

  #entries(): BudgetEntry[] {
    return [...this.#slots.values()].map((s) => ({
      key: s.key,
      resident: s.impl !== undefined,
      cost: s.cost,
      lastUsed: s.lastUsed,
      inFlight: s.inFlight,
      pinned: s.pinned(),
    }));
  }

  /** Unloads the least recently used idle versions until `need` more bytes fit (as far as it can). */
  async #makeRoom(need: number, except: string): Promise<void> {
    const victims = pickEvictions(this.#entries(), need, this.bytes, except);
    await Promise.all(victims.map((key) => this.#evict(this.#slots.get(key)!)));
  }

  async #evict(slot: Slot): Promise<void> {
    const impl = slot.impl;
    if (!impl) return;
    slot.impl = undefined;
    slot.evictions++;
    this.#stats.evictions++;
    this.#host.event({
      name: slot.name,
      version: slot.version,
      kind: 'evicted',
      cause: 'demand',
      bytes: slot.cost,
    });
    await impl.dispose().catch((err: unknown) => {
      this.#host.warn(`${slot.key}: unloading it failed: ${toServeError(err).message}`);
    });
  }

  /** Loads a version (one load at a time), or joins the load already running. */
  #load(slot: Slot, cause: 'start' | 'demand'): Promise<Model> {
    if (slot.loading) return slot.loading;
    const expected = slot.loadMs ?? 0;
    this.#pendingMs += expected;
    const rss = this.#host.rss ?? (() => process.memoryUsage.rss());
    const run = this.#exclusive(async () => {
      if (slot.removed) throw unavailable(`model "${slot.name}" version ${slot.version} was unloaded`);
      if (slot.impl) return slot.impl;
      await this.#makeRoom(slot.measured || slot.planned ? slot.cost : this.#estimate(), slot.key);
      const before = rss();
      const started = performance.now();
      const model = await slot.rebuild();
      const ms = performance.now() - started;
      const measured = Math.max(0, rss() - before);
      if (slot.removed) {
        await model.dispose().catch(() => undefined);
        throw unavailable(`model "${slot.name}" version ${slot.version} was unloaded while it loaded`);
      }
      // Requests were validated against the planned metadata: the model must agree with it.
      const differs = slot.planned?.differs(model.metadata());
      if (differs) {
        await model.dispose().catch(() => undefined);
        throw invalidArgument(
          `model "${slot.name}" version ${slot.version}: ${slot.planned!.from} gives ${differs}`,
        );
      }
      slot.cost = Math.max(
        0,
        this.#host.cost ? this.#host.cost(slot.name, slot.version, measured) : measured,
      );
      slot.measured = true;
      slot.loadMs = ms;
      this.#known.set(slot.key, { cost: slot.cost, fileBytes: slot.fileBytes, loadMs: ms });
      slot.meta = model.metadata();
      slot.impl = swappable(model);
      slot.loads++;
      this.#stats.loads++;
      if (cause === 'demand') {
        this.#stats.coldStarts++;
        this.#stats.coldStartMs += ms;
      }
      this.#host.event({
        name: slot.name,
        version: slot.version,
        kind: 'loaded',
        cause,
        ms,
        bytes: slot.cost,
      });
      await this.#makeRoom(0, slot.key);
      const { used } = this.report();
      if (used > this.bytes) {
        this.#stats.overBudget++;
        this.#host.warn(
          `models loaded use ${used} bytes, over the budget of ${this.bytes}: the others are pinned or busy`,
        );
      }
      return slot.impl;
    }).finally(() => {
      this.#pendingMs -= expected;
      slot.loading = undefined;
    });
    slot.loading = run;
    return run;
  }

  /** Waits for a cold version's load within the request's deadline, else UNAVAILABLE with a retry hint. */
  #wait(slot: Slot, options: InferOptions | undefined): Promise<Model> {
    const joined = slot.loading !== undefined;
    const load = this.#load(slot, 'demand');
    const deadline = options?.deadline;
    if (deadline === undefined)
      return raceExpiry(load, options?.signal ? { signal: options.signal } : undefined);
    const left = deadline - Date.now();
    // The load may go on after this request gives up: the next request finds it loaded.
    load.catch(() => undefined);
    const expected = joined ? (slot.loadMs ?? 0) : this.#pendingMs;
    const tooSlow = (wait: number) =>
      unavailable(
        `model "${slot.name}" version ${slot.version} is loading on demand and cannot be ready within the request's deadline; retry in about ${Math.ceil(wait)} ms`,
        { retryAfterMs: Math.max(1, Math.ceil(wait)) },
      );
    if (slot.loadMs !== undefined && expected > left) return Promise.reject(tooSlow(expected));
    // Answer just before the deadline, so the client hears UNAVAILABLE with a hint rather than a
    // bare DEADLINE_EXCEEDED from the layer that races the deadline.
    const margin = Math.min(10, Math.max(0, left) / 10);
    const started = Date.now();
    return new Promise<Model>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          options?.signal?.removeEventListener('abort', onAbort);
          const spent = Date.now() - started;
          reject(tooSlow(Math.max(1, (slot.loadMs ?? spent) - spent)));
        },
        Math.max(0, left - margin),
      );
      const onAbort = () => {
        clearTimeout(timer);
        reject(toServeError(options?.signal?.reason ?? unavailable('the request was cancelled')));
      };
      options?.signal?.addEventListener('abort', onAbort, { once: true });
      load.then(
        (m) => {
          clearTimeout(timer);
          options?.signal?.removeEventListener('abort', onAbort);
          resolve(m);
        },
        (err: unknown) => {
          clearTimeout(timer);
          options?.signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      );
    });
  }

  /** The model the registry serves for a slot. */
  #served(slot: Slot): OnDemandModel {
    const budget = this;
    return {
      name: slot.name,
      version: slot.version,
      get inner() {
        return slot.impl;
      },
      metadata: () => (slot.impl ? slot.impl.metadata() : structuredClone(slot.meta!)),
      async infer(inputs: Tensors, options?: InferOptions): Promise<Tensors> {
        if (slot.removed) throw unavailable(`model "${slot.name}" version ${slot.version} was unloaded`);
        slot.inFlight++;
        slot.lastUsed = ++budget.#tick;
        try {
          const impl = slot.impl ?? (await budget.#wait(slot, options));
          return await impl.infer(inputs, options);
        } finally {
          slot.inFlight--;
        }
      },
      isReady: () => !slot.removed,
      warmup: async () => undefined,
      stats: () => slot.impl?.stats?.() ?? {},
      async swap(next: Model): Promise<void> {
        // A rebuild (new files or config): serve it if the version is loaded, else drop it (the
        // next load builds from the new files anyway).
        if (slot.impl && !slot.removed) await slot.impl.swap(next);
        else await next.dispose();
      },
      async dispose(): Promise<void> {
        if (slot.removed) return;
        slot.removed = true;
        if (budget.#slots.get(slot.key) === slot) budget.#slots.delete(slot.key);
        const impl = slot.impl;
        slot.impl = undefined;
        await slot.loading?.catch(() => undefined);
        await impl?.dispose();
      },
    };
  }
}
