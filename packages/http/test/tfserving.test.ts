import { isServeError } from '@mlserve/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodePredict } from '../src/tfserving.js';

/** Decoding must either succeed or throw a ServeError INVALID_ARGUMENT: never anything else. */
function decodeOrInvalid(run: () => unknown): void {
  try {
    run();
  } catch (err) {
    expect(isServeError(err)).toBe(true);
    expect((err as { code: string }).code).toBe('INVALID_ARGUMENT');
  }
}

describe('decodePredict under arbitrary input', () => {
  it('never throws anything but INVALID_ARGUMENT', () => {
    const meta = {
      name: 'm',
      version: '1',
      platform: 'x',
      inputs: [
        { name: 'a', type: 'float32' as const, dims: [-1, 2], batched: true },
        { name: 'b', type: 'string' as const, dims: [-1], batched: true },
      ],
      outputs: [],
      maxBatchSize: 8,
      concurrency: 1,
    };
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (instances, inputs) => {
        decodeOrInvalid(() => decodePredict({ instances }, meta));
        decodeOrInvalid(() => decodePredict({ inputs }, meta));
      }),
      { numRuns: 500 },
    );
  });
});
