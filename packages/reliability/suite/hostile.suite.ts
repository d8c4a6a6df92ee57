/**
 * Hostile input against both adapters: every request below gets a 4xx JSON error with a code, the
 * server stays up and keeps answering correctly, and memory stays bounded.
 */
import { request as httpRequest } from 'node:http';
import { gzipSync } from 'node:zlib';
import { ModelRegistry } from '@mlserve/core';
import { mnistHoldout } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADAPTERS,
  type Adapter,
  check,
  describeReply,
  digitRequest,
  errorCode,
  heapMiB,
  loadMnist,
  type Reply,
  type Running,
  rssMiB,
  send,
  startServer,
} from './helpers.js';

const AREA = 'Hostile input';
const BODY_LIMIT = 1024 * 1024;
const INFER = '/v2/models/mnist/infer';
const JSON_CT = { 'content-type': 'application/json' };

interface HostileCase {
  name: string;
  /** What the report says was sent. */
  sent: string;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string | Buffer;
  status: number;
  code: string;
  /** Where Fastify's router answers before the plugin runs, with its own code. */
  fastifyCode?: string;
}

const image = (data: unknown, shape: unknown = [1, 1, 28, 28], datatype: unknown = 'FP32') =>
  JSON.stringify({ inputs: [{ name: 'image', datatype, shape, data }] });
const zeros = (n: number) => new Array<number>(n).fill(0);

function binary(
  header: object,
  tail: Buffer,
  declared?: string,
): { body: Buffer; headers: Record<string, string> } {
  const h = Buffer.from(JSON.stringify(header));
  return {
    body: Buffer.concat([h, tail]),
    headers: { 'inference-header-content-length': declared ?? String(h.byteLength) },
  };
}

function lengthPrefixed(parts: [declared: number, bytes: Buffer][]): Buffer {
  return Buffer.concat(
    parts.flatMap(([n, b]) => {
      const len = Buffer.alloc(4);
      len.writeUInt32LE(n, 0);
      return [len, b];
    }),
  );
}

const DEPTH = 200_000;
/** 64 MiB of spaces, gzipped to about 64 KiB: under the body limit until inflated. */
const BOMB = gzipSync(Buffer.alloc(64 * 1024 * 1024, 32), { level: 9 });
const nested = `${'['.repeat(DEPTH)}0${']'.repeat(DEPTH)}`;

