import { readFileSync } from 'node:fs';
import {
  fromFunction,
  isServeError,
  isValidated,
  type Model,
  ModelRegistry,
  type Tensors,
  wrap,
} from '@mlserve/core';
import { afterEach, describe, expect, it } from 'vitest';
import { createV2Service, type V2Call } from '../src/server.js';

function model(version = '1', seen: Tensors[] = []) {
  return fromFunction({
    name: 'm',
    version,
    inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
    outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
    infer: (inputs) => {
      seen.push(inputs);
      return { y: inputs.x! };
    },
  });
}

const call = (extra: Partial<V2Call> = {}): V2Call => ({
  name: 'm',
  version: undefined,
  inputs: { x: { type: 'float32', dims: [1, 2], data: Float32Array.from([1, 2]) } },
  id: 'r',
  parameters: Object.create(null),
  timeoutUs: undefined,
  priority: undefined,
  sequence: undefined,
  outputs: undefined,
  ...extra,
});

let registry: ModelRegistry;
afterEach(async () => {
  await registry?.close();
});

async function expectCode(p: Promise<unknown>, code: string) {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isServeError(err) && err.code).toBe(code);
}

describe('createV2Service', () => {
  it('looks the model up once, reads its metadata and compiles its validator once per version, and marks the request', async () => {
    registry = new ModelRegistry();
    const seen: Tensors[] = [];
    let metadataCalls = 0;
    const inner = model('1', seen);
    registry.add(wrap(inner, { metadata: () => (metadataCalls++, inner.metadata()) }));
    let gets = 0;
    const get = registry.get.bind(registry);
    registry.get = (...args: Parameters<ModelRegistry['get']>): Model => (gets++, get(...args));
    const service = createV2Service({ registry });
    for (let i = 0; i < 5; i++) {
      const res = await service.infer(call());
      expect(Array.from(res.outputs.y!.data as Float32Array)).toEqual([1, 2]);
    }
    expect(gets).toBe(5);
    expect(metadataCalls).toBe(1);
    // The model saw the very record the service validated: inner layers can trust it.
    expect(isValidated(seen[0]!, { name: 'm', version: '1' })).toBe(true);
    // A new version is a new handle: compiled afresh.
    registry.add(model('2'));
    await service.infer(call({ version: '2' }));
    await expectCode(
      service.infer(
        call({ version: '2', inputs: { x: { type: 'float64', dims: [1, 2], data: new Float64Array(2) } } }),
      ),
      'INVALID_ARGUMENT',
    );
  });

  it('merges deadlines: the V2 timeout (µs), the transport timeout (ms), its deadline and the cap; the smallest wins; 0 is none', () => {
    registry = new ModelRegistry();
    const service = createV2Service({ registry, maxTimeoutMs: 10_000 });
    const now = Date.now();
    const within = (d: number | undefined, ms: number) => {
      expect(d).toBeGreaterThanOrEqual(now + ms - 5);
      expect(d).toBeLessThanOrEqual(Date.now() + ms + 5);
    };
    within(service.deadlineOf({ timeoutUs: 2_000_000, timeoutMs: 3000, deadline: undefined }), 2000);
    within(service.deadlineOf({ timeoutUs: 5_000_000, timeoutMs: 1000, deadline: undefined }), 1000);
    within(service.deadlineOf({ timeoutUs: 0, timeoutMs: 0, deadline: undefined }), 10_000);
    within(service.deadlineOf({ timeoutUs: 9_000_000, timeoutMs: undefined, deadline: now + 500 }), 500);
    expect(
      createV2Service({ registry }).deadlineOf({ timeoutUs: 0, timeoutMs: 0, deadline: undefined }),
    ).toBe(undefined);
  });

  it('answers DEADLINE_EXCEEDED for a model that ignores its deadline, and counts the failure', async () => {
    registry = new ModelRegistry();
    registry.add(
      fromFunction({
        name: 'm',
        inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
        infer: async (inputs) => {
          await new Promise((r) => setTimeout(r, 300));
          return { y: inputs.x! };
        },
      }),
    );
    const service = createV2Service({ registry });
    await expectCode(service.infer(call({ timeoutUs: 20_000 })), 'DEADLINE_EXCEEDED');
    const stats = service.modelStats('m') as {
      model_stats: { inference_stats: { fail: { count: number } } }[];
    };
    expect(stats.model_stats[0]!.inference_stats.fail.count).toBe(1);
  });

  it('applies Triton conventions: priority 0 and sequence id 0 are none; classification per output', async () => {
    registry = new ModelRegistry();
    const seen: unknown[] = [];
    registry.add(
      fromFunction({
        name: 'm',
        inputs: [{ name: 'x', type: 'float32', dims: [-1, 2] }],
        outputs: [{ name: 'y', type: 'float32', dims: [-1, 2] }],
        infer: (inputs, opts) => {
          seen.push({ priority: opts.priority, sequence: opts.sequence });
          return { y: inputs.x! };
        },
      }),
    );
    const service = createV2Service({ registry, labels: { m: ['a', 'b'] } });
    await service.infer(call({ priority: 0, sequence: { id: 0 } }));
    await service.infer(call({ priority: 2, sequence: { id: 7, start: true } }));
    expect(seen).toEqual([
      { priority: undefined, sequence: undefined },
      { priority: 2, sequence: { id: 7, start: true } },
    ]);
    const res = await service.infer(call({ outputs: [{ name: 'y', classification: 1 }] }));
    expect(res.outputs.y).toEqual({ type: 'string', dims: [1, 1], data: ['2:1:b'] });
  });

  it('repository: UNIMPLEMENTED when off, UNAUTHENTICATED on a wrong token, unload through the hook when given', async () => {
    registry = new ModelRegistry();
    registry.add(model());
    await expectCode(createV2Service({ registry }).repositoryIndex(undefined), 'UNIMPLEMENTED');
    const unloaded: string[] = [];
    const service = createV2Service({
      registry,
      management: { token: 't', unload: async (name) => void unloaded.push(name) },
    });
    await expectCode(service.repositoryIndex('Bearer x'), 'UNAUTHENTICATED');
    await expectCode(service.repositoryUnload(undefined, 'm', {}), 'UNAUTHENTICATED');
    await expectCode(service.repositoryLoad('Bearer t', 'm', {}), 'UNIMPLEMENTED');
    await service.repositoryUnload('Bearer t', 'm', {});
    expect(unloaded).toEqual(['m']);
    expect(registry.status('m')).toBeDefined();
    // Without the hook: the registry's remove.
    await createV2Service({ registry, management: true }).repositoryUnload(undefined, 'm', {});
    expect(registry.status('m')).toBeUndefined();
  });

  it('refuses reserved or malformed model action names', () => {
    registry = new ModelRegistry();
    expect(() => createV2Service({ registry, modelActions: { infer: () => ({}) } })).toThrow(/reserved/);
    expect(() => createV2Service({ registry, modelActions: { 'Bad/x': () => ({}) } })).toThrow(/reserved/);
    expect(
      createV2Service({ registry, modelActions: { feedback: () => ({}) } }).modelAction('feedback'),
    ).toBeTypeOf('function');
  });

  it("reports this package's version as the server version unless told one", () => {
    registry = new ModelRegistry();
    const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(createV2Service({ registry }).serverMetadata(['binary_tensor_data'])).toEqual({
      name: 'mlserve',
      version,
      extensions: ['binary_tensor_data'],
    });
    const named = createV2Service({ registry, serverName: 'x', serverVersion: '9.9.9' });
    expect(named.serverMetadata([])).toMatchObject({ name: 'x', version: '9.9.9' });
  });
});

