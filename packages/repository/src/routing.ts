/**
 * Routing: which version a request that names none goes to (weighted splits, sticky per request
 * id), and which version each label points at.
 */
import type { InferOptions, ModelRegistry } from '@mlserve/core';

/**
 * FNV-1a with a murmur3 finish, 32 bits: a stable, well-spread hash for sticky traffic splits.
 *
 * @example
 * ```ts
 * const bucket = stickyHash('mnist\u0000user-42') % 100;
 * ```
 */
export function stickyHash(text: string): number {
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

/**
 * Picks a version by weight among the ready `versions`: the same request id always lands on the
 * same version; without an id the pick is random. Undefined when no weighted version is ready
 * (the registry then serves the latest ready one).
 *
 * @example
 * ```ts
 * splitTraffic({ '1': 90, '2': 10 }, 'mnist', ['1', '2'], { id: 'user-42' }); // '1' or '2', always the same
 * ```
 */
export function splitTraffic(
  weights: Readonly<Record<string, number>>,
  name: string,
  versions: readonly string[],
  options?: InferOptions,
): string | undefined {
  const candidates = Object.entries(weights).filter(([v, w]) => w > 0 && versions.includes(v));
  if (candidates.length === 0) return undefined;
  const total = candidates.reduce((sum, [, w]) => sum + w, 0);
  const point =
    (options?.id !== undefined ? stickyHash(`${name}\u0000${options.id}`) / 2 ** 32 : Math.random()) * total;
  let acc = 0;
  for (const [v, w] of candidates) {
    acc += w;
    if (point < acc) return v;
  }
  return candidates[candidates.length - 1]![0];
}

/**
 * Points the registry's labels of a model at the versions `labels` names, where those are ready;
 * removes labels that were applied before and are gone or point at a version not ready. `applied`
 * (the labels this function set) is updated in place.
 *
 * @example
 * ```ts
 * applyLabels(registry, 'mnist', { stable: '1' }, (v) => v === '1', applied);
 * ```
 */
export function applyLabels(
  registry: ModelRegistry,
  name: string,
  labels: Readonly<Record<string, string>>,
  isReady: (version: string) => boolean,
  applied: Set<string>,
): void {
  for (const label of applied) {
    if (!(label in labels)) {
      registry.removeLabel(name, label);
      applied.delete(label);
    }
  }
  for (const [label, version] of Object.entries(labels)) {
    if (isReady(version)) {
      registry.setLabel(name, label, version);
      applied.add(label);
    } else if (applied.has(label)) {
      registry.removeLabel(name, label);
      applied.delete(label);
    }
  }
}
