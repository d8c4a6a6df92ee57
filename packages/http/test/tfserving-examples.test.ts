import { fromFunction, ModelRegistry } from '@mlserve/core';
import { mnistHoldout } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { argmax, loadMnist, SERVERS, type TestServer } from './helpers.js';

const DIGITS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];

function buildRegistry(): ModelRegistry {
  const registry = new ModelRegistry();
  // Regression: value = a + 2b + 3c, as [batch, 1].
  registry.add(
    fromFunction({
      name: 'price',
      inputs: [
        { name: 'rooms', type: 'float32', dims: [-1, 1] },
        { name: 'area', type: 'float32', dims: [-1, 2] },
      ],
      outputs: [{ name: 'value', type: 'float32', dims: [-1, 1] }],
      infer: ({ rooms, area }) => {
        const n = rooms!.dims[0]!;
        const r = rooms!.data as Float32Array;
        const a = area!.data as Float32Array;
        const out = new Float32Array(n);
        for (let i = 0; i < n; i++) out[i] = r[i]! + 2 * a[2 * i]! + 3 * a[2 * i + 1]!;
        return { value: { type: 'float32', dims: [n, 1], data: out } };
      },
    }),
  );
  // Regression with a [batch] output among others: the one named "prediction" answers.
  registry.add(
    fromFunction({
      name: 'twice',
      inputs: [{ name: 'x', type: 'float64', dims: [-1] }],
      outputs: [
        { name: 'debug', type: 'int32', dims: [-1] },
        { name: 'prediction', type: 'float64', dims: [-1] },
      ],
      infer: ({ x }) => ({
        debug: { type: 'int32', dims: [...x!.dims], data: new Int32Array(x!.dims[0]!) },
        prediction: {
          type: 'float64',
          dims: [...x!.dims],
          data: (x!.data as Float64Array).map((v) => 2 * v),
        },
      }),
    }),
  );
  // Fits neither: a string output.
  registry.add(
    fromFunction({
      name: 'texty',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
      outputs: [{ name: 'y', type: 'string', dims: [-1] }],
      infer: ({ x }) => ({ y: { type: 'string', dims: [x!.dims[0]!], data: ['a'] } }),
    }),
  );
  return registry;
}

describe.each(SERVERS)('TF Serving :classify and :regress (%s)', (_kind, start) => {
  let registry: ModelRegistry;
  let server: TestServer;
  const holdout = mnistHoldout();
  const image = (i: number) => {
    const flat = Array.from(holdout.image(i));
    return [Array.from({ length: 28 }, (_, r) => flat.slice(r * 28, r * 28 + 28))];
  };
  const post = (path: string, body: unknown) =>
    fetch(`${server.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  beforeAll(async () => {
    registry = buildRegistry();
    registry.add(await loadMnist());
    server = await start({ registry, labels: { mnist: DIGITS } });
  });
  afterAll(async () => {
    await server.close();
    await registry.close();
  });

  it(':classify answers [label, score] per class per example, the scores :predict gives', async () => {
    const res = await post('/v1/models/mnist:classify', {
      signature_name: 'serving_default',
      examples: [{ image: image(0) }, { image: image(1) }],
    });
    expect(res.status).toBe(200);
    const { result } = (await res.json()) as { result: [string, number][][] };
    expect(result).toHaveLength(2);
    const predict = (await (
      await post('/v1/models/mnist:predict', { instances: [image(0), image(1)] })
    ).json()) as {
      predictions: number[][];
    };
    for (const [k, row] of result.entries()) {
      expect(row.map(([label]) => label)).toEqual(DIGITS);
      const scores = row.map(([, s]) => s);
      for (const [j, s] of scores.entries()) expect(s).toBeCloseTo(predict.predictions[k]![j]!, 4);
      expect(row[argmax(scores)]![0]).toBe(DIGITS[holdout.labels[k]!]);
    }
  });

  it(':regress answers one value per example; context features are shared; scalars fill [batch, 1]', async () => {
    const res = await post('/v1/models/price/versions/1:regress', {
      context: { area: [1, 1] },
      examples: [{ rooms: 1 }, { rooms: 2, area: [10, 0] }],
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ result: [6, 22] });
    const named = await post('/v1/models/twice:regress', { examples: [{ x: 1.5 }, { x: -2 }] });
    expect(await named.json()).toEqual({ result: [3, -4] });
  });

  it('refuses models whose outputs do not fit, and bad bodies, with 400', async () => {
    const wrong = await post('/v1/models/texty:classify', { examples: [{ x: [1, 2] }] });
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { error: string }).error).toMatch(/does not fit :classify.*:predict/);
    const reg = await post('/v1/models/mnist:regress', { examples: [{ image: image(0) }] });
    expect(reg.status).toBe(400);
    expect(((await reg.json()) as { error: string }).error).toMatch(/does not fit :regress/);
    expect((await post('/v1/models/price:regress', { examples: [] })).status).toBe(400);
    expect((await post('/v1/models/price:regress', { examples: [{ rooms: 1 }] })).status).toBe(400);
    expect((await post('/v1/models/price:regress', { examples: [1] })).status).toBe(400);
    expect(
      (await post('/v1/models/price:regress', { examples: [{ rooms: 1, area: [1, 1] }], context: 3 })).status,
    ).toBe(400);
    expect((await post('/v1/models/nope:classify', { examples: [{ x: 1 }] })).status).toBe(404);
    expect((await fetch(`${server.url}/v1/models/price:regress`)).status).toBe(405);
  });
});