function cases(): HostileCase[] {
  const pastEnd = binary({ inputs: [] }, Buffer.alloc(8), '9999');
  const bytesPast = binary(
    { inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: 16 } }] },
    lengthPrefixed([
      [3, Buffer.from('abc')],
      [1_000_000, Buffer.from('def\0\0')],
    ]).subarray(0, 16),
  );
  const bytesCount = binary(
    { inputs: [{ name: 'text', datatype: 'BYTES', shape: [1e9], parameters: { binary_data_size: 8 } }] },
    lengthPrefixed([[4, Buffer.from('abcd')]]),
  );
  const sizePast = binary(
    {
      inputs: [
        { name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], parameters: { binary_data_size: 3136 } },
      ],
    },
    Buffer.alloc(100),
  );
  return [
    {
      name: 'malformed JSON',
      sent: '`{"inputs": [`',
      body: '{"inputs": [',
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'JSON that is not an object',
      sent: '`[1,2,3]`',
      body: '[1,2,3]',
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'empty body',
      sent: 'POST with no body',
      body: '',
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'wrong content type (XML)',
      sent: 'Content-Type: application/xml, an XML document',
      body: '<inputs><image>1</image></inputs>',
      headers: { 'content-type': 'application/xml' },
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'wrong content type (form)',
      sent: 'Content-Type: application/x-www-form-urlencoded, `inputs=1&x=2`',
      body: 'inputs=1&x=2',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      // A content type browsers send cross-origin without a preflight: refused (issue 22).
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'unsupported Content-Encoding',
      sent: 'Content-Encoding: br',
      body: image(zeros(784)),
      headers: { ...JSON_CT, 'content-encoding': 'br' },
      status: 415,
      code: 'UNSUPPORTED_MEDIA_TYPE',
    },
    {
      name: 'corrupt gzip body',
      sent: 'Content-Encoding: gzip, bytes that are not gzip',
      body: Buffer.from('not gzip at all'),
      headers: { ...JSON_CT, 'content-encoding': 'gzip' },
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'gzip bomb',
      sent: `Content-Encoding: gzip, ${(BOMB.byteLength / 1024).toFixed(0)} KiB that inflate to 64 MiB`,
      body: BOMB,
      headers: { ...JSON_CT, 'content-encoding': 'gzip' },
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
    },
    {
      name: 'declared Content-Length over the limit',
      sent: `a 2 MiB body against a ${BODY_LIMIT / 1024} KiB limit`,
      body: Buffer.alloc(2 * BODY_LIMIT, 32),
      headers: JSON_CT,
      status: 413,
      code: 'PAYLOAD_TOO_LARGE',
    },
    {
      name: 'shape product differs from data length',
      sent: 'shape [1,1,28,28] with 10 numbers',
      body: image(zeros(10)),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'more data than the shape',
      sent: 'shape [1,1,28,28] with 785 numbers',
      body: image(zeros(785)),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'negative dim',
      sent: 'shape [-1,1,28,28]',
      body: image(zeros(784), [-1, 1, 28, 28]),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'fractional dim',
      sent: 'shape [0.5,2,28,28]',
      body: image(zeros(784), [0.5, 2, 28, 28]),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'NaN dim',
      sent: 'shape [NaN,1,28,28] (a bare NaN token)',
      body: image(zeros(784)).replace('[1,1,28,28]', '[NaN,1,28,28]'),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'string dim',
      sent: 'shape ["1",1,28,28]',
      body: image(zeros(784), ['1', 1, 28, 28]),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'huge dims, tiny data',
      sent: 'shape [1e9,1e9] with 3 numbers',
      body: image([1, 2, 3], [1e9, 1e9]),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'dims past 2^53',
      sent: 'shape [1e300]',
      body: image([1], [1e300]),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'rank over the limit',
      sent: 'shape of 40 ones',
      body: image([0], new Array(40).fill(1)),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'element of the wrong kind',
      sent: 'FP32 data with a string element',
      body: image(['x', ...zeros(783)]),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'datatype that does not match the model',
      sent: 'FP64 for a FP32 input',
      body: image(zeros(784), [1, 1, 28, 28], 'FP64'),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'datatype that does not exist',
      sent: 'datatype "FP128"',
      body: image(zeros(784), [1, 1, 28, 28], 'FP128'),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'datatype of the wrong JSON type',
      sent: 'datatype {"toString": 1}',
      body: image(zeros(784), [1, 1, 28, 28], { toString: 1 }),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'missing input',
      sent: '`{"inputs": []}`',
      body: '{"inputs":[]}',
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'no inputs field',
      sent: '`{"id": "x"}`',
      body: '{"id":"x"}',
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'extra input',
      sent: '"image" plus an unknown "extra" input',
      body: JSON.stringify({
        inputs: [
          { name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: zeros(784) },
          { name: 'extra', datatype: 'FP32', shape: [1], data: [1] },
        ],
      }),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'repeated input',
      sent: '"image" twice',
      body: JSON.stringify({
        inputs: [
          { name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: zeros(784) },
          { name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28], data: zeros(784) },
        ],
      }),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'unknown output requested',
      sent: 'outputs [{"name": "nope"}]',
      body: JSON.stringify({ ...digitRequest(0), outputs: [{ name: 'nope' }] }),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'unknown model',
      sent: 'POST /v2/models/nope/infer',
      path: '/v2/models/nope/infer',
      body: image(zeros(784)),
      headers: JSON_CT,
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'unknown version',
      sent: 'POST /v2/models/mnist/versions/99/infer',
      path: '/v2/models/mnist/versions/99/infer',
      body: image(zeros(784)),
      headers: JSON_CT,
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'unknown model (TF Serving)',
      sent: 'POST /v1/models/nope:predict',
      path: '/v1/models/nope:predict',
      body: '{"instances":[[1]]}',
      headers: JSON_CT,
      status: 404,
      code: 'NOT_FOUND',
    },
    {
      name: 'TF Serving: instances of the wrong shape',
      sent: '`{"instances": [[1,2,3]]}` to mnist',
      path: '/v1/models/mnist:predict',
      body: '{"instances":[[1,2,3]]}',
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'binary header length past the end',
      sent: 'Inference-Header-Content-Length: 9999 on a 22-byte body',
      ...pastEnd,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'binary header length not a number',
      sent: 'Inference-Header-Content-Length: -5',
      body: pastEnd.body,
      headers: { 'inference-header-content-length': '-5' },
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'binary_data_size past the end',
      sent: 'binary_data_size 3136 with 100 bytes after the header',
      ...sizePast,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'BYTES length prefix past the end',
      sent: 'BYTES element declaring 1,000,000 bytes in a 16-byte buffer',
      ...bytesPast,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'BYTES count the data cannot hold',
      sent: 'BYTES shape [1e9] with 8 bytes of data',
      ...bytesCount,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'deeply nested JSON data',
      sent: `"data" nested ${DEPTH.toLocaleString('en')} arrays deep`,
      body: `{"inputs":[{"name":"image","datatype":"FP32","shape":[1],"data":${nested}}]}`,
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'deeply nested JSON elsewhere',
      sent: `"parameters": {"a": {"a": ...}} ${(DEPTH / 4).toLocaleString('en')} deep`,
      body: `{"inputs":[],"parameters":${'{"a":'.repeat(DEPTH / 4)}1${'}'.repeat(DEPTH / 4)}}`,
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: '`__proto__` as the input name',
      sent: '`{"name": "__proto__", ...}`',
      body: JSON.stringify({ inputs: [{ name: '__proto__', datatype: 'FP32', shape: [1], data: [1] }] }),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: '`__proto__` in parameters',
      sent: '`"parameters": {"__proto__": {"polluted": true}}`',
      body: `{"inputs":[{"name":"image","datatype":"FP32","shape":[1,1,28,28],"data":[${zeros(784)}]}],"parameters":{"__proto__":{"polluted":true}}}`,
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: '`constructor` keys',
      sent: '`"constructor": {"prototype": {"polluted": true}}` at the top and as an input name',
      body: JSON.stringify({
        constructor: { prototype: { polluted: true } },
        inputs: [{ name: 'constructor', datatype: 'FP32', shape: [1], data: [1] }],
      }),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'invalid UTF-8 in the body',
      sent: 'a JSON string holding the bytes FF FE C3 28',
      body: Buffer.concat([
        Buffer.from('{"id":"'),
        Buffer.from([0xff, 0xfe, 0xc3, 0x28]),
        Buffer.from('","inputs":[]}'),
      ]),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'invalid UTF-8 in the binary header',
      sent: 'a binary request whose JSON header holds byte FF',
      body: Buffer.from([0x7b, 0xff, 0x7d]),
      headers: { 'inference-header-content-length': '3' },
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
    {
      name: 'invalid percent-encoding in the path',
      sent: 'POST /v2/models/%E0%A4%A/infer',
      path: '/v2/models/%E0%A4%A/infer',
      body: image(zeros(784)),
      headers: JSON_CT,
      status: 400,
      code: 'INVALID_ARGUMENT',
      // Fastify's router rejects the URL before any plugin sees it (only the app's
      // `frameworkErrors` option could change that body): still a 400 JSON error with a code.
      fastifyCode: 'FST_ERR_BAD_URL',
    },
    {
      name: 'bad timeout header',
      sent: 'x-request-timeout-ms: -1',
      body: JSON.stringify(digitRequest(0)),
      headers: { ...JSON_CT, 'x-request-timeout-ms': '-1' },
      status: 400,
      code: 'INVALID_ARGUMENT',
    },
  ];
}

