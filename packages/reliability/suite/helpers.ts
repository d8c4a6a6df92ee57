import { once } from 'node:events';
import { request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import type { Model } from '@mlserve/core';
import { type MlserveHttpOptions, mlservePlugin, mlserveRouter } from '@mlserve/http';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import express from 'express';
import Fastify from 'fastify';
import { inject } from 'vitest';
import { type CaseRecord, recordCase, recordNote } from '../src/index.js';

declare module 'vitest' {
  export interface ProvidedContext {
    resultsDir: string;
    mode: 'ci' | 'full';
  }
}

/** The two HTTP adapters every server case runs against. */
export const ADAPTERS = ['fastify', 'express'] as const;
export type Adapter = (typeof ADAPTERS)[number];

/** `ci` (default: a short soak) or `full` (RELIABILITY_FULL=1: a soak of minutes). */
export function mode(): 'ci' | 'full' {
  return inject('mode');
}

/**
 * Runs one case and records it for RELIABILITY.md: `row.got` says what came back; the result is
 * `fail` when the body throws (an assertion), and the error is rethrown so the test fails too.
 */
export async function check(
  meta: Omit<CaseRecord, 'got' | 'result'>,
  body: (row: { got: string }) => Promise<void> | void,
): Promise<void> {
  const row = { got: '' };
  try {
    await body(row);
    recordCase(inject('resultsDir'), { ...meta, got: row.got, result: 'pass' });
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    recordCase(inject('resultsDir'), {
      ...meta,
      got: `${row.got ? `${row.got}; ` : ''}assertion failed: ${why}`,
      result: 'fail',
    });
    throw err;
  }
}

/** Adds markdown under a section of RELIABILITY.md. */
export function note(area: string, title: string, markdown: string): void {
  recordNote(inject('resultsDir'), { area, title, markdown });
}

/** A running server on a loopback port. */
export interface Running {
  adapter: Adapter;
  url: string;
  port: number;
  server: Server;
  close(): Promise<void>;
}

/** Starts the Fastify plugin or the Express router on 127.0.0.1, on a free port. */
export async function startServer(adapter: Adapter, options: MlserveHttpOptions): Promise<Running> {
  if (adapter === 'fastify') {
    const app = Fastify({ logger: false });
    await app.register(mlservePlugin, options);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    return {
      adapter,
      url: `http://127.0.0.1:${port}`,
      port,
      server: app.server,
      close: async () => {
        app.server.closeAllConnections();
        await app.close();
      },
    };
  }
  const app = express();
  app.use(mlserveRouter(options));
  const server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    adapter,
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** mnist-cnn on onnxruntime-node with one intra-op thread (the machine is shared). */
export function loadMnist(name = 'mnist', version = '1'): Promise<Model> {
  return loadOnnxModel(modelPath('mnist-cnn.onnx'), { name, version, intraOpNumThreads: 1 });
}

/** A V2 JSON request for held-out digit `i`. */
export function digitRequest(i: number): Record<string, unknown> {
  return {
    inputs: [
      { name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: Array.from(mnistHoldout().image(i)) },
    ],
  };
}

/** Held-out digits `i..i+rows-1` as one V2 binary request (header, then raw float32 bytes). */
export function binaryDigits(i: number, rows: number): { body: Buffer; headers: Record<string, string> } {
  const data = new Float32Array(rows * 784);
  for (let r = 0; r < rows; r++) data.set(mnistHoldout().image((i + r) % 200), r * 784);
  const raw = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        {
          name: 'image',
          datatype: 'FP32',
          shape: [rows, 1, 28, 28],
          parameters: { binary_data_size: raw.byteLength },
        },
      ],
      outputs: [{ name: 'logits' }],
    }),
  );
  return {
    body: Buffer.concat([header, raw]),
    headers: { 'inference-header-content-length': String(header.byteLength) },
  };
}

/** What a raw request got back. */
export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json: unknown;
}

