/** The `code` of every warning {@link warnDeprecated} emits. */
export const DEPRECATED_CODE = 'MLSERVE_DEPRECATED';

const warned = new Set<string>();

/**
 * Warns that a deprecated name (an option, a config.json key, a CLI flag) was used: once per
 * process per `name`, with `process.emitWarning(message, { code: 'MLSERVE_DEPRECATED' })`
 * (`console.warn` where there is no `process`, as in a browser). Returns whether it warned now.
 *
 * @example
 * ```ts
 * import { warnDeprecated } from '@mlserve/core';
 *
 * warnDeprecated('myLayer: options.limit', 'myLayer: options.limit is deprecated; use options.maxItems');
 * ```
 */
export function warnDeprecated(name: string, message: string): boolean {
  if (warned.has(name)) return false;
  warned.add(name);
  const proc = (globalThis as { process?: { emitWarning?: (m: string, o: { code: string }) => void } })
    .process;
  if (typeof proc?.emitWarning === 'function') proc.emitWarning(message, { code: DEPRECATED_CODE });
  else console.warn(`[${DEPRECATED_CODE}] ${message}`);
  return true;
}

/**
 * Reads an option that was renamed: `options[name]`, else the deprecated `options[oldName]`
 * (warning once per process, see {@link warnDeprecated}, that `where`'s `options.<oldName>` is
 * deprecated). The new name wins when both are set.
 *
 * @example
 * ```ts
 * import { renamedOption } from '@mlserve/core';
 *
 * // limit is the deprecated name of maxItems
 * interface LayerOptions {
 *   maxItems?: number;
 *   limit?: number;
 * }
 * function layer(options: LayerOptions) {
 *   const maxItems = renamedOption(options, 'maxItems', 'limit', 'layer') ?? 10;
 *   return maxItems;
 * }
 * layer({ limit: 5 }); // 5, and one MLSERVE_DEPRECATED warning
 * ```
 */
export function renamedOption<O extends object, K extends keyof O>(
  options: O,
  name: K,
  oldName: keyof O & string,
  where: string,
): O[K] | undefined {
  const old = options[oldName];
  if (old !== undefined) {
    warnDeprecated(
      `${where}: options.${oldName}`,
      `${where}: options.${oldName} is deprecated; use options.${String(name)}`,
    );
  }
  return options[name] !== undefined ? options[name] : (old as O[K] | undefined);
}
