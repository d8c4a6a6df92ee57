import { createHash } from 'node:crypto';
import { isServeError, type Tensor, tensor } from '@mlserve/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { cacheKey } from '../src/key.js';

const scope = { name: 'm', version: '1' };
const x = (values: number[], dims = [1, values.length]) => tensor('float32', values, dims);

describe('cacheKey', () => {
  it('is a 256-bit digest, stable for equal requests', () => {
    const a = cacheKey(scope, { x: x([1, 2, 3]) });
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(cacheKey(scope, { x: x([1, 2, 3]) })).toBe(a);
  });

  it('changes with each part of the request that can change the answer', () => {
    const base = cacheKey(scope, { x: x([1, 2, 3, 4]) });
    const variants = [
      cacheKey({ name: 'other', version: '1' }, { x: x([1, 2, 3, 4]) }),
      cacheKey({ name: 'm', version: '2' }, { x: x([1, 2, 3, 4]) }),
      cacheKey(scope, { y: x([1, 2, 3, 4]) }),
      cacheKey(scope, { x: x([1, 2, 3, 4], [2, 2]) }),
      cacheKey(scope, { x: x([1, 2, 3, 4], [4]) }),
      cacheKey(scope, { x: tensor('int32', [1, 2, 3, 4], [1, 4]) }),
      cacheKey(scope, { x: x([1, 2, 3, 5]) }),
      cacheKey(scope, { x: x([1, 2, 3, 4]) }, { outputs: ['a'] }),
      cacheKey(scope, { x: x([1, 2, 3, 4]) }, { parameters: { temperature: 0.5 } }),
      cacheKey(scope, { x: x([1, 2, 3, 4]) }, { parameters: { temperature: '0.5' } }),
    ];
    expect(new Set([base, ...variants]).size).toBe(variants.length + 1);
  });

  it('ignores what cannot change the answer: output order, duplicates, ignored parameters, input order', () => {
    const a = tensor('int64', [1n, 2n], [1, 2]);
    const b = tensor('float32', [1], [1, 1]);
    expect(cacheKey(scope, { a, b }, { outputs: ['p', 'q'] })).toBe(
      cacheKey(scope, { b, a }, { outputs: ['q', 'p', 'q'] }),
    );
    const ignore = new Set(['requestId']);
    expect(
      cacheKey({ ...scope, ignoreParameters: ignore }, { a }, { parameters: { requestId: 'r1', k: 1 } }),
    ).toBe(
      cacheKey({ ...scope, ignoreParameters: ignore }, { a }, { parameters: { k: 1, requestId: 'r2' } }),
    );
    expect(cacheKey({ ...scope, ignoreParameters: ignore }, { a }, { parameters: { requestId: 'r1' } })).toBe(
      cacheKey(scope, { a }),
    );
  });

  it('length-prefixes string elements, and tells text from bytes', () => {
    const k1 = cacheKey(scope, { s: tensor('string', ['ab', 'c'], [2]) });
    const k2 = cacheKey(scope, { s: tensor('string', ['a', 'bc'], [2]) });
    expect(k1).not.toBe(k2);
    const bytes: Tensor = { type: 'string', dims: [2], data: [Buffer.from('ab'), Buffer.from('c')] };
    expect(cacheKey(scope, { s: bytes })).not.toBe(k1);
  });

  it('hashes a view of a larger buffer by its own bytes only', () => {
    const big = new Float32Array([9, 1, 2, 3, 9]);
    const view: Tensor = { type: 'float32', dims: [3], data: big.subarray(1, 4) };
    expect(cacheKey(scope, { x: view })).toBe(cacheKey(scope, { x: x([1, 2, 3], [3]) }));
  });

  it('never gives two different same-shape inputs one key (property)', () => {
    fc.assert(
      fc.property(
        fc.float32Array({ minLength: 8, maxLength: 8 }),
        fc.float32Array({ minLength: 8, maxLength: 8 }),
        (p, q) => {
          const same = Buffer.from(p.buffer).equals(Buffer.from(q.buffer));
          const kp = cacheKey(scope, { x: { type: 'float32', dims: [2, 4], data: p } });
          const kq = cacheKey(scope, { x: { type: 'float32', dims: [2, 4], data: q } });
          return same === (kp === kq);
        },
      ),
      { numRuns: 300 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.string(), { maxLength: 4 }),
        fc.array(fc.string(), { maxLength: 4 }),
        (p, q) => {
          const same = JSON.stringify(p) === JSON.stringify(q);
          const kp = cacheKey(scope, { s: { type: 'string', dims: [p.length], data: p } });
          const kq = cacheKey(scope, { s: { type: 'string', dims: [q.length], data: q } });
          return same === (kp === kq);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('rejects malformed inputs with INVALID_ARGUMENT', () => {
    const bad: unknown[] = [
      null,
      [x([1])],
      { x: { type: 'float32', dims: [2], data: new Float32Array(3) } },
      { x: { type: 'float32', dims: [1], data: [1] } },
      { x: { type: 'nope', dims: [1], data: new Float32Array(1) } },
      { x: 5 },
    ];
    for (const inputs of bad) {
      let caught: unknown;
      try {
        cacheKey(scope, inputs as never);
      } catch (err) {
        caught = err;
      }
      expect(isServeError(caught) && caught.code === 'INVALID_ARGUMENT').toBe(true);
    }
  });
  it('small and large requests hash the same documented byte stream (keys stored in Redis stay valid)', () => {
    // The format spelled out independently: JSON header, a zero byte, then each input's raw bytes.
    const reference = (name: string, data: Float32Array, dims: number[]) => {
      const header = JSON.stringify([
        'mlserve-cache/1',
        'm',
        '1',
        null,
        '',
        [[name, 'float32', dims, data.byteLength]],
      ]);
      const h = createHash('sha256');
      h.update(header);
      h.update(Buffer.from([0]));
      h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      return h.digest('base64url');
    };
    for (const n of [1, 16, 784, 1023, 1024, 5000]) {
      const data = Float32Array.from({ length: n }, (_, i) => (i * 7) % 13);
      expect(cacheKey(scope, { x: { type: 'float32', dims: [1, n], data } })).toBe(
        reference('x', data, [1, n]),
      );
      // A view into a larger buffer hashes only its own bytes.
      const big = new Float32Array(n + 8);
      big.set(data, 4);
      const view = big.subarray(4, 4 + n);
      expect(cacheKey(scope, { x: { type: 'float32', dims: [1, n], data: view } })).toBe(
        reference('x', data, [1, n]),
      );
    }
  });
});