/**
 * One HTTP request with exactly the given headers and bytes (fetch would add a Content-Type), on a
 * fresh connection. Rejects on a socket error or after `timeoutMs`.
 */
export function send(
  url: string,
  path: string,
  init: {
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    timeoutMs?: number;
  } = {},
): Promise<Reply> {
  const { method = init.body === undefined ? 'GET' : 'POST', headers = {}, body, timeoutMs = 30_000 } = init;
  return new Promise((resolve, reject) => {
    // The path goes as it is: a URL string would be normalized (`/a/%2E%2E` is `/`) before sending.
    const { hostname, port } = new URL(url);
    const target = { hostname, port, path, method, headers, agent: false as const, timeout: timeoutMs };
    const req = httpRequest(target, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** `400 INVALID_ARGUMENT: first words of the message` for the report. */
export function describeReply(r: Reply): string {
  const j = r.json as { code?: string; error?: string } | undefined;
  if (j && typeof j.code === 'string') return `${r.status} ${j.code}: ${(j.error ?? '').slice(0, 110)}`;
  return `${r.status} ${r.text.slice(0, 80)}`;
}

/** The error body's code, if the reply is an mlserve error. */
export function errorCode(r: Reply): string | undefined {
  const j = r.json as { code?: unknown } | undefined;
  return typeof j?.code === 'string' ? j.code : undefined;
}

/** Resident set size of this process, MiB. */
export function rssMiB(): number {
  return process.memoryUsage.rss() / 1024 / 1024;
}

/** Heap used after a full collection when `--expose-gc` is on, else as it is, MiB. */
export function heapMiB(): number {
  (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The p-th percentile (0..100) of `values` (sorted copy; NaN when empty). */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** `mlserve serve` running as a child process (from packages/cli/dist). */
export interface CliServer {
  url: string;
  /** Everything it printed so far, stdout and stderr. */
  output(): string;
  child: import('node:child_process').ChildProcess;
  /** SIGTERM, then SIGKILL after 10 s; removes the model repository. */
  stop(): Promise<void>;
}

/**
 * Starts `mlserve serve` on a free port over a fresh repository holding mnist-cnn as `mnist/1`
 * (plus what `setup` writes into the directory), waits until it prints its summary, and returns
 * its URL. Extra flags are appended; `--port 0 --poll-interval 0 --no-warmup --intra-op-threads 1`
 * come first.
 */
export async function startCli(
  flags: readonly string[] = [],
  setup?: (dir: string) => Promise<void>,
  env: Record<string, string> = {},
): Promise<CliServer> {
  const { spawn } = await import('node:child_process');
  const { copyFile, mkdir, mkdtemp, rm } = await import('node:fs/promises');
  const { existsSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const cli = fileURLToPath(new URL('../../cli/dist/cli.js', import.meta.url));
  if (!existsSync(cli)) throw new Error(`${cli} is missing: build first (npm run test:reliability does)`);
  const dir = await mkdtemp(join(tmpdir(), 'mlserve-rel-cli-'));
  await mkdir(join(dir, 'mnist', '1'), { recursive: true });
  await copyFile(modelPath('mnist-cnn.onnx'), join(dir, 'mnist', '1', 'model.onnx'));
  await setup?.(dir);
  const child = spawn(
    process.execPath,
    [
      cli,
      'serve',
      '--model-repository',
      dir,
      '--port',
      '0',
      '--poll-interval',
      '0',
      '--no-warmup',
      '--intra-op-threads',
      '1',
      // The text format: this waits for the summary's "Health" line (JSON is the default on a pipe).
      '--log-format',
      'pretty',
      ...flags,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  const t0 = performance.now();
  while (!/Health/.test(out) && child.exitCode === null && performance.now() - t0 < 90_000) await sleep(50);
  const url = /listening on (https?:\/\/[^\s]+:\d+)/.exec(out)?.[1];
  if (!url || !/Health/.test(out)) {
    await stop();
    throw new Error(`mlserve serve did not start: ${out.slice(-400)}`);
  }
  return { url, output: () => out, child, stop };
}
