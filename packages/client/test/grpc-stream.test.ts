import { isServeError, tensor, tensorsEqual } from '@mlserve/core';
import { mnistHoldout } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGrpcClient, decodeGrpcResponse, type GrpcClient } from '../src/grpc.js';
import { type Servers, startServers } from './servers.js';

let s: Servers;
let c: GrpcClient;
beforeAll(async () => {
  s = await startServers();
  c = createGrpcClient({ url: s.grpcAddress });
});
afterAll(async () => {
  await c?.close();
  await s?.close();
});

const digit = (i: number) => tensor('float32', mnistHoldout().image(i), [1, 1, 28, 28]);

describe('ModelStreamInfer', () => {
  it('answers many requests on one stream, each matching its unary answer', async () => {
    const stream = c.stream();
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, i) => stream.infer('mnist', { image: digit(i % 8) })),
    );
    await stream.end();
    for (let i = 0; i < 24; i++) {
      const unary = await c.infer('mnist', { image: digit(i % 8) });
      expect(tensorsEqual(answers[i]!.logits!, unary.logits!)).toBe(true);
    }
  });

  it("rejects only the failed request, with the server's code", async () => {
    const stream = c.stream();
    const [good, bad, alsoGood] = await Promise.allSettled([
      stream.infer('mnist', { image: digit(0) }),
      stream.infer('missing', { image: digit(0) }),
      stream.infer('id_bytes', { x: tensor('string', ['a', 'b'], [1, 2]) }, { id: 'mine' }),
    ]);
    await stream.end();
    expect(good.status).toBe('fulfilled');
    expect(alsoGood.status).toBe('fulfilled');
    expect(bad.status).toBe('rejected');
    const e = (bad as PromiseRejectedResult).reason;
    expect(isServeError(e) && e.code).toBe('NOT_FOUND');
    expect(String(e.message)).toContain('missing');
  });

  it('cancels pending requests when the stream is aborted', async () => {
    const controller = new AbortController();
    const stream = c.stream({ signal: controller.signal });
    const before = s.slowCalls.length;
    const p = stream.infer('slow', { x: tensor('float32', [1], [1, 1]) });
    while (s.slowCalls.length === before) await new Promise((r) => setTimeout(r, 5));
    controller.abort();
    const e = await p.catch((err: unknown) => err);
    expect(isServeError(e) && e.code).toBe('CANCELLED');
    await s.slowCalls[before]!.aborted;
  });
});

describe('responses', () => {
  it('reads typed contents as well as raw (servers that answer in contents)', () => {
    const out = decodeGrpcResponse({
      model_name: 'm',
      model_version: '1',
      id: '',
      outputs: [
        {
          name: 'a',
          datatype: 'INT64',
          shape: ['2'],
          contents: { int64_contents: ['9007199254740993', '-1'] },
        },
        {
          name: 's',
          datatype: 'BYTES',
          shape: ['1', '1'],
          contents: { bytes_contents: [Buffer.from('hi')] },
        },
        { name: 'f', datatype: 'FP32', shape: ['2'], contents: { fp32_contents: [0.5, 2] } },
      ],
      raw_output_contents: [],
    });
    expect(Array.from(out.a!.data as BigInt64Array)).toEqual([9007199254740993n, -1n]);
    expect(new TextDecoder().decode((out.s!.data as Uint8Array[])[0])).toBe('hi');
    expect(out.s!.dims).toEqual([1, 1]);
    expect(Array.from(out.f!.data as Float32Array)).toEqual([0.5, 2]);
  });

  it('refuses contents that do not match the shape, as INTERNAL', () => {
    let err: unknown;
    try {
      decodeGrpcResponse({
        model_name: 'm',
        model_version: '1',
        id: '',
        outputs: [{ name: 'f', datatype: 'FP32', shape: ['3'], contents: { fp32_contents: [1] } }],
        raw_output_contents: [],
      });
    } catch (e) {
      err = e;
    }
    expect(isServeError(err) && err.code).toBe('INTERNAL');
  });
});
