import { lstat, readdir, realpath, stat } from 'node:fs/promises';
import { isAbsolute, join, relative, sep } from 'node:path';
import { invalidArgument, notFound } from '@mlserve/core';

const NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * Checks a model or version name taken from a request or the file system: a single path segment of
 * letters, digits, `_`, `.` and `-`, not starting with a dot, never `..`. Throws INVALID_ARGUMENT.
 *
 * @example
 * ```ts
 * assertSafeName(request.params.model); // throws INVALID_ARGUMENT for '..', 'a/b', '/etc'
 * ```
 */
export function assertSafeName(name: unknown, what = 'model name'): asserts name is string {
  if (typeof name !== 'string' || !NAME_RE.test(name) || name.includes('..') || isAbsolute(name)) {
    throw invalidArgument(
      `invalid ${what} ${JSON.stringify(name)}: use letters, digits, "_", "." and "-" only`,
    );
  }
}

/**
 * True when `child` (a real path) is `root` or lies under it.
 *
 * @example
 * ```ts
 * isInside('/srv/models', '/srv/models/mnist/1'); // true
 * isInside('/srv/models', '/etc'); // false
 * ```
 */
export function isInside(root: string, child: string): boolean {
  const rel = relative(root, child);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/**
 * Joins `parts` (each checked by {@link assertSafeName}) under the real path `root` and resolves
 * symlinks; the result must still lie inside `root`, else INVALID_ARGUMENT. NOT_FOUND when the
 * path does not exist.
 *
 * @example
 * ```ts
 * const dir = await resolveInside(await realpath(repoDir), name, version);
 * ```
 */
export async function resolveInside(root: string, ...parts: string[]): Promise<string> {
  for (const p of parts) assertSafeName(p, 'path segment');
  const joined = join(root, ...parts);
  let real: string;
  try {
    real = await realpath(joined);
  } catch {
    throw notFound(`${relative(root, joined)} does not exist in the model repository`);
  }
  if (!isInside(root, real)) {
    throw invalidArgument(`${relative(root, joined)} resolves outside the model repository`);
  }
  return real;
}

/** One file of a version directory, for change detection. */
interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
}

/**
 * A fingerprint of a directory's files (relative path, size, mtime), to tell when a copy in progress
 * has stopped changing. Symlinks that lead outside `root` make it throw INVALID_ARGUMENT.
 *
 * @example
 * ```ts
 * const before = await fingerprint(root, versionDir);
 * // ... a poll later ...
 * const settled = before === (await fingerprint(root, versionDir));
 * ```
 */
export async function fingerprint(root: string, dir: string, maxFiles = 10_000): Promise<string> {
  const stamps: FileStamp[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 8) return;
    const entries = await readdir(d, { withFileTypes: true });
    for (const e of entries) {
      if (stamps.length >= maxFiles) return;
      const full = join(d, e.name);
      let info = await lstat(full);
      if (info.isSymbolicLink()) {
        const real = await realpath(full).catch(() => undefined);
        if (real === undefined || !isInside(root, real)) {
          throw invalidArgument(
            `${relative(root, full)} is a symlink that leads outside the model repository`,
          );
        }
        info = await stat(real);
      }
      if (info.isDirectory()) await walk(full, depth + 1);
      else if (info.isFile())
        stamps.push({ path: relative(dir, full), size: info.size, mtimeMs: info.mtimeMs });
    }
  };
  await walk(dir, 0);
  stamps.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return stamps.map((s) => `${s.path}:${s.size}:${s.mtimeMs}`).join('|');
}