function sendCase(url: string, c: HostileCase): Promise<Reply> {
  return send(url, c.path ?? INFER, {
    method: c.method ?? 'POST',
    ...(c.headers && { headers: c.headers }),
    ...(c.body !== undefined && { body: c.body }),
  });
}

/** Argmax of the first output's data, from a V2 JSON response. */
function predicted(r: Reply): number {
  const data = (r.json as { outputs: { data: number[] }[] }).outputs[0]!.data;
  let best = 0;
  for (let i = 1; i < data.length; i++) if (data[i]! > data[best]!) best = i;
  return best;
}

/**
 * Streams `total` bytes as fast as the server takes them (chunked, or with a declared length) and
 * resolves with the reply and how many bytes had been written when it arrived.
 */
function streamHuge(
  url: string,
  total: number,
  declareLength: boolean,
): Promise<{ reply: Reply | undefined; sentAtReply: number; error?: string }> {
  return new Promise((resolve) => {
    let sent = 0;
    let done = false;
    const chunk = Buffer.alloc(64 * 1024, 32);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (declareLength) headers['content-length'] = String(total);
    const finish = (v: { reply: Reply | undefined; sentAtReply: number; error?: string }) => {
      if (done) return;
      done = true;
      req.destroy();
      resolve(v);
    };
    const req = httpRequest(`${url}${INFER}`, { method: 'POST', headers, agent: false }, (res) => {
      const at = sent;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {}
        finish({ reply: { status: res.statusCode ?? 0, headers: res.headers, text, json }, sentAtReply: at });
      });
    });
    req.on('error', (err) => finish({ reply: undefined, sentAtReply: sent, error: err.message }));
    const pump = () => {
      while (!done && sent < total) {
        sent += chunk.byteLength;
        if (!req.write(chunk)) {
          req.once('drain', pump);
          return;
        }
      }
      if (!done && sent >= total) req.end();
    };
    pump();
    setTimeout(
      () => finish({ reply: undefined, sentAtReply: sent, error: 'no answer within 60 s' }),
      60_000,
    ).unref();
  });
}

