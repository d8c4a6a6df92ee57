import { isServeError, type ServeError, unavailable } from './errors.js';

/** Options of {@link importOptional}. */
export interface ImportOptionalOptions {
  /** The command that installs it (default `npm install <pkg>`). */
  install?: string;
  /** One more sentence for the user (an environment variable the install needs, say). */
  hint?: string;
  /** What needs the package, for the message (`loadOnnxModel`, `backend 'onnx'`). */
  neededBy?: string;
  /** How to import (default: dynamic `import()`); tests and bundlers pass their own. */
  loader?: (specifier: string) => Promise<unknown>;
}

/** What the user should do when a well-known optional peer is missing. */
const HINTS: Readonly<Record<string, string>> = Object.freeze({
  'onnxruntime-node':
    'where its install script cannot reach the CUDA download, install with ONNXRUNTIME_NODE_INSTALL=skip set: the CPU binaries ship in the package',
});

const defaultLoader = (specifier: string): Promise<unknown> => import(/* @vite-ignore */ specifier);

/**
 * True when `err` says that `pkg` itself could not be found (not one of its own imports, not a
 * failure inside it).
 *
 * @example
 * ```ts fragment
 * try { await import('ioredis'); } catch (err) { if (isModuleNotFound(err, 'ioredis')) ... }
 * ```
 */
export function isModuleNotFound(err: unknown, pkg?: string): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  const msg = err instanceof Error ? err.message : String(err);
  const notFound =
    code === 'ERR_MODULE_NOT_FOUND' ||
    code === 'MODULE_NOT_FOUND' ||
    /Cannot find (module|package)|Failed to resolve/i.test(msg);
  if (!notFound) return false;
  if (pkg === undefined) return true;
  // Node names the missing specifier first, quoted: "Cannot find package 'x' imported from ...".
  const missing = /['"]([^'"]+)['"]/.exec(msg)?.[1];
  return missing === undefined || missing === pkg || missing.startsWith(`${pkg}/`);
}

/** The UNAVAILABLE error for a missing optional package, with the install command. */
export function notInstalled(
  pkg: string,
  options: Omit<ImportOptionalOptions, 'loader'> = {},
  cause?: unknown,
): ServeError {
  const install = options.install ?? `npm install ${pkg}`;
  const hint = options.hint ?? HINTS[pkg];
  const who = options.neededBy
    ? `${options.neededBy} needs ${pkg}, which is not installed`
    : `${pkg} is not installed`;
  return unavailable(`${who}: run \`${install}\`${hint ? ` (${hint})` : ''}`, {
    details: { package: pkg, install },
    cause,
  });
}

/**
 * Imports an optional peer dependency. When it is not installed, rejects with UNAVAILABLE naming
 * the package and the command that installs it (`npm install onnxruntime-node`, plus the
 * `ONNXRUNTIME_NODE_INSTALL=skip` hint for that one); when it is installed but fails to load,
 * rejects with UNAVAILABLE carrying the first line of the reason. Every mlserve package imports
 * its optional peers through this, so a missing runtime reads the same everywhere.
 *
 * @example
 * ```ts
 * import { importOptional } from '@mlserve/core';
 *
 * const { Registry } = await importOptional<typeof import('prom-client')>('prom-client');
 * console.log(typeof Registry); // 'function'
 * ```
 */
export async function importOptional<T = Record<string, unknown>>(
  pkg: string,
  options: ImportOptionalOptions = {},
): Promise<T> {
  const loader = options.loader ?? defaultLoader;
  try {
    return (await loader(pkg)) as T;
  } catch (err) {
    if (isServeError(err)) throw err;
    if (isModuleNotFound(err, pkg)) throw notInstalled(pkg, options, err);
    const first = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    throw unavailable(`${pkg} is installed but could not be loaded: ${first}`, {
      cause: err,
      details: { package: pkg },
    });
  }
}
