import { DATA_TYPES, type DataType, isServeError, type Tensor, tensor, tensorsEqual } from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import { decodeTensors, encodeTensors } from '../src/codec.js';

function sample(type: DataType): Tensor {
  switch (type) {
    case 'string':
      return tensor('string', ['', 'héllo', 'a\u0000b', '🙂'], [2, 2]);
    case 'int64':
      return tensor('int64', [-(2n ** 63n), 0n, 2n ** 63n - 1n], [3]);
    case 'uint64':
      return tensor('uint64', [0n, 2n ** 64n - 1n, 42n], [3, 1]);
    case 'bool':
      return tensor('bool', [true, false, true, true], [2, 2]);
    case 'float16':
      return tensor('float16', [0.5, -2, 65504], [1, 3]);
    case 'float32':
      return { type, dims: [2, 3], data: new Float32Array([0, -0, Number.NaN, Infinity, -1.5, 3.25]) };
    case 'float64':
      return { type, dims: [3], data: new Float64Array([Math.PI, -Number.MAX_VALUE, Number.MIN_VALUE]) };
    case 'int8':
      return tensor('int8', [-128, 0, 127], [3]);
    case 'uint8':
      return tensor('uint8', [0, 128, 255], [3]);
    case 'int16':
      return tensor('int16', [-32768, 1, 32767], [3]);
    case 'uint16':
      return tensor('uint16', [0, 65535], [2]);
    case 'int32':
      return tensor('int32', [-2147483648, 7, 2147483647], [3]);
    case 'uint32':
      return tensor('uint32', [0, 4294967295], [2]);
  }
}

describe('binary codec', () => {
  it.each(DATA_TYPES.map((t) => [t]))('round-trips %s exactly', (type) => {
    const t = sample(type);
    const back = decodeTensors(encodeTensors({ out: t }));
    expect(Object.keys(back)).toEqual(['out']);
    expect(back.out!.type).toBe(type);
    expect(back.out!.dims).toEqual(t.dims);
    expect(tensorsEqual(back.out!, t)).toBe(true);
    if (type !== 'string') {
      // Fresh arrays, bit for bit (so -0 and NaN payloads survive).
      const a = t.data as Uint8Array;
      const b = back.out!.data as Uint8Array;
      expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength)).toEqual(
        Buffer.from(a.buffer, a.byteOffset, a.byteLength),
      );
      expect(b.buffer).not.toBe(a.buffer);
    }
  });

  it('keeps raw bytes elements as bytes, text as text', () => {
    const t: Tensor = { type: 'string', dims: [2], data: [new Uint8Array([0, 255, 1]), new Uint8Array(0)] };
    const back = decodeTensors(encodeTensors({ img: t })).img!;
    expect(back.data[0]).toBeInstanceOf(Uint8Array);
    expect([...(back.data[0] as Uint8Array)]).toEqual([0, 255, 1]);
    expect(tensorsEqual(back, t)).toBe(true);
  });

  it('round-trips several tensors, scalars and empty tensors', () => {
    const outs = {
      logits: tensor('float32', [1, 2, 3, 4], [2, 2]),
      scalar: { type: 'int32', dims: [], data: new Int32Array([5]) } as Tensor,
      empty: { type: 'float32', dims: [0, 10], data: new Float32Array(0) } as Tensor,
      'naïve name': tensor('string', ['x'], [1]),
    };
    const back = decodeTensors(encodeTensors(outs));
    expect(Object.keys(back).sort()).toEqual(Object.keys(outs).sort());
    for (const [name, t] of Object.entries(outs)) expect(tensorsEqual(back[name]!, t)).toBe(true);
  });

  it('is compact: a small header plus the raw bytes, not JSON numbers', () => {
    const logits = {
      type: 'float32',
      dims: [1, 1000],
      data: new Float32Array(1000).fill(0.123456789),
    } as Tensor;
    const bytes = encodeTensors({ output: logits });
    expect(bytes.byteLength).toBe(8 + 2 + 6 + 2 + 2 * 8 + 8 + 4000);
    expect(bytes.subarray(0, 4).toString('latin1')).toBe('MLC\u0001');
  });

  it('encodes a view of a larger buffer by its own bytes', () => {
    const big = new Float32Array([9, 1, 2, 9]);
    const back = decodeTensors(
      encodeTensors({ v: { type: 'float32', dims: [2], data: big.subarray(1, 3) } }),
    );
    expect([...(back.v!.data as Float32Array)]).toEqual([1, 2]);
  });

  it('rejects corrupt bytes with a ServeError, never a crash', () => {
    const good = encodeTensors({ a: tensor('float32', [1, 2, 3], [3]), s: tensor('string', ['hey'], [1]) });
    const bad: Uint8Array[] = [
      new Uint8Array(0),
      Buffer.from('JSON{"a":1}'),
      Buffer.concat([Buffer.from('MLC\u0002'), good.subarray(4)]),
      good.subarray(0, good.byteLength - 1),
      Buffer.concat([good, Buffer.from([0])]),
    ];
    for (let cut = 5; cut < good.byteLength; cut += 3) bad.push(good.subarray(0, cut));
    const wrongType = Buffer.from(good);
    wrongType[8 + 2 + 1] = 200;
    bad.push(wrongType);
    for (const b of bad) {
      let caught: unknown;
      try {
        decodeTensors(b);
      } catch (err) {
        caught = err;
      }
      expect(isServeError(caught)).toBe(true);
    }
  });
});

describe('binary codec (property)', () => {
  it('round-trips arbitrary float32, int64 and string tensors', async () => {
    const fc = (await import('fast-check')).default;
    fc.assert(
      fc.property(
        fc.float32Array({ maxLength: 64 }),
        fc.array(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), { maxLength: 16 }),
        fc.array(fc.string({ unit: 'grapheme' }), { maxLength: 8 }),
        (floats, ints, strings) => {
          const outs = {
            f: { type: 'float32', dims: [floats.length], data: floats } as Tensor,
            i: { type: 'int64', dims: [1, ints.length], data: BigInt64Array.from(ints) } as Tensor,
            s: { type: 'string', dims: [strings.length], data: strings } as Tensor,
          };
          const back = decodeTensors(encodeTensors(outs));
          return Object.entries(outs).every(([k, t]) => tensorsEqual(back[k]!, t));
        },
      ),
      { numRuns: 200 },
    );
  });
});
