import { fromFunction, isServeError, type Model, ModelRegistry, wrap } from '@mlserve/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { tensorDataToJson, tensorFromJson } from './codec.js';
import { createProtocol } from './protocol.js';

/** Builds a tensor through the general path only (nested one level: never taken by the fast path). */
function general(type: 'float32' | 'float64', data: number[]) {
  return tensorFromJson(type, [data.length], data.length, [data], 'x');
}

describe('tensorFromJson: flat float data', () => {
  it('gives the same tensor as the general path for any flat FP32/FP64 array', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('float32' as const, 'float64' as const),
        fc.array(fc.double({ noNaN: true, noDefaultInfinity: true }), { maxLength: 50 }),
        (type, data) => {
          const fast = tensorFromJson(type, [data.length], data.length, data, 'x');
          const slow = general(type, data);
          expect(fast.data).toBeInstanceOf(type === 'float32' ? Float32Array : Float64Array);
          expect(Array.from(fast.data as Float32Array)).toEqual(Array.from(slow.data as Float32Array));
        },
      ),
    );
  });

  it('still rejects a non-number element with its index', () => {
    let err: unknown;
    try {
      tensorFromJson('float32', [3], 3, [1, '2', 3], 'input "x"');
    } catch (e) {
      err = e;
    }
    expect(isServeError(err)).toBe(true);
    expect((err as Error).message).toBe('input "x": element 1 must be a number');
  });

  it('still rejects null, booleans and nested arrays of the wrong size', () => {
    for (const data of [
      [1, null],
      [true, 1],
      [[1, 2], 3],
    ]) {
      expect(() => tensorFromJson('float32', [2], 2, data, 'x')).toThrow(/element|elements/);
    }
  });

  it('still checks the count against the shape', () => {
    expect(() => tensorFromJson('float32', [3], 3, [1, 2], 'x')).toThrow(/needs 3 elements, "data" has 2/);
    expect(() => tensorFromJson('float32', [1], 1, [1, 2], 'x')).toThrow(/needs 1 elements, "data" has more/);
  });
});

describe('tensorDataToJson: float data', () => {
  it('is exactly JSON.stringify of the values (NaN and Infinity as null)', () => {
    fc.assert(
      fc.property(fc.array(fc.double(), { maxLength: 40 }), (values) => {
        const d = Float64Array.from(values);
        // JSON.stringify's own text (-0 as 0, NaN and Infinity as null).
        expect(tensorDataToJson({ type: 'float64', dims: [d.length], data: d })).toBe(
          JSON.stringify(Array.from(d)),
        );
      }),
    );
  });

  it('writes float32 values as JS numbers round-trip exactly', () => {
    const d = Float32Array.from([0.1, -2.5, 3e38, 1e-45]);
    expect(tensorDataToJson({ type: 'float32', dims: [4], data: d })).toBe(`[${Array.from(d).join(',')}]`);
    expect(tensorDataToJson({ type: 'float32', dims: [0], data: new Float32Array(0) })).toBe('[]');
  });
});

describe('metadata on the request path', () => {
  function counted(version: string): { model: Model; calls: () => number } {
    let calls = 0;
    const inner = fromFunction({
      name: 'm',
      version,
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
      infer: ({ x }) => ({ y: x! }),
    });
    const model = wrap(inner, {
      metadata: () => {
        calls++;
        return inner.metadata();
      },
    });
    return { model, calls: () => calls };
  }
  const body = Buffer.from(
    JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 2], data: [1, 2] }] }),
  );
  const infer = (protocol: ReturnType<typeof createProtocol>, extra: Buffer = body) =>
    protocol.handle({
      method: 'POST',
      path: '/v2/models/m/infer',
      headers: {},
      body: extra,
      signal: new AbortController().signal,
    });

  it('is read once per model version, still validates every request, and a new version is read afresh', async () => {
    const registry = new ModelRegistry();
    const v1 = counted('1');
    registry.add(v1.model);
    const protocol = createProtocol({ registry });
    for (let i = 0; i < 5; i++) expect((await infer(protocol)).status).toBe(200);
    expect(v1.calls()).toBe(1);

    const bad = Buffer.from(
      JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }),
    );
    const res = await infer(protocol, bad);
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body!.toString()).code).toBe('INVALID_ARGUMENT');

    const v2 = counted('2');
    registry.add(v2.model);
    await registry.remove('m', '1');
    expect((await infer(protocol)).status).toBe(200);
    expect(v2.calls()).toBe(1);
    expect(v1.calls()).toBe(1);
  });

  it('the metadata endpoint still asks the model each time', async () => {
    const registry = new ModelRegistry();
    const v1 = counted('1');
    registry.add(v1.model);
    const protocol = createProtocol({ registry });
    const get = () =>
      protocol.handle({
        method: 'GET',
        path: '/v2/models/m',
        headers: {},
        body: undefined,
        signal: new AbortController().signal,
      });
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(200);
    expect(v1.calls()).toBe(2);
  });
});
