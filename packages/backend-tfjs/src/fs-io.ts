import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { invalidArgument, notFound, ServeError } from '@mlserve/core';
import type { io } from '@tensorflow/tfjs';

type ModelJSON = io.ModelJSON;
type ModelArtifacts = io.ModelArtifacts;
type WeightsManifestConfig = io.WeightsManifestConfig;
type WeightsManifestEntry = io.WeightsManifestEntry;

/** The subset of `tf.io` the fs handler needs (passed in so this file never imports tfjs itself). */
export interface TfIo {
  getModelArtifactsForJSON: typeof io.getModelArtifactsForJSON;
  getModelJSONForModelArtifacts?: (artifacts: ModelArtifacts, manifest: WeightsManifestConfig) => ModelJSON;
  CompositeArrayBuffer: typeof io.CompositeArrayBuffer;
}

/** Resolves a path that names either a directory holding `model.json` or the JSON file itself. */
export async function resolveModelJson(path: string): Promise<string> {
  const abs = resolve(path);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(abs);
  } catch (err) {
    throw notFound(`TF.js model not found: ${abs}`, { cause: err });
  }
  if (!info.isDirectory()) return abs;
  const json = join(abs, 'model.json');
  try {
    await stat(json);
  } catch (err) {
    throw notFound(`no model.json in ${abs}`, { cause: err });
  }
  return json;
}

/** Reads and parses model.json, with errors that say which file is wrong. */
export async function readModelJson(jsonPath: string): Promise<ModelJSON> {
  let text: string;
  try {
    text = await readFile(jsonPath, 'utf8');
  } catch (err) {
    throw notFound(`cannot read ${jsonPath}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${jsonPath} is not valid JSON`, { cause: err });
  }
  if (typeof parsed !== 'object' || parsed === null || !('modelTopology' in parsed)) {
    throw invalidArgument(`${jsonPath} is not a TF.js model.json (no modelTopology)`);
  }
  return parsed as ModelJSON;
}

/**
 * A `tf.io.IOHandler` over `fs`: loads `model.json` and the weight shards it lists (paths relative
 * to the JSON file), and saves a model as `model.json` + `weights.bin`. No tfjs-node needed.
 *
 * @example
 * ```ts
 * import * as tf from '@tensorflow/tfjs';
 * import { fileSystemHandler } from '@mlserve/backend-tfjs';
 * const model = await tf.loadLayersModel(fileSystemHandler('models/mnist', tf.io));
 * await model.save(fileSystemHandler('/tmp/copy', tf.io));
 * ```
 */
export function fileSystemHandler(path: string, tfIo: TfIo): io.IOHandler {
  return {
    async load(): Promise<ModelArtifacts> {
      const jsonPath = await resolveModelJson(path);
      const modelJSON = await readModelJson(jsonPath);
      const dir = dirname(jsonPath);
      return tfIo.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs: WeightsManifestEntry[] = [];
        const buffers: ArrayBuffer[] = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const shard = resolve(dir, p);
            if (!shard.startsWith(resolve(dir))) {
              throw invalidArgument(`weight shard ${p} points outside ${dir}`);
            }
            let buf: Buffer;
            try {
              buf = await readFile(shard);
            } catch (err) {
              throw notFound(`missing weight shard ${shard} listed in ${jsonPath}`, { cause: err });
            }
            buffers.push(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer);
          }
        }
        return [specs, tfIo.CompositeArrayBuffer.join(buffers)];
      });
    },
    async save(artifacts: ModelArtifacts): Promise<io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new ServeError('UNIMPLEMENTED', 'saving binary model topologies is not supported');
      }
      const dir = path.endsWith('.json') ? dirname(resolve(path)) : resolve(path);
      const jsonName = path.endsWith('.json') ? basename(path) : 'model.json';
      await mkdir(dir, { recursive: true });
      const weightsName = 'weights.bin';
      const manifest: WeightsManifestConfig = [
        { paths: [weightsName], weights: artifacts.weightSpecs ?? [] },
      ];
      const modelJSON: ModelJSON = {
        modelTopology: artifacts.modelTopology as ModelJSON['modelTopology'],
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        weightsManifest: manifest,
      } as ModelJSON;
      if (artifacts.signature) modelJSON.signature = artifacts.signature;
      if (artifacts.userDefinedMetadata) modelJSON.userDefinedMetadata = artifacts.userDefinedMetadata;
      if (artifacts.trainingConfig) modelJSON.trainingConfig = artifacts.trainingConfig;
      const weights =
        artifacts.weightData === undefined
          ? new ArrayBuffer(0)
          : tfIo.CompositeArrayBuffer.join(artifacts.weightData);
      await writeFile(join(dir, jsonName), JSON.stringify(modelJSON));
      await writeFile(join(dir, weightsName), new Uint8Array(weights));
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          weightDataBytes: weights.byteLength,
        },
      };
    },
  };
}
