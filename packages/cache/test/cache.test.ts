import {
  concurrencyLimit,
  fromFunction,
  type InferContext,
  isServeError,
  type Model,
  pipeline,
  ServeError,
  type Tensors,
  tensor,
} from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import { type CacheEvent, type CacheStats, responseCache } from '../src/cache.js';
import { entrySize, memoryStore } from '../src/store.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A model that doubles its input, counts its calls and can be slowed down or made to fail. */
function doubler(opts: { delayMs?: number; fail?: () => boolean; name?: string } = {}) {
  const calls: Tensors[] = [];
  const model = fromFunction({
    name: opts.name ?? 'double',
    inputs: [{ name: 'x', type: 'float32', dims: [-1, -1] }],
    outputs: [
      { name: 'y', type: 'float32', dims: [-1, -1] },
      { name: 'sum', type: 'float32', dims: [-1] },
    ],
    concurrency: 64,
    async infer(inputs, options) {
      calls.push(inputs);
      if (options.context) options.context.computeMs = opts.delayMs ?? 0;
      if (opts.delayMs) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, opts.delayMs);
          options.signal?.addEventListener('abort', () => {
            clearTimeout(t);
            reject(new ServeError('CANCELLED', 'inner call aborted'));
          });
        });
      }
      if (opts.fail?.()) throw new ServeError('UNAVAILABLE', 'backend fell over');
      const x = inputs.x!.data as Float32Array;
      const y = x.map((v) => v * 2);
      return {
        y: { type: 'float32', dims: inputs.x!.dims, data: y },
        sum: tensor('float32', [y.reduce((a, b) => a + b, 0)]),
      };
    },
  });
  return { model, calls };
}

const input = (...v: number[]) => ({ x: tensor('float32', v, [1, v.length]) });
const cacheStats = (m: Model) => m.stats!().cache as CacheStats;

async function rejectionOf(p: Promise<unknown>): Promise<ServeError> {
  try {
    await p;
  } catch (err) {
    if (isServeError(err)) return err;
    throw new Error(`expected a ServeError, got ${String(err)}`);
  }
  throw new Error('expected a rejection');
}

describe('responseCache: configuration', () => {
  it('refuses an unbounded cache at run time with exact messages', () => {
    expect(() => responseCache({} as never)).toThrow(
      'responseCache: options.max or options.maxSize is required (an unbounded cache grows until the process runs out of memory)',
    );
    expect(() => responseCache(undefined as never)).toThrow(
      'responseCache: options are required: { max } or { maxSize } (or a store with ttlMs)',
    );
    expect(() => responseCache({ store: memoryStore({ max: 1 }) } as never)).toThrow(
      'responseCache: options.ttlMs is required with an external store (its entries must expire)',
    );
    expect(() => memoryStore({} as never)).toThrow(
      'memoryStore: options.max or options.maxSize is required (an unbounded cache grows until the process runs out of memory)',
    );
    expect(() => responseCache({ max: 0 })).toThrow('responseCache: options.max must be a positive integer');
    expect(() => responseCache({ max: 1.5 })).toThrow(
      'responseCache: options.max must be a positive integer',
    );
    expect(() => responseCache({ maxSize: -1 })).toThrow(
      'responseCache: options.maxSize must be a positive integer (bytes)',
    );
    expect(() => responseCache({ max: 10, ttlMs: 0 })).toThrow(
      'responseCache: options.ttlMs must be a positive integer (milliseconds)',
    );
    expect(() => responseCache({ max: 10, shouldCache: 1 as never })).toThrow(
      'responseCache: options.shouldCache must be a function',
    );
    expect(() => responseCache({ store: { kind: 'x' } as never, ttlMs: 5 })).toThrow(
      'responseCache: options.store must be a CacheStore (memoryStore(), redisStore())',
    );
  });

  it('refuses an unbounded cache in the types', () => {
    // @ts-expect-error: neither max nor maxSize
    expect(() => responseCache({ ttlMs: 1000 })).toThrow(TypeError);
    // @ts-expect-error: a store needs ttlMs
    expect(() => responseCache({ store: memoryStore({ max: 1 }) })).toThrow(TypeError);
    // @ts-expect-error: memoryStore needs max or maxSize
    expect(() => memoryStore({ maxEntrySize: 10 })).toThrow(TypeError);
    expect(typeof responseCache({ maxSize: 1024 })).toBe('function');
    expect(typeof responseCache({ store: memoryStore({ max: 1 }), ttlMs: 10 })).toBe('function');
  });
});

