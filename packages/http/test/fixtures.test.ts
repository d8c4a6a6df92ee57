import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { DATA_TYPES, fromFunction, ModelRegistry } from '@mlserve/core';
import { V2_DATATYPE } from '@mlserve/protocol';
import { mnistHoldout } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmax, loadMnist, SERVERS, type TestServer } from './helpers.js';

interface Case {
  name: string;
  request: { method: string; path: string; headers: Record<string, string>; bodyFile?: string };
  expect: {
    status: number;
    headers?: Record<string, string | boolean>;
    json?: unknown;
    argmaxOf?: string;
    topClassIndex?: boolean;
    binaryHex?: string;
  };
}

const dir = new URL('./fixtures/', import.meta.url);
const { cases } = JSON.parse(readFileSync(new URL('fixtures.json', dir), 'utf8')) as { cases: Case[] };
const label0 = mnistHoldout().labels[0]!;

describe.each(SERVERS)('%s replays tritonclient fixtures', (_kind, start) => {
  let registry: ModelRegistry;
  let server: TestServer;
  beforeAll(async () => {
    registry = new ModelRegistry();
    registry.add(await loadMnist());
    for (const type of DATA_TYPES) {
      registry.add(
        fromFunction({
          name: `id_${V2_DATATYPE[type].toLowerCase()}`,
          inputs: [{ name: 'x', type, dims: [-1, -1] }],
          outputs: [{ name: 'y', type, dims: [-1, -1] }],
          infer: ({ x }) => ({ y: x! }),
        }),
      );
    }
    server = await start({ registry });
  });
  afterAll(async () => {
    await server.close();
    await registry.close();
  });

  for (const c of cases) {
    it(c.name, async () => {
      const init: RequestInit = { method: c.request.method, headers: c.request.headers };
      // Like the Python client: raw bytes, and no Content-Type header at all.
      if (c.request.bodyFile) init.body = readFileSync(new URL(c.request.bodyFile, dir));
      const res = await fetch(`${server.url}${c.request.path}`, init);
      expect(res.status).toBe(c.expect.status);
      for (const [name, want] of Object.entries(c.expect.headers ?? {})) {
        if (want === true) expect(res.headers.has(name)).toBe(true);
        else if (want === false) expect(res.headers.has(name)).toBe(false);
        else expect(res.headers.get(name)).toContain(want);
      }
      let raw = Buffer.from(await res.arrayBuffer());
      // fetch already decompresses; a client that does not would see Content-Encoding.
      if (res.headers.get('content-encoding') === 'gzip' && raw[0] === 0x1f) raw = gunzipSync(raw);
      if (c.expect.json === undefined) return;
      const len = Number(res.headers.get('inference-header-content-length') ?? raw.byteLength);
      const header = JSON.parse(raw.subarray(0, len).toString());
      expect(header).toMatchObject(c.expect.json as object);
      const rest = raw.subarray(len);
      if (c.expect.argmaxOf) {
        const logits = new Float32Array(rest.buffer.slice(rest.byteOffset, rest.byteOffset + 40));
        expect(argmax(logits)).toBe(label0);
      }
      if (c.expect.topClassIndex) expect(Number(header.outputs[0].data[0].split(':')[1])).toBe(label0);
      if (c.expect.binaryHex) expect(rest.toString('hex')).toBe(c.expect.binaryHex);
    });
  }
});
