/**
 * Scanning: what is on disk. Reads the repository directory, a model's config.json and its
 * version directories, and says what it found; it decides nothing and changes nothing.
 */
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { invalidArgument, notFound, type ServeError, toServeError } from '@mlserve/core';
import { type ModelConfig, parseModelConfig } from './config.js';
import { fingerprint, isInside, resolveInside } from './paths.js';

/** One version directory as a scan found it. */
export interface ScannedVersion {
  version: string;
  /** The version directory (real path). */
  dir: string;
  /** The model file (or SavedModel directory) to load. */
  file: string;
  backend: 'onnx' | 'tfjs';
  /** Size and mtime of the directory's files: a change means new files. */
  fp: string;
}

/** One model directory as a scan found it. */
export interface ScannedModel {
  name: string;
  dir: string;
  /** `<name>/config.json`, for messages. */
  configFile: string;
  /** The config file's text (or `error:...`, or '' when there is none): a change means a new config. */
  configFp: string;
  /** The validated config (defaults when there is no config.json), unless it is invalid. */
  config?: ModelConfig;
  configError?: ServeError;
  versions: Map<string, ScannedVersion>;
}

const VERSION_DIR_RE = /^(0|[1-9]\d{0,14})$/;
/** A model directory's name. */
export const MODEL_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * The real path of the repository directory: NOT_FOUND when it does not exist, INVALID_ARGUMENT
 * when it is not a directory.
 *
 * @example
 * ```ts
 * const root = await repositoryRoot('./models');
 * ```
 */
export async function repositoryRoot(dir: string): Promise<string> {
  let real: string;
  try {
    real = await realpath(dir);
  } catch {
    throw notFound(`model repository ${dir} does not exist`);
  }
  if (!(await stat(real)).isDirectory()) throw invalidArgument(`model repository ${dir} is not a directory`);
  return real;
}

/**
 * The names of the model directories under `root` (stray files and dot-directories skipped).
 *
 * @example
 * ```ts
 * const names = await listModels(root); // ['mnist', 'sentiment']
 * ```
 */
export async function listModels(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true });
  return entries
    .filter(
      (e) => (e.isDirectory() || e.isSymbolicLink()) && MODEL_NAME_RE.test(e.name) && !e.name.includes('..'),
    )
    .map((e) => e.name);
}

/**
 * Reads one model directory: its config (validated) and its version directories with the file
 * each would load. Undefined when `name` is not a directory; a version that cannot be read is
 * skipped and reported through `warn`.
 *
 * @example
 * ```ts
 * const scan = await scanModel(root, 'mnist');
 * console.log([...(scan?.versions.keys() ?? [])]); // ['1', '2']
 * ```
 */
export async function scanModel(
  root: string,
  name: string,
  warn: (message: string, fields: Record<string, unknown>) => void = () => {},
): Promise<ScannedModel | undefined> {
  const dir = await resolveInside(root, name);
  if (!(await stat(dir)).isDirectory()) return undefined;
  const scanned: ScannedModel = {
    name,
    dir,
    configFile: join(name, 'config.json'),
    configFp: '',
    versions: new Map(),
  };
  let text: string | undefined;
  try {
    const configPath = await resolveInside(root, name, 'config.json');
    text = await readFile(configPath, 'utf8');
  } catch (err) {
    if (toServeError(err).code !== 'NOT_FOUND') {
      scanned.configError = toServeError(err);
      scanned.configFp = `error:${scanned.configError.message}`;
    }
  }
  if (text !== undefined) {
    scanned.configFp = text;
    try {
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch (err) {
        throw invalidArgument(`${scanned.configFile}: invalid JSON (${(err as Error).message})`);
      }
      scanned.config = parseModelConfig(raw, scanned.configFile);
    } catch (err) {
      scanned.configError = toServeError(err);
    }
  } else if (!scanned.configError) {
    scanned.config = parseModelConfig({}, scanned.configFile);
  }
  const config = scanned.config;
  const entries = await readdir(dir, { withFileTypes: true });
  for (const e of entries) {
    if (!VERSION_DIR_RE.test(e.name) || !(e.isDirectory() || e.isSymbolicLink())) continue;
    try {
      const vdir = await resolveInside(root, name, e.name);
      if (!(await stat(vdir)).isDirectory()) continue;
      const found = await modelFile(root, name, e.name, vdir, config);
      if (!found) continue;
      const fp = await fingerprint(root, vdir);
      scanned.versions.set(e.name, { version: e.name, dir: vdir, fp, ...found });
    } catch (err) {
      warn(`skipping ${name}/${e.name}: ${toServeError(err).message}`, { model: name, version: e.name });
    }
  }
  return scanned;
}

async function modelFile(
  root: string,
  name: string,
  version: string,
  vdir: string,
  config: ModelConfig | undefined,
): Promise<{ file: string; backend: 'onnx' | 'tfjs' } | undefined> {
  const candidates: { file: string; backend: 'onnx' | 'tfjs' }[] = [];
  if (config?.modelFile) {
    const backend = config.backend ?? (config.modelFile.endsWith('.onnx') ? 'onnx' : 'tfjs');
    candidates.push({ file: config.modelFile, backend });
  } else {
    if (config?.backend !== 'tfjs') candidates.push({ file: 'model.onnx', backend: 'onnx' });
    if (config?.backend !== 'onnx') {
      candidates.push({ file: 'model.json', backend: 'tfjs' }, { file: 'saved_model.pb', backend: 'tfjs' });
    }
  }
  for (const c of candidates) {
    let real: string;
    try {
      real = await realpath(join(vdir, c.file));
    } catch {
      continue;
    }
    if (!isInside(root, real)) {
      throw invalidArgument(`${join(name, version, c.file)} resolves outside the model repository`);
    }
    // A SavedModel is a directory: load the directory, not the .pb file.
    const file = c.file === 'saved_model.pb' ? vdir : real;
    return { file, backend: c.backend };
  }
  return undefined;
}
