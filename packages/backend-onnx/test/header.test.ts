/**
 * readOnnxSignature reads inputs and outputs from an ONNX file without onnxruntime: it must give
 * exactly what a real onnxruntime-node session's metadata gives, for every model the tests ship.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadOnnxModel, readOnnxSignature } from '@mlserve/backend-onnx';
import { isServeError } from '@mlserve/core';
import { modelPath, type TestModel } from '@mlserve/test-utils';
import { describe, expect, it } from 'vitest';

const fixture = (name: string) => join(import.meta.dirname, 'fixtures', name);
const shipped: TestModel[] = [
  'mnist-cnn.onnx',
  'mlp.onnx',
  'tiny-text.onnx',
  'mobilenetv2.onnx',
  'gru-cell.onnx',
  'mnist-noisy.onnx',
  'mnist-slow.onnx',
];
const fixtures = [
  'identity-all-types.onnx',
  'cast-fan-out.onnx',
  'mixed.onnx',
  'add-dynamic.onnx',
  'static-shape.onnx',
  'initializer-input.onnx',
];

describe('readOnnxSignature', () => {
  it.each([...shipped.map((m) => modelPath(m)), ...fixtures.map(fixture)])(
    'equals the session metadata of %s',
    async (file) => {
      const header = await readOnnxSignature(file);
      const model = await loadOnnxModel(file, { name: 'm', intraOpNumThreads: 1 });
      try {
        const meta = model.metadata();
        expect(header.inputs).toEqual(meta.inputs);
        expect(header.outputs).toEqual(meta.outputs);
        expect(header.skippedOutputs).toEqual(meta.extra?.skippedOutputs ?? []);
        expect(header.unsupportedInputs).toEqual([]);
        // The same from the file's bytes.
        expect(await readOnnxSignature(new Uint8Array(await readFile(file)))).toEqual(header);
      } finally {
        await model.dispose();
      }
    },
  );

  it('leaves out inputs that are initializers, and keeps symbolic and unnamed dynamic dims', async () => {
    const s = await readOnnxSignature(fixture('initializer-input.onnx'));
    expect(s.inputs.map((i) => i.name)).toEqual(['x']);
    const mixed = await readOnnxSignature(fixture('mixed.onnx'));
    expect(mixed.inputs.find((i) => i.name === 'tokens')).toEqual({
      name: 'tokens',
      type: 'int64',
      dims: [-1, -1],
      dimNames: ['batch', null],
      batched: true,
    });
    expect(mixed.skippedOutputs).toEqual([
      { name: 'pair', reason: 'not a tensor (a sequence, map or optional)' },
    ]);
  });

  it('NOT_FOUND for a missing file, INVALID_ARGUMENT for one that is not a model', async () => {
    const missing = await readOnnxSignature('/nonexistent/model.onnx').catch((e: unknown) => e);
    expect(isServeError(missing) && missing.code).toBe('NOT_FOUND');
    for (const bytes of [new TextEncoder().encode('{"not": "onnx"}'), new Uint8Array([0x3a, 0xff])]) {
      const bad = await readOnnxSignature(bytes).catch((e: unknown) => e);
      expect(isServeError(bad) && bad.code).toBe('INVALID_ARGUMENT');
    }
  });
});
