import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import type { OrtModule, OrtTensor } from '../src/ort.js';
import { fromOrt, toFeeds } from '../src/tensors.js';

describe('fromOrt', () => {
  it('normalises float16 held in another array class (a Float16Array where the global exists) to Uint16Array bits', () => {
    const bits = new Uint16Array([0x3c00, 0xc000, 0x7e00]);
    // Stand-in for a Float16Array: a typed array of 2-byte elements that is not a Uint16Array.
    const other = new Int16Array(bits.buffer.slice(0));
    const t = fromOrt({ type: 'float16', dims: [3], data: other } as unknown as OrtTensor);
    expect(t.data).toBeInstanceOf(Uint16Array);
    expect(Array.from(t.data as Uint16Array)).toEqual([0x3c00, 0xc000, 0x7e00]);
  });

  it('copies data that is a view into a larger buffer, so the caller owns exactly its bytes', () => {
    const big = new Float32Array(1024);
    big.set([1, 2, 3], 10);
    const view = big.subarray(10, 13);
    const t = fromOrt({ type: 'float32', dims: [3], data: view } as unknown as OrtTensor);
    expect(t.data).not.toBe(view);
    expect((t.data as Float32Array).buffer.byteLength).toBe(12);
    expect(Array.from(t.data as Float32Array)).toEqual([1, 2, 3]);
  });

  it('keeps a whole-buffer array as it is, and copies dims and strings', () => {
    const data = new Float32Array([1, 2]);
    const dims = [1, 2];
    const t = fromOrt({ type: 'float32', dims, data } as unknown as OrtTensor);
    expect(t.data).toBe(data);
    expect(t.dims).not.toBe(dims);
    const strings = ['a', 'b'];
    const s = fromOrt({ type: 'string', dims: [2], data: strings } as unknown as OrtTensor);
    expect(s.data).toEqual(strings);
    expect(s.data).not.toBe(strings);
  });
});

describe('toFeeds', () => {
  const runtime = ort as unknown as OrtModule;

  it('hands numeric data to onnxruntime without a copy and passes ORT tensors through', () => {
    const data = new Float32Array([1, 2, 3, 4]);
    const already = new ort.Tensor('int32', new Int32Array([1]), [1]);
    const feeds = toFeeds(runtime, { x: { type: 'float32', dims: [2, 2], data }, y: already }, ['x', 'y']);
    expect(feeds.x!.data).toBe(data);
    expect(feeds.x!.dims).toEqual([2, 2]);
    expect(feeds.y).toBe(already);
  });

  it('rejects string elements that are neither strings nor bytes', () => {
    expect(() =>
      toFeeds(runtime, { s: { type: 'string', dims: [2], data: ['a', 5] as never } }, ['s']),
    ).toThrow(/input "s": element 1 is not a string or a Uint8Array/);
  });
});
