/**
 * Golden wire fixtures: the client's requests byte for byte against what tritonclient.http sends
 * (the goldens in packages/http/test/fixtures, built from tritonclient's source; see their README),
 * and the request/response layouts of Triton's protocol documents
 * (triton-inference-server/server docs/protocol/extension_binary_data.md,
 * extension_classification.md; KServe's required_api.md) decoded and encoded as documented.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Tensors, tensor, tensorsEqual } from '@mlserve/core';
import { encodeV2Request } from '@mlserve/protocol';
import { mnistHoldout } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, createClient, parseClassification, readInferResponse } from '../src/index.js';

const fixture = (name: string) =>
  new Uint8Array(readFileSync(new URL(`../../http/test/fixtures/${name}`, import.meta.url)));
const cases = JSON.parse(
  readFileSync(new URL('../../http/test/fixtures/fixtures.json', import.meta.url), 'utf8'),
) as { cases: { request: { bodyFile?: string; headers: Record<string, string> } }[] };
const headerLengthOf = (file: string) =>
  Number(
    cases.cases.find((c) => c.request.bodyFile === file)!.request.headers['Inference-Header-Content-Length'],
  );

const utf8 = new TextDecoder();
const split = (body: Uint8Array, n: number) => ({
  json: JSON.parse(utf8.decode(body.subarray(0, n))),
  tail: body.subarray(n),
});
const image = () => tensor('float32', mnistHoldout().image(0), [1, 1, 28, 28]);

/** A loopback server that records what the client sends and answers a fixed V2 response. */
let server: Server;
let last: { headers: IncomingHttpHeaders; body: Uint8Array } | undefined;
let client: Client;
let jsonClient: Client;
beforeAll(async () => {
  server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    last = { headers: req.headers, body: new Uint8Array(Buffer.concat(chunks)) };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"model_name":"m","model_version":"1","outputs":[]}');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  client = createClient({ url, binary: true });
  jsonClient = createClient({ url, binary: false });
});
afterAll(async () => {
  await Promise.all([client.close(), jsonClient.close()]);
  await new Promise<void>((r) => server.close(() => r()));
});

/** What the client put on the wire for one call: JSON header members and binary tail. */
async function sent(c: Client, inputs: Tensors, options: Parameters<Client['infer']>[2] = {}) {
  await c.infer('m', inputs, options);
  const hl = last!.headers['inference-header-content-length'];
  const n = hl === undefined ? last!.body.byteLength : Number(hl);
  return { ...split(last!.body, n), headerLength: hl === undefined ? undefined : n, headers: last!.headers };
}

/** The golden request: its JSON members and binary tail. */
function golden(file: string) {
  const body = fixture(file);
  const n = file.endsWith('.json') ? body.byteLength : headerLengthOf(file);
  return split(body, n);
}

// The wire format is the protocol's (@mlserve/protocol's encodeV2Request); key order inside the
// JSON header differs from rapidjson's (JSON objects are unordered), so members are compared, and
// the binary tensor bytes byte for byte.
describe("tritonclient's requests, as the client sends them", () => {
  it('binary input, no outputs named (binary_data_output)', async () => {
    const mine = await sent(client, { image: image() });
    const theirs = golden('infer-binary.bin');
    expect(mine.json).toEqual(theirs.json);
    expect(Buffer.from(mine.tail).equals(Buffer.from(theirs.tail))).toBe(true);
    expect(mine.headerLength).toBe(headerLengthOf('infer-binary.bin'));
  });

  it('id, priority, timeout in µs, a named binary output', async () => {
    const mine = await sent(
      client,
      { image: image() },
      { id: '42', priority: 1, outputs: ['logits'], timeoutMs: 2000 },
    );
    const theirs = golden('infer-binary-output-params.bin');
    // The timeout is the time left when the request leaves: at most the 2 s asked, in µs.
    const { timeout, ...rest } = mine.json.parameters as { timeout: number };
    expect(timeout).toBeGreaterThan(1_000_000);
    expect(timeout).toBeLessThanOrEqual(2_000_000);
    expect(timeout % 1000).toBe(0);
    const { timeout: _t, ...goldenRest } = theirs.json.parameters as { timeout: number };
    expect(rest).toEqual(goldenRest);
    expect({ ...mine.json, parameters: undefined }).toEqual({ ...theirs.json, parameters: undefined });
    expect(Buffer.from(mine.tail).equals(Buffer.from(theirs.tail))).toBe(true);
    expect(Number(mine.headers['x-request-timeout-ms'])).toBe(timeout / 1000);
  });

  it('JSON data with classification', async () => {
    const mine = await sent(jsonClient, { image: image() }, { outputs: ['logits'], classification: 3 });
    expect(mine.headerLength).toBeUndefined();
    expect(mine.headers['content-type']).toBe('application/json');
    expect(mine.json).toEqual(golden('infer-json-classification.json').json);
  });

  it('BYTES with 4-byte length prefixes', async () => {
    const x = tensor(
      'string',
      [new Uint8Array([0x61, 0x62]), new Uint8Array([0xff])] as Uint8Array[],
      [1, 2],
    );
    const mine = await sent(client, { x }, { outputs: ['y'] });
    const theirs = golden('infer-bytes.bin');
    expect(mine.json).toEqual(theirs.json);
    expect(Buffer.from(mine.tail).equals(Buffer.from(theirs.tail))).toBe(true);
  });
});

