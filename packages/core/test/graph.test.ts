import { describe, expect, it } from 'vitest';
import { fromFunction, graph, type Model, tensor } from '../src/index.js';
import { scaleModel } from './helpers.js';

/** u8 pixels [-1, 4] -> float32 [-1, 4] in [0, 1]. */
const preprocess = fromFunction({
  name: 'pre',
  inputs: [{ name: 'raw', type: 'uint8', dims: [-1, 4] }],
  outputs: [{ name: 'pixels', type: 'float32', dims: [-1, 4] }],
  infer: ({ raw }) => ({
    pixels: {
      type: 'float32',
      dims: [...raw!.dims],
      data: Float32Array.from(raw!.data as Uint8Array, (v) => v / 255),
    },
  }),
});

/** Picks the argmax of each row. */
const postprocess = fromFunction({
  name: 'post',
  inputs: [{ name: 'scores', type: 'float32', dims: [-1, 4] }],
  outputs: [{ name: 'label', type: 'int64', dims: [-1] }],
  infer: ({ scores }) => {
    const rows = scores!.dims[0]!;
    const d = scores!.data as Float32Array;
    const out = new BigInt64Array(rows);
    for (let r = 0; r < rows; r++) {
      let best = 0;
      for (let c = 1; c < 4; c++) if (d[r * 4 + c]! > d[r * 4 + best]!) best = c;
      out[r] = BigInt(best);
    }
    return { label: { type: 'int64', dims: [rows], data: out } };
  },
});

describe('fromFunction()', () => {
  it('declares its signature in metadata and runs the function', async () => {
    const m = scaleModel({ name: 'f' });
    const meta = m.metadata();
    expect(meta).toMatchObject({ name: 'f', version: '1', platform: 'mlserve_function', concurrency: 1 });
    expect(meta.maxBatchSize).toBeGreaterThan(1000);
    const out = await m.infer({ x: tensor('float32', [1, 2, 3, 4], [1, 4]) });
    expect([...(out.y!.data as Float32Array)]).toEqual([2, 4, 6, 8]);
  });

  it('does not run aborted or expired requests; fails after dispose', async () => {
    const m = scaleModel();
    const x = { x: tensor('float32', [1, 2, 3, 4], [1, 4]) };
    await expect(m.infer(x, { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'CANCELLED' });
    await expect(m.infer(x, { deadline: Date.now() - 5 })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    expect(m.calls).toHaveLength(0);
    await m.dispose();
    await m.dispose();
    await expect(m.infer(x)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('metadata cannot be mutated by a caller', () => {
    const m = scaleModel();
    m.metadata().inputs[0]!.dims[1] = 99;
    expect(m.metadata().inputs[0]!.dims[1]).toBe(4);
  });

  it('validates its options', () => {
    expect(() => fromFunction({ name: '', inputs: [], outputs: [], infer: () => ({}) })).toThrow(
      'options.name must be a non-empty string',
    );
  });
});

describe('graph()', () => {
  it('chains pre-process -> model -> post-process with named tensor mappings', async () => {
    const g = graph({
      name: 'classify',
      steps: [
        { model: preprocess },
        {
          model: scaleModel({ name: 'model', factor: 3 }),
          inputs: { x: 'pixels' },
          outputs: { y: 'scores', sum: 'total' },
        },
        { model: postprocess, inputs: { scores: 'scores' } },
      ],
      outputs: ['label', 'total'],
    });
    const meta = g.metadata();
    expect(meta.inputs.map((i) => i.name)).toEqual(['raw']);
    expect(meta.inputs[0]).toMatchObject({ type: 'uint8', dims: [-1, 4] });
    expect(meta.outputs.map((o) => `${o.name}:${o.type}`)).toEqual(['label:int64', 'total:float32']);
    const out = await g.infer({ raw: tensor('uint8', [0, 255, 10, 20, 200, 0, 0, 0], [2, 4]) });
    expect([...(out.label!.data as BigInt64Array)]).toEqual([1n, 0n]);
    expect(out.total!.dims).toEqual([2]);
    const onlyLabel = await g.infer(
      { raw: tensor('uint8', [0, 255, 10, 20], [1, 4]) },
      { outputs: ['label'] },
    );
    expect(Object.keys(onlyLabel)).toEqual(['label']);
  });

  it('runs independent steps of a fan-out concurrently', async () => {
    let running = 0;
    let peak = 0;
    const branch = (name: string): Model => {
      const base = scaleModel({ name, delayMs: 30 });
      return {
        ...base,
        infer: async (i, o) => {
          peak = Math.max(peak, ++running);
          try {
            return await base.infer(i, o);
          } finally {
            running--;
          }
        },
      };
    };
    const g = graph({
      name: 'fanout',
      steps: [
        { model: branch('a'), outputs: { y: 'a_y', sum: 'a_sum' } },
        { model: branch('b'), outputs: { y: 'b_y', sum: 'b_sum' } },
      ],
      outputs: ['a_sum', 'b_sum'],
    });
    expect(g.metadata().inputs.map((i) => i.name)).toEqual(['x']);
    const out = await g.infer({ x: tensor('float32', [1, 1, 1, 1], [1, 4]) });
    expect(out.a_sum!.data).toEqual(new Float32Array([4]));
    expect(peak).toBe(2);
  });

  it('passes signal and deadline to the steps, and fails fast when a step fails', async () => {
    const seen: (AbortSignal | undefined)[] = [];
    const base = scaleModel({ fail: (d) => d[0] === 13 });
    const spy: Model = { ...base, infer: (i, o) => (seen.push(o?.signal), base.infer(i, o)) };
    const g = graph({ name: 'g', steps: [{ model: spy }] });
    await g.infer({ x: tensor('float32', [1, 2, 3, 4], [1, 4]) }, { deadline: Date.now() + 1000 });
    expect(seen[0]).toBeInstanceOf(AbortSignal);
    await expect(g.infer({ x: tensor('float32', [13, 0, 0, 0], [1, 4]) })).rejects.toThrow(
      'model failed on purpose',
    );
    await expect(g.infer({})).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      message: 'missing input "x"',
    });
    await expect(
      g.infer({ x: tensor('float32', [1, 2, 3, 4], [1, 4]) }, { signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('refuses cycles, doubly produced tensors and unknown mappings at construction', () => {
    const a = scaleModel({ name: 'a' });
    const b = scaleModel({ name: 'b' });
    expect(() =>
      graph({
        name: 'cyc',
        steps: [
          { model: a, inputs: { x: 'q' }, outputs: { y: 'p', sum: 's1' } },
          { model: b, inputs: { x: 'p' }, outputs: { y: 'q', sum: 's2' } },
        ],
      }),
    ).toThrow(/cycle/);
    expect(() => graph({ name: 'dup', steps: [{ model: a }, { model: b }] })).toThrow(
      'tensor "y" is produced by two steps',
    );
    expect(() => graph({ name: 'bad', steps: [{ model: a, inputs: { nope: 'x' } }] })).toThrow(
      'has no input "nope"',
    );
    expect(() => graph({ name: 'out', steps: [{ model: a }], outputs: ['zzz'] })).toThrow(
      'output "zzz" is produced by no step',
    );
  });

  it('disposes its steps once', async () => {
    let disposed = 0;
    const base = scaleModel();
    const g = graph({ name: 'g', steps: [{ model: { ...base, dispose: async () => void disposed++ } }] });
    await Promise.all([g.dispose(), g.dispose()]);
    expect(disposed).toBe(1);
    expect(g.isReady?.()).toBe(false);
  });
});