describe.each(ADAPTERS)('hostile input: %s', (adapter: Adapter) => {
  let server: Running;
  let registry: ModelRegistry;

  beforeAll(async () => {
    registry = new ModelRegistry();
    registry.add(await loadMnist());
    server = await startServer(adapter, { registry, bodyLimit: BODY_LIMIT });
  });
  afterAll(async () => {
    await server.close();
    await registry.close();
  });

  it.each(cases().map((c) => [c.name, c] as const))('%s: a 4xx JSON error with a code', async (_, c) => {
    await check({ area: AREA, name: c.name, adapter, sent: c.sent }, async (row) => {
      const r = await sendCase(server.url, c);
      row.got = describeReply(r);
      expect(r.status).toBe(c.status);
      expect(r.headers['content-type']).toMatch(/^application\/json/);
      expect(errorCode(r)).toBe(adapter === 'fastify' ? (c.fastifyCode ?? c.code) : c.code);
    });
  });

  it('Content-Type: a body a browser could send cross-origin without a preflight is refused; none is served', async () => {
    await check(
      {
        area: AREA,
        name: 'valid JSON under text/plain (a preflight-free browser type), then with no Content-Type',
        adapter,
        sent: 'a valid mnist request with Content-Type: text/plain, then with none',
      },
      async (row) => {
        const body = JSON.stringify(digitRequest(0));
        const plain = await send(server.url, INFER, { body, headers: { 'content-type': 'text/plain' } });
        const none = await send(server.url, INFER, { body });
        row.got = `text/plain: ${plain.status} ${errorCode(plain)}; no Content-Type: ${none.status} (tritonclient sends binary requests with none, so the body decides)`;
        expect(plain.status).toBe(415);
        expect(errorCode(plain)).toBe('UNSUPPORTED_MEDIA_TYPE');
        expect(none.status).toBe(200);
      },
    );
  });

  it('prototype pollution: no object in the server process gained a property', async () => {
    await check(
      {
        area: AREA,
        name: 'prototype pollution after the `__proto__` / `constructor` cases',
        adapter,
        sent: 'the cases above, then `({}).polluted` in the server process',
      },
      async (row) => {
        for (const c of cases().filter((x) => x.name.includes('__proto__') || x.name.includes('constructor')))
          await sendCase(server.url, c);
        const probe = {} as { polluted?: unknown };
        row.got = `({}).polluted is ${String(probe.polluted)}; Object.prototype keys: ${Object.keys(Object.prototype).length}`;
        expect(probe.polluted).toBeUndefined();
        expect(Object.keys(Object.prototype)).toEqual([]);
      },
    );
  });

  it.each([
    ['chunked', false],
    ['with Content-Length', true],
  ] as const)('a 256 MiB upload (%s) is refused with 413 before it completes', async (how, declare) => {
    const total = 256 * 1024 * 1024;
    await check(
      {
        area: AREA,
        name: `body over the limit, streamed (${how})`,
        adapter,
        sent: `a 256 MiB body ${how}, 64 KiB chunks, against a 1 MiB limit`,
      },
      async (row) => {
        const rss0 = rssMiB();
        const { reply, sentAtReply, error } = await streamHuge(server.url, total, declare);
        const grew = rssMiB() - rss0;
        row.got = reply
          ? `${describeReply(reply)} after ${(sentAtReply / 2 ** 20).toFixed(1)} MiB sent; RSS +${grew.toFixed(0)} MiB`
          : `no reply (${error}) after ${(sentAtReply / 2 ** 20).toFixed(1)} MiB`;
        expect(reply?.status).toBe(413);
        expect(errorCode(reply!)).toBe('PAYLOAD_TOO_LARGE');
        expect(sentAtReply).toBeLessThan(total);
        expect(grew).toBeLessThan(128);
      },
    );
  });

  it('memory stays bounded over 20 rounds of every hostile case, and the server still answers right', async () => {
    await check(
      {
        area: AREA,
        name: 'memory and liveness after 20 rounds of every case',
        adapter,
        sent: `${cases().length} hostile requests x 20 rounds (4 at a time), then a real digit`,
      },
      async (row) => {
        const all = cases();
        const first = await send(server.url, INFER, {
          body: JSON.stringify(digitRequest(0)),
          headers: JSON_CT,
        });
        expect(first.status).toBe(200);
        const rss0 = rssMiB();
        const heap0 = heapMiB();
        const statuses = new Map<number, number>();
        for (let round = 0; round < 20; round++) {
          for (let i = 0; i < all.length; i += 4) {
            const replies = await Promise.all(all.slice(i, i + 4).map((c) => sendCase(server.url, c)));
            for (const r of replies) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
          }
        }
        const rss1 = rssMiB();
        const heap1 = heapMiB();
        const live = await send(server.url, '/v2/health/live');
        const digits = mnistHoldout();
        const r = await send(server.url, INFER, { body: JSON.stringify(digitRequest(7)), headers: JSON_CT });
        row.got =
          `statuses ${[...statuses].map(([s, n]) => `${s}x${n}`).join(' ')}; RSS ${rss0.toFixed(0)} -> ${rss1.toFixed(0)} MiB, ` +
          `heap ${heap0.toFixed(0)} -> ${heap1.toFixed(0)} MiB; live ${live.status}; digit 7 -> ${r.status}, predicted ${predicted(r)} (label ${digits.labels[7]})`;
        for (const s of statuses.keys()) expect(s >= 400 && s < 500).toBe(true);
        expect(rss1 - rss0).toBeLessThan(256);
        expect(heap1 - heap0).toBeLessThan(64);
        expect(live.status).toBe(200);
        expect(r.status).toBe(200);
        expect(predicted(r)).toBe(digits.labels[7]);
      },
    );
  });
});
