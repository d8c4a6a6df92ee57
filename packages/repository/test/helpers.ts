import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Middleware, type Tensors, wrap } from '@mlserve/core';
import { mnistHoldout, modelPath, type TestModel } from '@mlserve/test-utils';

/** A fresh temporary model repository. */
export async function tempRepo(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mlserve-repo-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

/** Copies a test model into `<dir>/<model>/<version>/model.onnx`. */
export async function addVersion(
  dir: string,
  model: string,
  version: string,
  file: TestModel = 'mnist-cnn.onnx',
): Promise<string> {
  const vdir = join(dir, model, version);
  await mkdir(vdir, { recursive: true });
  const target = join(vdir, 'model.onnx');
  await copyFile(modelPath(file), target);
  return target;
}

export async function writeConfig(dir: string, model: string, config: unknown): Promise<void> {
  await mkdir(join(dir, model), { recursive: true });
  await writeFile(
    join(dir, model, 'config.json'),
    typeof config === 'string' ? config : JSON.stringify(config),
  );
}

/** One held-out digit as the MNIST CNN's input. */
export function digit(i: number): Tensors {
  return { image: { type: 'float32', dims: [1, 1, 28, 28], data: mnistHoldout().image(i) } };
}

export function argmax(data: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < data.length; i++) if (data[i]! > data[best]!) best = i;
  return best;
}

/** A layer that holds each request for `ms` (to keep requests in flight). */
export function delay(ms: number): Middleware {
  return (inner) =>
    wrap(inner, {
      layer: 'delay',
      infer: async (inputs, options) => {
        await new Promise((r) => setTimeout(r, ms));
        return inner.infer(inputs, options);
      },
    });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
