/**
 * What a version will serve, known before it loads: under a memory budget a version is served on
 * demand, and its metadata (which HTTP and gRPC validate requests against before they reach the
 * model) comes from config.json's `inputs`/`outputs`, else from the ONNX file's header. Models
 * whose metadata can only be known by loading them (a TF.js model, a custom loader) load once at
 * start instead.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ModelMetadata, TensorInfo } from '@mlserve/core';
import { type BuildContext, type BuildRequest, readClassLabels } from './build.js';
import { importOptional } from './loaders.js';

/** A version's metadata before it loads, and what its budget estimate starts from. */
export interface PlannedVersion {
  metadata: ModelMetadata;
  /** Where the inputs and outputs come from. */
  from: 'config.json' | 'onnx header';
  /** The version directory's files, bytes (the model and any external data). */
  fileBytes: number;
}

/** The ONNX header reader's result, as `@mlserve/backend-onnx`'s `readOnnxSignature` returns it. */
interface HeaderSignature {
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  skippedOutputs: { name: string; reason: string }[];
  unsupportedInputs: { name: string; reason: string }[];
}

/**
 * Plans a version's metadata without loading it: `{ why }` when only a load can tell it (the
 * version then loads once at start, as without this).
 *
 * @example
 * ```ts
 * const planned = await planVersion(ctx, req);
 * if ('why' in planned) console.log(`loads at start: ${planned.why}`);
 * ```
 */
export async function planVersion(
  ctx: Pick<BuildContext, 'root' | 'loaders' | 'workers'>,
  req: BuildRequest,
): Promise<PlannedVersion | { why: string }> {
  const { config } = req;
  const loaders = ctx.loaders ?? {};
  let inputs: TensorInfo[];
  let outputs: TensorInfo[];
  let from: PlannedVersion['from'];
  const extra: Record<string, unknown> = {};
  if (config.signature) {
    inputs = structuredClone(config.signature.inputs);
    outputs = structuredClone(config.signature.outputs);
    from = 'config.json';
  } else if (req.backend === 'onnx') {
    if (loaders.onnx)
      return {
        why: 'a custom ONNX loader: its metadata is known once it loads (declare "inputs" and "outputs" in config.json to serve it on demand)',
      };
    if (loaders.workerPool && (config.workers || ctx.workers))
      return {
        why: 'a custom worker pool: its metadata is known once it loads (declare "inputs" and "outputs" in config.json to serve it on demand)',
      };
    let read: (file: string) => Promise<HeaderSignature>;
    try {
      const mod = await importOptional('@mlserve/backend-onnx');
      read = mod.readOnnxSignature as typeof read;
      if (typeof read !== 'function')
        return { why: '@mlserve/backend-onnx has no readOnnxSignature (an older version)' };
    } catch (err) {
      return { why: (err as Error).message };
    }
    let header: HeaderSignature;
    try {
      header = await read(req.file);
    } catch (err) {
      // The load reports it (with the backend's own message).
      return { why: `its header could not be read (${(err as Error).message})` };
    }
    const bad = header.unsupportedInputs[0];
    if (bad) return { why: `input "${bad.name}" is ${bad.reason}` };
    inputs = header.inputs;
    outputs = header.outputs;
    if (header.skippedOutputs.length > 0) extra.skippedOutputs = header.skippedOutputs;
    from = 'onnx header';
  } else {
    return {
      why: 'a TF.js model: its metadata is known once it loads (declare "inputs" and "outputs" in config.json to serve it on demand)',
    };
  }
  const pads: Record<string, unknown> = {
    ...(config.backendOptions.padValues as object),
    ...config.padValues,
  };
  for (const [name, v] of Object.entries(pads)) {
    const info = inputs.find((i) => i.name === name);
    if (!info) return { why: `padValues names "${name}", which is not an input` };
    const wantsBigint = info.type === 'int64' || info.type === 'uint64';
    if (wantsBigint ? typeof v !== 'bigint' && !Number.isSafeInteger(v) : typeof v !== 'number')
      return { why: `padValues.${name} is not a ${wantsBigint ? 'bigint or integer' : 'number'}` };
    info.padValue = wantsBigint ? BigInt(v as number) : (v as number);
  }
  const labels = await readClassLabels(ctx.root, [req.dir, join(req.dir, '..')], config.labelsFile);
  if (labels) extra.labels = labels;
  const batched = inputs.length > 0 && inputs.every((i) => i.batched);
  const metadata: ModelMetadata = {
    name: req.name,
    version: req.version,
    platform: req.backend === 'onnx' ? 'onnxruntime_onnx' : 'tfjs_graph_model',
    inputs,
    outputs,
    maxBatchSize: batched ? 2 ** 31 - 1 : 0,
    concurrency: config.workers?.threads ?? 1,
  };
  if (Object.keys(extra).length > 0) metadata.extra = extra;
  return { metadata, from, fileBytes: await directoryBytes(req.dir) };
}

/** The sizes of the files directly in a directory, summed. */
async function directoryBytes(dir: string): Promise<number> {
  let sum = 0;
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (!e.isFile() && !e.isSymbolicLink()) continue;
    const s = await stat(join(dir, e.name)).catch(() => undefined);
    if (s?.isFile()) sum += s.size;
  }
  return sum;
}

/**
 * The first difference between the inputs and outputs a version was served with before it loaded
 * and those of the loaded model (names, element types, dims), or undefined when they agree.
 *
 * @example
 * ```ts
 * const diff = signatureDifference(planned.metadata, model.metadata());
 * if (diff) throw invalidArgument(`config.json declares ${diff}`);
 * ```
 */
export function signatureDifference(planned: ModelMetadata, loaded: ModelMetadata): string | undefined {
  for (const kind of ['inputs', 'outputs'] as const) {
    const a = planned[kind];
    const b = new Map(loaded[kind].map((t) => [t.name, t]));
    const names = (l: TensorInfo[]) => l.map((t) => t.name).join(', ');
    if (a.length !== b.size || a.some((t) => !b.has(t.name)))
      return `${kind} [${names(a)}], the model has [${names(loaded[kind])}]`;
    for (const t of a) {
      const u = b.get(t.name)!;
      if (t.type !== u.type) return `${kind.slice(0, -1)} "${t.name}" as ${t.type}, the model has ${u.type}`;
      if (t.dims.length !== u.dims.length || t.dims.some((d, j) => d !== u.dims[j]))
        return `${kind.slice(0, -1)} "${t.name}" with dims [${t.dims}], the model has [${u.dims}]`;
    }
  }
  return undefined;
}
