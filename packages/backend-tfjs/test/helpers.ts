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
