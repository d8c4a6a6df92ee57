/** What {@link getOrCreateMetric} reads of a registry (prom-client's `Registry` satisfies it). */
export interface MetricLookup {
  getSingleMetric(name: string): unknown;
}

/**
 * The metric registered under `name` in `registry`, or the one `make` creates (and registers) when
 * there is none: so that every layer publishing one series to a shared prom-client registry finds
 * the first layer's metric instead of failing on a duplicate name. Typed structurally, so that the
 * package calling it keeps prom-client an optional peer.
 *
 * @example
 * ```ts
 * import { getOrCreateMetric } from '@mlserve/core';
 * import { Counter, Registry } from 'prom-client';
 *
 * const registry = new Registry();
 * const make = () => new Counter({ name: 'jobs_total', help: 'Jobs', registers: [registry] });
 * const a = getOrCreateMetric(registry, 'jobs_total', make);
 * const b = getOrCreateMetric(registry, 'jobs_total', make);
 * console.log(a === b); // true
 * ```
 */
export function getOrCreateMetric<T>(registry: MetricLookup, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}
