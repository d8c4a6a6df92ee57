/**
 * Golden wire fixtures: the client's requests byte for byte against what tritonclient.http sends
 * (the goldens in packages/http/test/fixtures, built from tritonclient's source; see their README),
 * and the request/response layouts of Triton's protocol documents
 * (triton-inference-server/server docs/protocol/extension_binary_data.md,
 * extension_classification.md; KServe's required_api.md) decoded and encoded as documented.
 */
import { readFileSync } from 'node:fs';
import { tensor, tensorsEqual } from '@mlserve/core';
import { mnistHoldout } from '@mlserve/test-utils';
import { describe, expect, it } from 'vitest';
import { decodeInferResponse, encodeInferRequest, parseClassification } from '../src/index.js';

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

describe("tritonclient's requests", () => {
  it('binary input, no outputs named: the same bytes', () => {
    const enc = encodeInferRequest({ image: image() }, { binaryInputs: true, binaryOutputs: true });
    const golden = fixture('infer-binary.bin');
    expect(enc.headerLength).toBe(headerLengthOf('infer-binary.bin'));
    expect(Buffer.from(enc.body).equals(Buffer.from(golden))).toBe(true);
  });

  it('id, priority, timeout (µs), a named binary output: the same header and tensor bytes', () => {
    const enc = encodeInferRequest(
      { image: image() },
      {
        id: '42',
        parameters: { priority: 1, timeout: 2_000_000 },
        outputs: [{ name: 'logits', binary: true }],
        binaryInputs: true,
        binaryOutputs: true,
      },
    );
    const golden = fixture('infer-binary-output-params.bin');
    const n = headerLengthOf('infer-binary-output-params.bin');
    // The same members (the fixture's generator orders keys differently; JSON objects are unordered).
    expect(enc.headerLength).toBe(n);
    const mine = split(enc.body, enc.headerLength!);
    const theirs = split(golden, n);
    expect(mine.json).toEqual(theirs.json);
    expect(Buffer.from(mine.tail).equals(Buffer.from(theirs.tail))).toBe(true);
  });

  it('JSON data with classification: the same bytes', () => {
    const enc = encodeInferRequest(
      { image: image() },
      {
        outputs: [{ name: 'logits', binary: false, classification: 3 }],
        binaryInputs: false,
        binaryOutputs: false,
      },
    );
    expect(enc.headerLength).toBeUndefined();
    expect(utf8.decode(enc.body)).toBe(utf8.decode(fixture('infer-json-classification.json')));
  });

  it('BYTES with 4-byte length prefixes: the same bytes', () => {
    const x = tensor(
      'string',
      [new Uint8Array([0x61, 0x62]), new Uint8Array([0xff])] as Uint8Array[],
      [1, 2],
    );
    const enc = encodeInferRequest(
      { x },
      { outputs: [{ name: 'y', binary: true }], binaryInputs: true, binaryOutputs: true },
    );
    expect(enc.headerLength).toBe(headerLengthOf('infer-bytes.bin'));
    expect(Buffer.from(enc.body).equals(Buffer.from(fixture('infer-bytes.bin')))).toBe(true);
  });
});

describe("Triton's protocol documents", () => {
  it('binary request: inputs UINT32 [2,2] and BOOL [3] as 19 bytes after the JSON, output0 asked in binary', () => {
    const input0 = tensor('uint32', [1, 2, 3, 4], [2, 2]);
    const input1 = tensor('bool', [true, false, true]);
    const enc = encodeInferRequest(
      { input0, input1 },
      { outputs: [{ name: 'output0', binary: true }], binaryInputs: true, binaryOutputs: true },
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
    const res = decodeInferResponse(body, header.byteLength);
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
    const res = decodeInferResponse(body, header.byteLength);
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
    const rows = parseClassification(decodeInferResponse(body, undefined).outputs.output0!);
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
    expect(() => decodeInferResponse(body, header.byteLength)).toThrow(/past the end/);
    expect(() => decodeInferResponse(body, body.byteLength + 1)).toThrow(/does not fit/);
    const huge = new TextEncoder().encode(
      JSON.stringify({ outputs: [{ name: 'y', shape: [1e9, 1e9], datatype: 'FP32', data: [1] }] }),
    );
    try {
      decodeInferResponse(huge, undefined);
      expect.unreachable();
    } catch (err) {
      expect((err as { code?: string }).code).toBe('INTERNAL');
    }
  });
});
