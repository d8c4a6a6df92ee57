import { describe, expect, it } from 'vitest';
import {
  concurrencyLimit,
  DEPRECATED_CODE,
  ModelRegistry,
  pipeline,
  renamedOption,
  tensor,
  warnDeprecated,
} from '../src/index.js';
import { scaleModel } from './helpers.js';

/** The MLSERVE_DEPRECATED warnings `fn` emits (process warnings arrive on the next tick). */
async function deprecationsOf(fn: () => unknown): Promise<string[]> {
  const seen: string[] = [];
  const listener = (w: Error & { code?: string }) => {
    if (w.code === DEPRECATED_CODE) seen.push(w.message);
  };
  process.on('warning', listener);
  try {
    await fn();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  return seen;
}

describe('warnDeprecated()', () => {
  it('warns once per process per name, with the MLSERVE_DEPRECATED code', async () => {
    const seen = await deprecationsOf(() => {
      expect(warnDeprecated('test: a', 'a is deprecated')).toBe(true);
      expect(warnDeprecated('test: a', 'a is deprecated')).toBe(false);
      expect(warnDeprecated('test: b', 'b is deprecated')).toBe(true);
    });
    expect(seen).toEqual(['a is deprecated', 'b is deprecated']);
  });
});

describe('renamedOption()', () => {
  it('reads the new name, else the old one with a warning; the new name wins', async () => {
    type O = { maxItems?: number; limit?: number };
    const seen = await deprecationsOf(() => {
      expect(renamedOption<O, 'maxItems'>({ maxItems: 3 }, 'maxItems', 'limit', 'layerA')).toBe(3);
      expect(renamedOption<O, 'maxItems'>({}, 'maxItems', 'limit', 'layerA')).toBeUndefined();
      expect(renamedOption<O, 'maxItems'>({ limit: 5 }, 'maxItems', 'limit', 'layerA')).toBe(5);
      expect(renamedOption<O, 'maxItems'>({ limit: 5, maxItems: 2 }, 'maxItems', 'limit', 'layerA')).toBe(2);
    });
    expect(seen).toEqual(['layerA: options.limit is deprecated; use options.maxItems']);
  });
});

describe('concurrencyLimit({ status }) (deprecated alias of rejectStatus)', () => {
  it('still answers 503 and warns once', async () => {
    const x = () => ({ x: tensor('float32', new Float32Array(4).fill(1), [1, 4]) });
    const seen = await deprecationsOf(async () => {
      concurrencyLimit({ maxConcurrent: 1, status: 503 });
      const m = pipeline(scaleModel({ delayMs: 20 }), concurrencyLimit({ maxConcurrent: 1, status: 503 }));
      const [a, b] = await Promise.allSettled([m.infer(x()), m.infer(x())]);
      expect(a.status).toBe('fulfilled');
      expect((b as PromiseRejectedResult).reason).toMatchObject({ code: 'RESOURCE_EXHAUSTED', status: 503 });
    });
    expect(seen).toEqual(['concurrencyLimit: options.status is deprecated; use options.rejectStatus']);
  });
});

describe('ModelRegistry.unload(name) (deprecated alias of remove(name))', () => {
  it('still retires every version of the model and warns once', async () => {
    const registry = new ModelRegistry();
    registry.add(scaleModel({ name: 'a' }));
    const seen = await deprecationsOf(async () => {
      await registry.unload('a');
      expect(registry.names()).toEqual([]);
      registry.add(scaleModel({ name: 'a' }));
      await registry.unload('a');
    });
    expect(registry.names()).toEqual([]);
    expect(seen).toEqual(['ModelRegistry.unload(name) is deprecated; use remove(name)']);
  });
});