describe('responseCache: in process', () => {
  it('answers a repeated request from the cache without touching the model', async () => {
    const { model, calls } = doubler();
    const served = pipeline(model, responseCache({ max: 100 }));
    const c1: InferContext = {};
    const first = await served.infer(input(1, 2, 3), { context: c1 });
    const c2: InferContext = {};
    const second = await served.infer(input(1, 2, 3), { context: c2 });
    expect(calls).toHaveLength(1);
    expect([...(second.y!.data as Float32Array)]).toEqual([2, 4, 6]);
    expect(second.y!.dims).toEqual(first.y!.dims);
    expect(c1.cacheHit).toBe(false);
    expect(c2.cacheHit).toBe(true);
    const s = cacheStats(served);
    expect(s).toMatchObject({
      hits: 1,
      misses: 1,
      inferences: 1,
      entries: 1,
      store: 'memory',
      hitRatio: 0.5,
    });
    expect(s.bytes).toBeGreaterThan(16);
  });

  it('keys on requested outputs and parameters, and ignores listed parameters', async () => {
    const { model, calls } = doubler();
    const served = pipeline(model, responseCache({ max: 100, ignoreParameters: ['requestId'] }));
    const onlySum = await served.infer(input(1, 2), { outputs: ['sum'] });
    expect(Object.keys(onlySum)).toEqual(['sum']);
    const all = await served.infer(input(1, 2));
    expect(Object.keys(all).sort()).toEqual(['sum', 'y']);
    await served.infer(input(1, 2), { parameters: { mode: 'a', requestId: '1' } });
    await served.infer(input(1, 2), { parameters: { mode: 'a', requestId: '2' } });
    await served.infer(input(1, 2), { parameters: { mode: 'b' } });
    expect(calls).toHaveLength(4);
  });

  it('never hands out what a caller can corrupt (mutation safety)', async () => {
    const { model, calls } = doubler();
    const served = pipeline(model, responseCache({ max: 100 }));
    const req = input(1, 2, 3);
    const first = await served.infer(req);
    (first.y!.data as Float32Array).fill(-1);
    (req.x!.data as Float32Array)[0] = 100; // the caller reuses its input buffer
    const second = await served.infer(input(1, 2, 3));
    expect([...(second.y!.data as Float32Array)]).toEqual([2, 4, 6]);
    (second.y!.data as Float32Array).fill(-7);
    (second.y!.dims as number[])[0] = 99;
    const third = await served.infer(input(1, 2, 3));
    expect([...(third.y!.data as Float32Array)]).toEqual([2, 4, 6]);
    expect(third.y!.dims).toEqual([1, 3]);
    expect(calls).toHaveLength(1);
  });

  it("never gives different inputs of one shape each other's answers (collisions)", async () => {
    const { model, calls } = doubler();
    const served = pipeline(model, responseCache({ max: 10_000 }));
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 300; i++) {
        const v = [i, i % 7, -i, i / 3];
        const out = await served.infer(input(...v));
        expect([...(out.y!.data as Float32Array)]).toEqual(v.map((n) => Math.fround(n) * 2));
      }
    }
    expect(calls).toHaveLength(300);
    expect(cacheStats(served).hits).toBe(300);
  });

  it('evicts least recently used answers by bytes', async () => {
    const { model, calls } = doubler();
    const events: CacheEvent[] = [];
    // Each answer is 4 KiB of y plus a little; 64 KiB holds about 14 of them.
    const served = pipeline(model, responseCache({ maxSize: 64 * 1024, onEvent: (e) => events.push(e) }));
    const big = (i: number) => ({
      x: { type: 'float32' as const, dims: [1, 1024], data: new Float32Array(1024).fill(i) },
    });
    for (let i = 0; i < 40; i++) await served.infer(big(i));
    const s = cacheStats(served);
    expect(s.bytes).toBeLessThanOrEqual(64 * 1024);
    expect(s.entries).toBeGreaterThan(5);
    expect(s.entries).toBeLessThan(20);
    expect(s.evictions).toBe(40 - s.entries!);
    expect(events.filter((e) => e.type === 'evict')).toHaveLength(s.evictions!);
    // The newest is still there; the oldest was evicted.
    await served.infer(big(39));
    expect(calls).toHaveLength(40);
    await served.infer(big(0));
    expect(calls).toHaveLength(41);
  });

  it('refuses single answers larger than maxEntrySize', async () => {
    const { model, calls } = doubler();
    const served = pipeline(model, responseCache({ max: 10, maxEntrySize: 1024 }));
    const big = { x: { type: 'float32' as const, dims: [1, 1024], data: new Float32Array(1024) } };
    await served.infer(big);
    await served.infer(big);
    await served.infer(input(1));
    await served.infer(input(1));
    expect(calls).toHaveLength(3);
    expect(cacheStats(served)).toMatchObject({ skipped: 2, entries: 1 });
  });

  it('expires answers after ttlMs', async () => {
    const { model, calls } = doubler();
    const served = pipeline(model, responseCache({ max: 10, ttlMs: 60 }));
    await served.infer(input(5));
    await served.infer(input(5));
    expect(calls).toHaveLength(1);
    await sleep(120);
    await served.infer(input(5));
    expect(calls).toHaveLength(2);
    expect(cacheStats(served).expirations).toBe(1);
  });

  it('coalesces 50 identical concurrent requests into one inference', async () => {
    const { model, calls } = doubler({ delayMs: 30 });
    const served = pipeline(model, responseCache({ max: 10 }));
    const contexts = Array.from({ length: 50 }, (): InferContext => ({}));
    const outs = await Promise.all(contexts.map((context) => served.infer(input(3, 4), { context })));
    expect(calls).toHaveLength(1);
    for (const o of outs) expect([...(o.y!.data as Float32Array)]).toEqual([6, 8]);
    // Each caller owns its tensors.
    expect(new Set(outs.map((o) => o.y!.data)).size).toBe(50);
    expect(contexts.filter((c) => c.coalesced)).toHaveLength(49);
    // What the layers below measured reaches every waiter.
    for (const c of contexts) expect(c.computeMs).toBe(30);
    expect(cacheStats(served)).toMatchObject({ coalesced: 49, inferences: 1, inFlight: 0 });
  });

  it('does not cancel the shared inference when one caller aborts', async () => {
    const { model, calls } = doubler({ delayMs: 40 });
    const served = pipeline(model, responseCache({ max: 10 }));
    const quitter = new AbortController();
    const a = served.infer(input(7), { signal: quitter.signal });
    const b = served.infer(input(7));
    const c = served.infer(input(7), { deadline: Date.now() + 5 });
    quitter.abort();
    expect((await rejectionOf(a)).code).toBe('CANCELLED');
    expect((await rejectionOf(c)).code).toBe('DEADLINE_EXCEEDED');
    expect([...((await b).y!.data as Float32Array)]).toEqual([14]);
    expect(calls).toHaveLength(1);
    // The answer was kept.
    await served.infer(input(7));
    expect(calls).toHaveLength(1);
  });

  it('passes no signal below when nothing can abort the call, and the shared signal when something can', async () => {
    const seen: (AbortSignal | undefined)[] = [];
    const model = fromFunction({
      name: 'probe',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, -1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, -1] }],
      infer(inputs, options) {
        seen.push(options.signal);
        return { y: inputs.x! };
      },
    });
    const served = pipeline(model, responseCache({ max: 10 }));
    const context: InferContext = {};
    await served.infer(input(1), { context });
    expect(seen[0]).toBeUndefined();
    expect(context.cacheHit).toBe(false);
    const caller = new AbortController();
    await served.infer(input(2), { signal: caller.signal });
    // Not the caller's own signal: the shared one, which aborts only when every waiter has gone.
    expect(seen[1]).toBeInstanceOf(AbortSignal);
    expect(seen[1]).not.toBe(caller.signal);
    await served.infer(input(3), { deadline: Date.now() + 10_000 });
    expect(seen[2]).toBeInstanceOf(AbortSignal);
  });

  it('cancels the shared inference once every caller has gone, and caches nothing', async () => {
    const { model, calls } = doubler({ delayMs: 200 });
    const served = pipeline(model, responseCache({ max: 10 }));
    const ctl = [new AbortController(), new AbortController()];
    const ps = ctl.map((c) => served.infer(input(8), { signal: c.signal }));
    for (const c of ctl) c.abort();
    for (const p of ps) expect((await rejectionOf(p)).code).toBe('CANCELLED');
    await sleep(10);
    // The inner call saw the shared signal abort and left; nothing was kept.
    expect(cacheStats(served)).toMatchObject({ inFlight: 0, entries: 0, inferences: 1 });
    const again = await served.infer(input(8));
    expect([...(again.y!.data as Float32Array)]).toEqual([16]);
    expect(calls).toHaveLength(2);
  });

  it('gives every coalesced caller the error and caches nothing when the inference fails', async () => {
    let failing = true;
    const { model, calls } = doubler({ delayMs: 20, fail: () => failing });
    const served = pipeline(model, responseCache({ max: 10 }));
    const errs = await Promise.all(Array.from({ length: 5 }, () => rejectionOf(served.infer(input(9)))));
    for (const e of errs) expect(e.code).toBe('UNAVAILABLE');
    expect(calls).toHaveLength(1);
    failing = false;
    const ok = await served.infer(input(9));
    expect([...(ok.y!.data as Float32Array)]).toEqual([18]);
    expect(calls).toHaveLength(2);
    expect(cacheStats(served).entries).toBe(1);
  });

  it('runs each identical request on its own with coalesce: false', async () => {
    const { model, calls } = doubler({ delayMs: 20 });
    const served = pipeline(model, responseCache({ max: 10, coalesce: false }));
    await Promise.all(Array.from({ length: 4 }, () => served.infer(input(1))));
    expect(calls).toHaveLength(4);
    await served.infer(input(1));
    expect(calls).toHaveLength(4);
  });

  it('keeps only what shouldCache allows, and bypasses on parameters { cache: false }', async () => {
    const { model, calls } = doubler();
    const served = pipeline(
      model,
      responseCache({
        max: 10,
        shouldCache: (_inputs, outputs) => (outputs.sum!.data as Float32Array)[0]! > 0,
      }),
    );
    await served.infer(input(-1));
    await served.infer(input(-1));
    expect(calls).toHaveLength(2);
    await served.infer(input(1));
    await served.infer(input(1));
    expect(calls).toHaveLength(3);
    await served.infer(input(1), { parameters: { cache: false } });
    await served.infer(input(1), { parameters: { cache: 'false' } });
    expect(calls).toHaveLength(5);
    // `cache: true` is not part of the key: still a hit.
    await served.infer(input(1), { parameters: { cache: true } });
    expect(calls).toHaveLength(5);
    expect(cacheStats(served)).toMatchObject({ bypassed: 2, skipped: 2, hits: 2 });
  });

  it('never answers stateful sequence requests or requests with non-scalar parameters', async () => {
    const { model, calls } = doubler();
    const served = pipeline(model, responseCache({ max: 10 }));
    await served.infer(input(1), { sequence: { id: 1, start: true } });
    await served.infer(input(1), { sequence: { id: 1 } });
    expect(calls).toHaveLength(2);
    const nested = { parameters: { filter: { a: 1 } as unknown as string } };
    await served.infer(input(1), nested);
    await served.infer(input(1), { parameters: { filter: { b: 2 } as unknown as string } });
    expect(calls).toHaveLength(4);
    expect(cacheStats(served)).toMatchObject({ bypassed: 4, entries: 0 });
  });

  it('keeps nothing when shouldCache throws, and never coalesces requests for different outputs', async () => {
    const { model, calls } = doubler({ delayMs: 20 });
    const served = pipeline(
      model,
      responseCache({
        max: 10,
        shouldCache: () => {
          throw new Error('bug in the predicate');
        },
      }),
    );
    const [both, sum] = await Promise.all([
      served.infer(input(2)),
      served.infer(input(2), { outputs: ['sum'] }),
    ]);
    expect(Object.keys(both).sort()).toEqual(['sum', 'y']);
    expect(Object.keys(sum)).toEqual(['sum']);
    expect(calls).toHaveLength(2);
    await served.infer(input(2));
    expect(calls).toHaveLength(3);
    expect(cacheStats(served)).toMatchObject({ skipped: 3, coalesced: 0, entries: 0 });
  });

  it('rejects bad input with INVALID_ARGUMENT, never a crash', async () => {
    const { model, calls } = doubler();
    const served = pipeline(model, responseCache({ max: 10 }));
    const bad = { x: { type: 'float32', dims: [1, 3], data: new Float32Array(2) } } as const;
    expect((await rejectionOf(served.infer(bad))).code).toBe('INVALID_ARGUMENT');
    expect((await rejectionOf(served.infer(null as never))).code).toBe('INVALID_ARGUMENT');
    expect(calls).toHaveLength(0);
  });

  it('memoryStore hands back equal, independent tensors of every numeric class and charges entrySize', () => {
    const store = memoryStore({ max: 4 });
    const answer = (v: number): Tensors => ({
      logits: { type: 'float32', dims: [1, 3], data: new Float32Array([v, 2, 3]) },
      ids: { type: 'int64', dims: [1], data: new BigInt64Array([BigInt(v)]) },
      mask: { type: 'uint8', dims: [5], data: new Uint8Array([v, 0, 1, 0, 1]) },
      text: { type: 'string', dims: [1], data: ['x'] },
    });
    const numeric = (v: number): Tensors => {
      const { text: _text, ...rest } = answer(v);
      return rest;
    };
    const offsetView = new Float64Array([9, 7, 8]).subarray(1); // a view that does not start its buffer
    const views: Tensors = { v: { type: 'float64', dims: [2], data: offsetView } };
    store.set('k1', numeric(1), {});
    store.set('k2', numeric(2), {}); // the same shape as k1's
    store.set('k3', answer(3), {}); // strings: kept as copies
    store.set('k4', views, {});
    const cases: [string, Tensors][] = [
      ['k1', numeric(1)],
      ['k2', numeric(2)],
      ['k3', answer(3)],
      ['k4', { v: { type: 'float64', dims: [2], data: new Float64Array([7, 8]) } }],
    ];
    for (const [key, want] of cases) {
      const got = store.get(key) as Tensors;
      expect(got).toEqual(want);
      for (const name of Object.keys(want)) {
        expect(got[name]!.data.constructor).toBe(want[name]!.data.constructor);
      }
      (got[Object.keys(got)[0]!]!.data as Float32Array)[0] = 99; // mutating a copy changes nothing kept
      (got[Object.keys(got)[0]!]!.dims as number[])[0] = 42;
      expect(store.get(key)).toEqual(want);
    }
    const expected = ['k1', 'k2', 'k3'].reduce(
      (n, k, i) => n + entrySize(k, i === 2 ? answer(3) : numeric(1)),
      0,
    );
    expect(store.stats!().bytes).toBe(expected + entrySize('k4', views));
  });

  it('keeps models apart in one shared store, and a listener that throws breaks nothing', async () => {
    const store = memoryStore({ maxSize: 1 << 20 });
    const a = doubler({ name: 'a' });
    const b = doubler({ name: 'b' });
    const onEvent = () => {
      throw new Error('listener bug');
    };
    const sa = pipeline(a.model, responseCache({ store, ttlMs: 60_000, onEvent }));
    const sb = pipeline(b.model, responseCache({ store, ttlMs: 60_000, onEvent }));
    await sa.infer(input(2));
    await sb.infer(input(2));
    await sa.infer(input(2));
    expect(a.calls).toHaveLength(1);
    expect(b.calls).toHaveLength(1);
    expect(store.stats!().entries).toBe(2);
    // Disposing one model's cache leaves the shared store to the other.
    await sa.dispose();
    expect(store.stats!().entries).toBe(2);
    expect((await rejectionOf(sa.infer(input(2)))).code).toBe('UNAVAILABLE');
    await sb.infer(input(2));
    expect(b.calls).toHaveLength(1);
  });

  it('forwards metadata, readiness and disposal', async () => {
    const { model } = doubler();
    const served = pipeline(model, responseCache({ max: 10 }));
    expect(served.metadata().name).toBe('double');
    await served.infer(input(1));
    await served.dispose();
    expect(served.isReady!()).toBe(false);
    expect((await rejectionOf(served.infer(input(2)))).code).toBe('UNAVAILABLE');
  });
});

