/**
 * Reconciling: what to do about a model, given what the repository holds and what a scan found.
 * Pure functions of plain data: no I/O, no clock, no registry.
 */
import { compareVersions, type ServeError } from '@mlserve/core';
import { pipelineKey } from './build.js';
import type { ModelConfig, VersionPolicy } from './config.js';
import type { ScannedModel } from './scan.js';

/** What reconciling needs to know of one version the repository holds. */
export interface VersionView {
  state: 'loading' | 'ready' | 'failed';
  /** Fingerprint of the files it was (or failed to be) built from. */
  fp: string;
  /** The config text it was (or failed to be) built with. */
  configFp: string;
  /** What its pipeline was built from ({@link pipelineKey}). */
  pipelineKey?: string;
  /** A rebuild is running. */
  reloading?: boolean;
  /** Held by a rollout (in shadow, in canary steps, or rejected): it does not replace the serving version. */
  gated?: boolean;
}

/** What reconciling needs to know of one model the repository holds. */
export interface ModelView {
  config: ModelConfig | undefined;
  configFp: string | undefined;
  configError: ServeError | undefined;
  versions: ReadonlyMap<string, VersionView>;
  /** Fingerprints seen at the previous scan of versions whose files were not yet settled. */
  seen: ReadonlyMap<string, string>;
}

/** One thing to do to a version. */
export type VersionAction =
  /** Load a version not loaded (or failed with other files or config): `config` undefined means the config is broken and the load is to fail with its error. */
  | { type: 'load'; version: string; config: ModelConfig | undefined }
  /** Rebuild a served version in place (new files or pipeline settings). */
  | { type: 'reload'; version: string; config: ModelConfig; key: string }
  /** A new version's files are still changing: look again at the next scan. */
  | { type: 'wait'; version: string };

/** The outcome of {@link reconcile}. */
export interface Reconciliation {
  /** The config changed: `invalid` keeps the last valid config; `changed` replaces it. */
  configChange?:
    | { kind: 'invalid'; configFp: string; error: ServeError; keepsServing: boolean }
    | { kind: 'changed'; configFp: string; config: ModelConfig | undefined; hadConfig: boolean };
  /** The config to act on (undefined while it is broken). */
  config: ModelConfig | undefined;
  /** The versions the policy keeps, ascending (empty while the config is broken). */
  desired: string[];
  /** The new map of unsettled fingerprints. */
  seen: Map<string, string>;
  actions: VersionAction[];
}

/**
 * The versions a policy keeps, ascending.
 *
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
 * Decides what to load, rebuild or wait for. A new version loads once its files have stopped
 * changing (the same fingerprint at two scans; at once when `force`); a served version whose
 * files or pipeline settings changed is rebuilt in place once its files settle; routing-only
 * changes (labels, traffic, policy) need no rebuild; a version that failed is not retried with
 * the same files and config. While the config is broken nothing new loads, except that the
 * newest version never loaded is "loaded" to fail with the config's error (so the registry says
 * why).
 *
 * @example
 * ```ts
 * const plan = reconcile({ config: undefined, configFp: undefined, configError: undefined,
 *   versions: new Map(), seen: new Map() }, scan, true);
 * // plan.actions: [{ type: 'load', version: '1', config }]
 * ```
 */
export function reconcile(model: ModelView, scan: ScannedModel, force: boolean): Reconciliation {
  let config = model.config;
  let configFp = model.configFp;
  let configError = model.configError;
  let configChange: Reconciliation['configChange'];
  if (scan.configFp !== configFp) {
    configFp = scan.configFp;
    if (scan.configError) {
      configError = scan.configError;
      configChange = { kind: 'invalid', configFp, error: configError, keepsServing: config !== undefined };
    } else {
      configChange = { kind: 'changed', configFp, config: scan.config, hadConfig: config !== undefined };
      config = scan.config;
      configError = undefined;
    }
  }
  const seen = new Map(model.seen);
  const actions: VersionAction[] = [];
  const base = { seen, actions, ...(configChange && { configChange }) };
  if (configError) {
    if (!config) {
      for (const v of applyVersionPolicy({ latest: 1 }, [...scan.versions.keys()])) {
        const rec = model.versions.get(v);
        if (rec?.state === 'failed' && rec.configFp === configFp) continue;
        actions.push({ type: 'load', version: v, config: undefined });
      }
    }
    return { ...base, config: undefined, desired: [] };
  }
  const current = config!;
  const desired = applyVersionPolicy(current.versionPolicy, [...scan.versions.keys()]);
  const key = pipelineKey(current);
  for (const v of desired) {
    const sv = scan.versions.get(v)!;
    const rec = model.versions.get(v);
    if (rec && rec.state !== 'failed') {
      if (rec.state !== 'ready' || rec.reloading) continue;
      if (rec.fp === sv.fp && rec.pipelineKey === key) continue;
      const settled = force || rec.fp === sv.fp || seen.get(v) === sv.fp;
      seen.set(v, sv.fp);
      if (!settled) continue;
      seen.delete(v);
      actions.push({ type: 'reload', version: v, config: current, key });
      continue;
    }
    if (rec?.state === 'failed' && rec.fp === sv.fp && rec.configFp === configFp) continue;
    const stable = force || seen.get(v) === sv.fp;
    seen.set(v, sv.fp);
    if (!stable) {
      actions.push({ type: 'wait', version: v });
      continue;
    }
    seen.delete(v);
    actions.push({ type: 'load', version: v, config: current });
  }
  return { ...base, config: current, desired };
}

/**
 * The versions to retire once the loads a {@link reconcile} asked for have finished: those the
 * policy no longer keeps (or whose directory is gone). A version still on disk is kept while no
 * kept version is ready and not held by a rollout (an old version serves until its replacement
 * does), and while it loads.
 *
 * @example
 * ```ts
 * retirements(model, new Set(['1', '2']), ['2']); // ['1'] once 2 is ready
 * ```
 */
export function retirements(
  model: Pick<ModelView, 'versions'>,
  onDisk: ReadonlySet<string>,
  desired: readonly string[],
): string[] {
  const keep = new Set(desired);
  const readyKept = desired.some((v) => {
    const rec = model.versions.get(v);
    return rec?.state === 'ready' && !rec.gated;
  });
  const out: string[] = [];
  for (const [v, rec] of model.versions) {
    if (keep.has(v)) continue;
    const present = onDisk.has(v);
    if (present && !readyKept && rec.state === 'ready') continue;
    if (present && rec.state === 'loading') continue;
    if (present && rec.state === 'failed' && !readyKept) continue;
    out.push(v);
  }
  return out;
}
