import { fromFunction, type Model, ModelRegistry, wrap } from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import { createProtocol } from '../src/protocol.js';

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