describe('responseCache: stacked outside a batching layer', () => {
  it('answers hits at once while the batcher behind it is saturated', async () => {
    // A batching-like inner: one call at a time, a queue behind it (core's concurrencyLimit).
    const gate: { release?: () => void } = {};
    let runs = 0;
    const slow = fromFunction({
      name: 'slow',
      inputs: [{ name: 'x', type: 'float32', dims: [-1, 1] }],
      outputs: [{ name: 'y', type: 'float32', dims: [-1, 1] }],
      async infer({ x }) {
        runs++;
        if ((x!.data as Float32Array)[0] === 0) await new Promise<void>((r) => (gate.release = r));
        return { y: x! };
      },
    });
    const served = pipeline(
      slow,
      responseCache({ max: 100 }),
      concurrencyLimit({ maxConcurrent: 1, maxQueue: 8 }),
    );
    await served.infer(input(42)); // warm the cache
    const blocker = served.infer(input(0)); // holds the only slot
    const queued = served.infer(input(1)); // waits behind it
    await sleep(10);
    const c: InferContext = {};
    const hit = await served.infer(input(42), { context: c });
    expect(c.cacheHit).toBe(true);
    expect([...(hit.y!.data as Float32Array)]).toEqual([42]);
    expect(runs).toBe(2);
    expect((served.stats!().concurrency as { queued: number }).queued).toBe(1);
    gate.release!();
    await Promise.all([blocker, queued]);
    expect(runs).toBe(3);
  });
});
