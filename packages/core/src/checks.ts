/**
 * True for a positive safe integer (1 up to `Number.MAX_SAFE_INTEGER`).
 *
 * @example
 * ```ts
 * import { isPositiveInteger } from '@mlserve/core';
 *
 * console.log([1, 8].every(isPositiveInteger), isPositiveInteger(0), isPositiveInteger(1.5)); // true false false
 * ```
 */
export function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}

/**
 * Checks an option that, when given, must be a positive safe integer: `undefined` passes, anything
 * else throws `TypeError('<where>: options.<name> must be a positive integer')` (no `<where>: `
 * when `where` is not given), or the error `error` builds from that message (a layer whose option
 * errors are ServeErrors passes `invalidArgument`).
 *
 * @example
 * ```ts
 * import { checkPositiveInteger } from '@mlserve/core';
 *
 * checkPositiveInteger(4, 'threads', 'workerPool'); // passes
 * try {
 *   checkPositiveInteger(0, 'threads', 'workerPool');
 * } catch (err) {
 *   console.log((err as Error).message); // workerPool: options.threads must be a positive integer
 * }
 * ```
 */
export function checkPositiveInteger(
  value: unknown,
  name: string,
  where?: string,
  error: (message: string) => Error = (message) => new TypeError(message),
): void {
  if (value !== undefined && !isPositiveInteger(value))
    throw error(`${where ? `${where}: ` : ''}options.${name} must be a positive integer`);
}
