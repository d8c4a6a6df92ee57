/**
 * Against `mlserve serve` as users run it: the built CLI as a child process, a repository holding
 * mnist/1/model.onnx, HTTP and gRPC on loopback, real onnxruntime.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tensor } from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Client, createClient, parseClassification } from '../src/index.js';

const CLI = fileURLToPath(new URL('../../cli/dist/cli.js', import.meta.url));
let child: ChildProcess;
let repo: string;
let httpUrl: string;
let grpcAddress: string;
const clients: Client[] = [];

beforeAll(async () => {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: run npx turbo run build --filter=@mlserve/cli...`);
  repo = await mkdtemp(join(tmpdir(), 'mlserve-client-'));
  await mkdir(join(repo, 'mnist', '1'), { recursive: true });
  await copyFile(modelPath('mnist-cnn.onnx'), join(repo, 'mnist', '1', 'model.onnx'));
  child = spawn(
    process.execPath,
    [CLI, 'serve', '--model-repository', repo, '--port', '0', '--grpc-port', '0'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mlserve serve did not start:\n${out}`)), 60_000);
    const check = () => {
      const http = /listening on (http:\/\/\S+)/.exec(out);
      const grpc = /gRPC on (\S+)/.exec(out);
      if (http && grpc) {
        clearTimeout(timer);
        httpUrl = http[1]!;
        grpcAddress = grpc[1]!;
        resolve();
      }
    };
    child.stdout!.on('data', (d) => {
      out += d;
      check();
    });
    child.stderr!.on('data', (d) => {
      out += d;
    });
    child.on('exit', (code) => reject(new Error(`mlserve serve exited ${code}:\n${out}`)));
  });
});

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  if (repo) await rm(repo, { recursive: true, force: true });
});

it.each(['http', 'grpc'] as const)('classifies the hold-out digits over %s', async (transport) => {
  const client = createClient({ url: transport === 'http' ? httpUrl : grpcAddress, transport });
  clients.push(client);
  // The model loads in the background: readiness is the signal to start.
  for (let i = 0; i < 600 && !(await client.modelReady('mnist').catch(() => false)); i++)
    await new Promise((r) => setTimeout(r, 100));
  const mnist = await client.model('mnist', {
    signature: { inputs: { image: 'float32' }, outputs: { logits: 'float32' } },
  });
  const holdout = mnistHoldout();
  let right = 0;
  const n = 32;
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const image = tensor('float32', holdout.image(i), [1, 1, 28, 28]);
      const top = await client.infer('mnist', { image }, { outputs: ['logits'], classification: 1 });
      if (parseClassification(top.logits!)[0]![0]!.index === holdout.labels[i]) right++;
      const { logits } = await mnist.infer({ image });
      expect(logits.data).toBeInstanceOf(Float32Array);
    }),
  );
  expect(right).toBeGreaterThanOrEqual(n - 2);
  expect(await client.serverReady()).toBe(true);
});
