import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  compileValidator,
  fromFunction,
  isValidated,
  type ModelMetadata,
  markValidated,
  pipeline,
  type Tensors,
  validateRequest,
  validation,
} from '../src/index.js';

const meta: ModelMetadata = {
  name: 'm',
  version: '1',
  platform: 'test',
  inputs: [
    { name: 'image', type: 'float32', dims: [-1, 2, 2], batched: true },
    { name: 'mask', type: 'int32', dims: [-1, 2], batched: true },
  ],
  outputs: [
    { name: 'a', type: 'float32', dims: [-1], batched: true },
    { name: 'b', type: 'float32', dims: [-1], batched: true },
  ],
  maxBatchSize: 64,
  concurrency: 1,
};

/** Plausible requests: mostly right, often wrong in one way (name, type, dims, length, outputs). */
const requestArb = fc
  .record({
    rows: fc.integer({ min: 0, max: 4 }),
    rows2: fc.integer({ min: 0, max: 4 }),
    imageType: fc.constantFrom('float32', 'float32', 'float64', 'int32'),
    imageDims: fc.constantFrom([2, 2], [2, 2], [2, 3], [2]),
    dropMask: fc.boolean(),
    extra: fc.boolean(),
    shortData: fc.boolean(),
    outputs: fc.option(fc.array(fc.constantFrom('a', 'b', 'c'), { maxLength: 3 })),
  })
  .map((r) => {
    const count = r.rows * r.imageDims.reduce((x, y) => x * y, 1) - (r.shortData && r.rows > 0 ? 1 : 0);
    const data =
      r.imageType === 'float32'
        ? new Float32Array(count)
        : r.imageType === 'float64'
          ? new Float64Array(count)
          : new Int32Array(count);
    const inputs = Object.create(null) as Tensors;
    inputs.image = { type: r.imageType, dims: [r.rows, ...r.imageDims], data } as never;
    if (!r.dropMask) inputs.mask = { type: 'int32', dims: [r.rows2, 2], data: new Int32Array(r.rows2 * 2) };
    if (r.extra) inputs.other = { type: 'int32', dims: [1], data: new Int32Array(1) };
    return { inputs, options: r.outputs === null ? undefined : { outputs: r.outputs } };
  });

function outcome(run: () => void): string {
  try {
    run();
    return 'ok';
  } catch (err) {
    return `${(err as { code?: string }).code}: ${(err as Error).message}`;
  }
}

describe('compileValidator', () => {
  it('accepts and refuses exactly what validateRequest does, with the same message', () => {
    fc.assert(
      fc.property(
        requestArb,
        fc.option(fc.integer({ min: 0, max: 4 })),
        fc.boolean(),
        (req, limit, strict) => {
          const opts = { rejectUnknownInputs: strict, ...(limit === null ? {} : { maxBatchSize: limit }) };
          const expected = outcome(() => validateRequest(meta, req.inputs, req.options, opts));
          const check = compileValidator(meta, opts);
          expect(outcome(() => check(req.inputs, req.options))).toBe(expected);
          // Marked exactly when it passed, and a second run agrees.
          expect(isValidated(req.inputs, meta, req.options)).toBe(expected === 'ok');
          expect(outcome(() => check(req.inputs, req.options))).toBe(expected);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('trusts a marked request, but still applies its own batch limit', () => {
    const inputs: Tensors = {
      image: { type: 'float32', dims: [3, 2, 2], data: new Float32Array(12) },
      mask: { type: 'int32', dims: [3, 2], data: new Int32Array(6) },
    };
    compileValidator(meta)(inputs);
    expect(isValidated(inputs, meta)).toBe(true);
    expect(() => compileValidator(meta, { maxBatchSize: 2 })(inputs)).toThrow(
      /batch size 3 is over the limit of 2/,
    );
  });
});

describe('markValidated / isValidated', () => {
  const inputs: Tensors = { x: { type: 'float32', dims: [1], data: new Float32Array(1) } };

  it('holds for the same record, model and outputs array only', () => {
    const outputs = ['a'];
    markValidated(inputs, { name: 'm', version: '1' }, { outputs });
    expect(isValidated(inputs, { name: 'm', version: '1' }, { outputs })).toBe(true);
    expect(isValidated(inputs, { name: 'm', version: '2' }, { outputs })).toBe(false);
    expect(isValidated(inputs, { name: 'n', version: '1' }, { outputs })).toBe(false);
    expect(isValidated(inputs, { name: 'm', version: '1' }, { outputs: ['a'] })).toBe(false);
    expect(isValidated(inputs, { name: 'm', version: '1' })).toBe(false);
    expect(isValidated({ ...inputs }, { name: 'm', version: '1' }, { outputs })).toBe(false);
  });

  it('lets validation() skip a request the adapter validated, and still refuse bad ones', async () => {
    let calls = 0;
    const model = fromFunction({
      name: 'm',
      version: '1',
      inputs: meta.inputs,
      outputs: meta.outputs,
      infer: () => {
        calls++;
        return { a: { type: 'float32', dims: [0], data: new Float32Array(0) } };
      },
    });
    const served = pipeline(model, validation());
    const good: Tensors = {
      image: { type: 'float32', dims: [0, 2, 2], data: new Float32Array(0) },
      mask: { type: 'int32', dims: [0, 2], data: new Int32Array(0) },
    };
    await served.infer(good);
    expect(isValidated(good, meta)).toBe(true);
    await expect(served.infer({ image: good.image! })).rejects.toThrow(/missing input "mask"/);
    expect(calls).toBe(1);
  });
});
