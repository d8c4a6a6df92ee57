import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.svg': 'image/svg+xml',
  '.map': 'application/json',
};

/** A file a static route may send: a plain name (no folders, no dot files), with a known type. */
const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/**
 * Reads `name` from `dir` for a static route, or returns undefined when the name is not a plain
 * file name of a known type or the file does not exist: `../` and friends never leave `dir`.
 *
 * @example
 * ```ts
 * const file = await staticFile(PUBLIC_DIR, req.params.file);
 * return file ? reply.type(file.type).send(file.body) : reply.code(404).send({ error: 'not found' });
 * ```
 */
export async function staticFile(
  dir: string,
  name: string,
): Promise<{ type: string; body: Buffer } | undefined> {
  const type = TYPES[extname(name)];
  if (!type || !SAFE_NAME.test(name)) return undefined;
  try {
    return { type, body: await readFile(join(dir, name)) };
  } catch {
    return undefined;
  }
}
