import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as tf from '@tensorflow/tfjs';

const require = createRequire(import.meta.url);

/** The trained MNIST layers model committed in this package. */
export const MNIST_DIR = fileURLToPath(new URL('../models/mnist/', import.meta.url));

/** nsfwjs ships its models as UMD scripts (model.json and base64 shards); this unpacks one. */
export function nsfwArtifacts(model: 'mobilenet_v2' | 'mobilenet_v2_mid'): {
  json: tf.io.ModelJSON;
  shards: { name: string; bytes: Uint8Array }[];
} {
  const root = dirname(dirname(dirname(require.resolve('nsfwjs'))));
  const dir = join(root, 'dist', 'models', model);
  const json = structuredClone(require(join(dir, 'model.min.js'))) as tf.io.ModelJSON;
  const shards: { name: string; bytes: Uint8Array }[] = [];
  for (const group of json.weightsManifest) {
    group.paths = group.paths.map((p) => {
      const b64 = require(join(dir, `${p}.min.js`)) as string;
      shards.push({ name: `${p}.bin`, bytes: new Uint8Array(Buffer.from(b64, 'base64')) });
      return `${p}.bin`;
    });
  }
  return { json, shards };
}

/** Writes an nsfwjs model as an ordinary TF.js model directory (model.json + .bin shards). */
export function nsfwModelDir(model: 'mobilenet_v2' | 'mobilenet_v2_mid'): string {
  const { json, shards } = nsfwArtifacts(model);
  const dir = mkdtempSync(join(tmpdir(), `tfjs-${model}-`));
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  for (const s of shards) writeFileSync(join(dir, s.name), s.bytes);
  return dir;
}

/** Writes a model.json (and no weights) to a fresh temp dir. */
export function writeModelDir(json: unknown, files: Record<string, Uint8Array> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'tfjs-model-'));
  writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, name), bytes);
  return dir;
}

/**
 * A hand-written graph model with a dynamic op (Where), so tfjs refuses `execute` and it must run
 * through `executeAsync`: x float32[-1] -> flags bool[-1] (x != 0), nonzero int32[-1,1] (indices).
 */
export const WHERE_GRAPH = {
  format: 'graph-model',
  generatedBy: 'mlserve test',
  convertedBy: 'hand',
  modelTopology: {
    node: [
      {
        name: 'x',
        op: 'Placeholder',
        attr: { shape: { shape: { dim: [{ size: '-1' }] } }, dtype: { type: 'DT_FLOAT' } },
      },
      {
        name: 'mask',
        op: 'Cast',
        input: ['x'],
        attr: { SrcT: { type: 'DT_FLOAT' }, DstT: { type: 'DT_BOOL' } },
      },
      { name: 'flags', op: 'Identity', input: ['mask'], attr: { T: { type: 'DT_BOOL' } } },
      { name: 'nonzero', op: 'Where', input: ['mask'], attr: { T: { type: 'DT_BOOL' } } },
    ],
    versions: { producer: 1 },
  },
  weightsManifest: [],
};

/** A graph model with a string input passed straight through: s string[-1] -> out string[-1]. */
export const STRING_GRAPH = {
  format: 'graph-model',
  modelTopology: {
    node: [
      {
        name: 's',
        op: 'Placeholder',
        attr: { shape: { shape: { dim: [{ size: '-1' }] } }, dtype: { type: 'DT_STRING' } },
      },
      { name: 'out', op: 'Identity', input: ['s'], attr: { T: { type: 'DT_STRING' } } },
    ],
    versions: { producer: 1 },
  },
  weightsManifest: [],
};

/**
 * In-memory artifacts of a graph model whose input has no declared shape: x float32[?] times a
 * 3x2 weight matrix. A wrongly shaped x passes our checks and fails inside tfjs's MatMul.
 */
export function matmulArtifacts(): tf.io.ModelArtifacts {
  const w = new Float32Array([1, 2, 3, 4, 5, 6]);
  return {
    format: 'graph-model',
    modelTopology: {
      node: [
        { name: 'x', op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' } } },
        {
          name: 'w',
          op: 'Const',
          attr: {
            value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: [{ size: '3' }, { size: '2' }] } } },
            dtype: { type: 'DT_FLOAT' },
          },
        },
        {
          name: 'y',
          op: 'MatMul',
          input: ['x', 'w'],
          attr: { transpose_a: { b: false }, transpose_b: { b: false }, T: { type: 'DT_FLOAT' } },
        },
      ],
      versions: { producer: 1 },
    },
    weightSpecs: [{ name: 'w', shape: [3, 2], dtype: 'float32' }],
    weightData: w.buffer,
  };
}

/** The artifacts of a tfjs model built in code (no files). */
export async function artifactsOf(model: tf.LayersModel, tfjs: typeof tf): Promise<tf.io.ModelArtifacts> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tfjs.io.withSaveHandler(async (a) => {
      saved = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  if (!saved) throw new Error('model.save produced no artifacts');
  return saved;
}

/** A stand-in for tfjs-node / tfjs-node-gpu: importing it registers a `tensorflow` backend that delegates to cpu. */
export function fakeTfjsNode(tfjs: typeof tf, node: Record<string, unknown> = {}): unknown {
  if (!tfjs.findBackendFactory('tensorflow')) {
    const cpu = tfjs.findBackend('cpu') as tf.KernelBackend;
    const Cpu = cpu.constructor as new () => tf.KernelBackend;
    tfjs.registerBackend('tensorflow', () => new Cpu(), 3);
    for (const k of tfjs.getKernelsForBackend('cpu'))
      tfjs.registerKernel({ ...k, backendName: 'tensorflow' });
  }
  return { node, version: 'stand-in' };
}

/** Makes a loader that serves stand-ins for some packages, says others are not installed, and imports the rest. */
export function loaderWith(
  standIns: Record<string, () => unknown>,
  missing: readonly string[] = [],
): (specifier: string) => Promise<unknown> {
  return async (specifier) => {
    const make = standIns[specifier];
    if (make) return make();
    if (missing.includes(specifier)) {
      throw Object.assign(new Error(`Cannot find package '${specifier}'`), { code: 'ERR_MODULE_NOT_FOUND' });
    }
    return import(specifier);
  };
}

/** Removes the stand-in `tensorflow` backend and its kernels. */
export function removeFakeTfjsNode(tfjs: typeof tf): void {
  if (!tfjs.findBackendFactory('tensorflow')) return;
  for (const k of tfjs.getKernelsForBackend('tensorflow')) tfjs.unregisterKernel(k.kernelName, 'tensorflow');
  tfjs.removeBackend('tensorflow');
}