describe('statistics: batch_stats', () => {
  it('counts each request as one call of its rows when no layer counts batches', async () => {
    registry = new ModelRegistry();
    registry.add(model());
    const service = createV2Service({ registry });
    const rows = (n: number) => ({
      x: { type: 'float32' as const, dims: [n, 2], data: new Float32Array(2 * n) },
    });
    await service.infer(call({ inputs: rows(1) }));
    await service.infer(call({ inputs: rows(1) }));
    await service.infer(call({ inputs: rows(3) }));
    const s = service.modelStats('m').model_stats[0]!;
    expect(s.batch_stats.map((b) => [b.batch_size, b.compute_infer.count])).toEqual([
      [1, 2],
      [3, 1],
    ]);
    expect(s.batch_stats.every((b) => b.compute_infer.ns > 0)).toBe(true);
    expect(s.execution_count).toBe(3);
    expect(s.inference_count).toBe(5);
  });

  it("takes a batching layer's executed sizes (stats().batching.batchSizes) where the model has one", async () => {
    registry = new ModelRegistry();
    const sizes = [
      { size: 2, count: 1, computeMs: 1.5 },
      { size: 8, count: 3, computeMs: 6 },
    ];
    registry.add(wrap(model(), { layer: 'batching', stats: () => ({ batchSizes: sizes }) }));
    const service = createV2Service({ registry });
    await service.infer(call());
    const s = service.modelStats('m', '1').model_stats[0]!;
    expect(s.batch_stats).toEqual([
      {
        batch_size: 2,
        compute_input: { count: 1, ns: 0 },
        compute_infer: { count: 1, ns: 1_500_000 },
        compute_output: { count: 1, ns: 0 },
      },
      {
        batch_size: 8,
        compute_input: { count: 3, ns: 0 },
        compute_infer: { count: 3, ns: 6_000_000 },
        compute_output: { count: 3, ns: 0 },
      },
    ]);
    expect(s.execution_count).toBe(4);
  });
});