describe("Triton's protocol documents", () => {
  it('binary request: inputs UINT32 [2,2] and BOOL [3] as 19 bytes after the JSON, output0 asked in binary', () => {
    const input0 = tensor('uint32', [1, 2, 3, 4], [2, 2]);
    const input1 = tensor('bool', [true, false, true]);
    const enc = encodeV2Request(
      { input0, input1 },
      { outputs: [{ name: 'output0', binary: true }], binaryOutputs: false },
    );
    const { json, tail } = split(enc.body, enc.headerLength!);
    expect(json).toEqual({
      inputs: [
        { name: 'input0', shape: [2, 2], datatype: 'UINT32', parameters: { binary_data_size: 16 } },
        { name: 'input1', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } },
      ],
      outputs: [{ name: 'output0', parameters: { binary_data: true } }],
    });
    expect(tail.byteLength).toBe(19);
    expect(Array.from(tail)).toEqual([1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1, 0, 1]);
  });

  it('binary response: FP32 [3,2] as 24 bytes after the JSON header', () => {
    const header = new TextEncoder().encode(
      JSON.stringify({
        outputs: [{ name: 'output0', shape: [3, 2], datatype: 'FP32', parameters: { binary_data_size: 24 } }],
      }),
    );
    const values = new Float32Array([1, 1.5, 2, 2.5, 3, 3.5]);
    const body = new Uint8Array(header.byteLength + 24);
    body.set(header);
    body.set(new Uint8Array(values.buffer), header.byteLength);
    const res = readInferResponse(body, String(header.byteLength));
    expect(tensorsEqual(res.outputs.output0!, tensor('float32', values, [3, 2]))).toBe(true);
  });

  it('JSON response with an id, nested or flat data, and a mix of binary and JSON outputs', () => {
    const header = new TextEncoder().encode(
      JSON.stringify({
        id: '42',
        model_name: 'mymodel',
        model_version: '3',
        outputs: [
          {
            name: 'output0',
            shape: [3, 2],
            datatype: 'FP32',
            data: [
              [1, 1.5],
              [2, 2.5],
              [3, null],
            ],
          },
          { name: 'output1', shape: [2], datatype: 'UINT32', parameters: { binary_data_size: 8 } },
          { name: 'output2', shape: [1], datatype: 'BYTES', data: ['hi'] },
        ],
      }),
    );
    const body = new Uint8Array(header.byteLength + 8);
    body.set(header);
    body.set(new Uint8Array(new Uint32Array([7, 9]).buffer), header.byteLength);
    const res = readInferResponse(body, String(header.byteLength));
    expect(res).toMatchObject({ id: '42', modelName: 'mymodel', modelVersion: '3' });
    expect(Array.from(res.outputs.output0!.data as Float32Array).slice(0, 5)).toEqual([1, 1.5, 2, 2.5, 3]);
    expect(Number.isNaN((res.outputs.output0!.data as Float32Array)[5])).toBe(true);
    expect(Array.from(res.outputs.output1!.data as Uint32Array)).toEqual([7, 9]);
    expect(res.outputs.output2!.data).toEqual(['hi']);
  });

  it('classification response: score:index:label strings per batch row', () => {
    const body = new TextEncoder().encode(
      JSON.stringify({
        outputs: [
          {
            name: 'output0',
            shape: [2, 2],
            datatype: 'BYTES',
            data: ['0.9:1:cat', '0.1:0', '0.7:2:dog', '0.2:1:cat'],
          },
        ],
      }),
    );
    const rows = parseClassification(readInferResponse(body, null).outputs.output0!);
    expect(rows).toEqual([
      [
        { score: 0.9, index: 1, label: 'cat' },
        { score: 0.1, index: 0 },
      ],
      [
        { score: 0.7, index: 2, label: 'dog' },
        { score: 0.2, index: 1, label: 'cat' },
      ],
    ]);
  });

  it('refuses a response whose sizes do not add up, as INTERNAL (the server broke the protocol)', () => {
    const header = new TextEncoder().encode(
      JSON.stringify({
        outputs: [{ name: 'y', shape: [4], datatype: 'FP32', parameters: { binary_data_size: 16 } }],
      }),
    );
    const body = new Uint8Array(header.byteLength + 8);
    body.set(header);
    expect(() => readInferResponse(body, String(header.byteLength))).toThrow(/past the end/);
    expect(() => readInferResponse(body, String(body.byteLength + 1))).toThrow(/past the end/);
    const huge = new TextEncoder().encode(
      JSON.stringify({ outputs: [{ name: 'y', shape: [1e9, 1e9], datatype: 'FP32', data: [1] }] }),
    );
    try {
      readInferResponse(huge, null);
      expect.unreachable();
    } catch (err) {
      expect((err as { code?: string }).code).toBe('INTERNAL');
    }
  });
});
