import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import type { Model } from '@mlserve/core';
import { modelPath } from '@mlserve/test-utils';
import express from 'express';
import Fastify from 'fastify';
import { type MlserveRouterOptions, mlservePlugin, mlserveRouter } from '../src/index.js';

/** mnist-cnn on @mlserve/backend-onnx (one intra-op thread: the machine is shared). */
export function loadMnist(name = 'mnist', version = '1'): Promise<Model> {
  return loadOnnxModel(modelPath('mnist-cnn.onnx'), {
    name,
    version,
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  });
}

export interface TestServer {
  url: string;
  close(): Promise<void>;
}

export type ServerFactory = (options: MlserveRouterOptions & { prefix?: string }) => Promise<TestServer>;

export const fastifyServer: ServerFactory = async ({ prefix, ...options }) => {
  const app = Fastify({ logger: false, forceCloseConnections: true });
  await app.register(mlservePlugin, { ...options, ...(prefix ? { prefix } : {}) });
  // Another route outside the plugin: its JSON parser must be untouched by the plugin's.
  app.post('/echo', async (req) => req.body);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const port = (app.server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}${prefix ?? ''}`, close: () => app.close() };
};

export const expressServer: ServerFactory = async ({ prefix, ...options }) => {
  const app = express();
  if (prefix) app.use(prefix, mlserveRouter(options));
  else app.use(mlserveRouter(options));
  app.use(express.json());
  app.post('/echo', (req, res) => {
    res.json(req.body);
  });
  const server: Server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${prefix ?? ''}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
};

export const SERVERS: [string, ServerFactory][] = [
  ['fastify', fastifyServer],
  ['express', expressServer],
];

/** A binary-extension body: JSON header then raw parts. */
export function binaryBody(
  header: unknown,
  ...parts: Uint8Array[]
): { body: Uint8Array<ArrayBuffer>; headerLength: number } {
  const head = Buffer.from(JSON.stringify(header));
  return { body: bytes(Buffer.concat([head, ...parts])), headerLength: head.byteLength };
}

/** A copy fetch accepts as a body. */
export function bytes(b: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(b);
}

/** Splits a binary response into its JSON header and the bytes after it. */
export async function readBinary(res: Response): Promise<{ header: any; rest: Buffer }> {
  const buf = Buffer.from(await res.arrayBuffer());
  const len = Number(res.headers.get('inference-header-content-length') ?? buf.byteLength);
  return { header: JSON.parse(buf.subarray(0, len).toString()), rest: buf.subarray(len) };
}

export function argmax(a: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[best]!) best = i;
  return best;
}
