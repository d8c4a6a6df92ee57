import { describe, expect, it } from 'vitest';
import { concurrencyLimit, pipeline, tensor, timeout, validation } from '../src/index.js';
import { scaleModel } from './helpers.js';

const x = (rows = 1) => ({ x: tensor('float32', new Float32Array(rows * 4).fill(1), [rows, 4]) });

describe('validation()', () => {
  const m = pipeline(scaleModel(), validation());

  it('lets a correct request through', async () => {
    const out = await m.infer(x(3));
    expect(out.y!.dims).toEqual([3, 4]);
  });

  it('names the input, the expected and the actual signature', async () => {
    const bad = { x: tensor('float64', new Float64Array(4), [1, 4]) };
    await expect(m.infer(bad)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      status: 400,
      message: 'input "x": expected float32[-1,4], got float64[1,4]',
    });
    await expect(m.infer({ x: tensor('float32', new Float32Array(4), [4]) })).rejects.toThrow(
      'input "x": expected float32[-1,4], got float32[4]',
    );
    await expect(m.infer({ x: tensor('float32', new Float32Array(3), [1, 3]) })).rejects.toThrow(
      '(dim 1 must be 4)',
    );
  });

  it('rejects missing, unknown and malformed inputs, and unknown or repeated outputs', async () => {
    await expect(m.infer({})).rejects.toThrow('missing input "x": expected float32[-1,4]');
    await expect(m.infer({ ...x(), z: tensor('float32', [1]) })).rejects.toThrow(
      'unknown input "z" for model "scale"',
    );
    await expect(
      m.infer({ x: { type: 'float32', dims: [1, 4], data: new Float32Array(3) } }),
    ).rejects.toThrow('input "x": shape [1,4] needs 4 elements, data has 3');
    await expect(m.infer(x(), { outputs: ['nope'] })).rejects.toThrow('unknown output "nope"');
    await expect(m.infer(x(), { outputs: ['y', 'y'] })).rejects.toThrow('output "y" is requested twice');
  });

  it('returns only the requested outputs', async () => {
    const out = await m.infer(x(), { outputs: ['sum'] });
    expect(Object.keys(out)).toEqual(['sum']);
  });

  it('does not treat __proto__ as an input', async () => {
    const hostile = JSON.parse('{"__proto__": {"x": 1}}') as Record<string, never>;
    await expect(m.infer(hostile)).rejects.toThrow('missing input "x"');
  });
});

describe('timeout()', () => {
  it('rejects at once with DEADLINE_EXCEEDED when the deadline passes, and aborts the inner signal', async () => {
    let innerSignal: AbortSignal | undefined;
    const slow = scaleModel({ delayMs: 2000 });
    const spy = pipeline(
      {
        ...slow,
        infer: (inputs, options) => {
          innerSignal = options?.signal;
          return slow.infer(inputs, options);
        },
      },
      timeout({ defaultMs: 20 }),
    );
    const t0 = Date.now();
    await expect(spy.infer(x())).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED', status: 504 });
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(innerSignal?.aborted).toBe(true);
  });

  it('rejects at once with CANCELLED on abort', async () => {
    const m = pipeline(scaleModel({ delayMs: 200 }), timeout({ defaultMs: 5000 }));
    const ac = new AbortController();
    const p = m.infer(x(), { signal: ac.signal });
    setTimeout(() => ac.abort(), 10);
    await expect(p).rejects.toMatchObject({ code: 'CANCELLED', status: 499 });
    await expect(m.infer(x(), { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('rejects a request whose deadline already passed without running it', async () => {
    const model = scaleModel();
    const m = pipeline(model, timeout());
    await expect(m.infer(x(), { deadline: Date.now() - 1 })).rejects.toMatchObject({
      code: 'DEADLINE_EXCEEDED',
    });
    expect(model.calls).toHaveLength(0);
  });

  it('caps deadlines at maxMs and passes fast requests through', async () => {
    let seen: number | undefined;
    const base = scaleModel();
    const m = pipeline(
      { ...base, infer: (i, o) => ((seen = o?.deadline), base.infer(i, o)) },
      timeout({ maxMs: 1000 }),
    );
    await m.infer(x(), { deadline: Date.now() + 60_000 });
    expect(seen! - Date.now()).toBeLessThanOrEqual(1000);
    expect(() => timeout({ defaultMs: -1 })).toThrow('options.defaultMs must be a positive number');
  });
});

describe('concurrencyLimit()', () => {
  it('keeps at most N in flight and sheds beyond the queue with RESOURCE_EXHAUSTED and a retry hint', async () => {
    let inFlight = 0;
    let peak = 0;
    const base = scaleModel({ delayMs: 20 });
    const counted = {
      ...base,
      infer: async (i: never, o: never) => {
        peak = Math.max(peak, ++inFlight);
        try {
          return await base.infer(i, o);
        } finally {
          inFlight--;
        }
      },
    };
    const m = pipeline(counted, concurrencyLimit({ maxConcurrent: 2, maxQueue: 3 }));
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => m.infer(x())));
    const ok = results.filter((r) => r.status === 'fulfilled');
    const shed = results
      .filter((r) => r.status === 'rejected')
      .map((r) => (r as PromiseRejectedResult).reason);
    expect(ok).toHaveLength(5);
    expect(shed).toHaveLength(3);
    for (const e of shed) {
      expect(e).toMatchObject({ code: 'RESOURCE_EXHAUSTED', status: 429 });
      expect(e.retryAfterMs).toBeGreaterThan(0);
    }
    expect(peak).toBe(2);
    expect(m.stats?.()).toMatchObject({ concurrency: { inFlight: 0, queued: 0, admitted: 5, rejected: 3 } });
  });

  it('can answer 503 instead of 429', async () => {
    const m = pipeline(
      scaleModel({ delayMs: 20 }),
      concurrencyLimit({ maxConcurrent: 1, rejectStatus: 503 }),
    );
    const [a, b] = await Promise.allSettled([m.infer(x()), m.infer(x())]);
    expect(a.status).toBe('fulfilled');
    expect((b as PromiseRejectedResult).reason).toMatchObject({ code: 'RESOURCE_EXHAUSTED', status: 503 });
  });

  it('drops queued requests that abort or expire without running them', async () => {
    const model = scaleModel({ delayMs: 50 });
    const m = pipeline(model, concurrencyLimit({ maxConcurrent: 1, maxQueue: 10 }));
    const first = m.infer(x());
    const ac = new AbortController();
    const aborted = m.infer(x(), { signal: ac.signal });
    const expired = m.infer(x(), { deadline: Date.now() + 10 });
    ac.abort();
    await expect(aborted).rejects.toMatchObject({ code: 'CANCELLED' });
    await expect(expired).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    await first;
    expect(model.calls).toHaveLength(1);
  });

  it('serves higher priority first', async () => {
    const order: number[] = [];
    const base = scaleModel({ delayMs: 5 });
    const m = pipeline(
      { ...base, infer: (i, o) => (order.push(o?.priority ?? 0), base.infer(i, o)) },
      concurrencyLimit({ maxConcurrent: 1, maxQueue: 10 }),
    );
    await Promise.all([
      m.infer(x(), { priority: 0 }),
      m.infer(x(), { priority: 1 }),
      m.infer(x(), { priority: 9 }),
      m.infer(x(), { priority: 5 }),
    ]);
    expect(order).toEqual([0, 9, 5, 1]);
  });

  it('rejects queued requests with UNAVAILABLE on dispose, and validates options', async () => {
    const m = pipeline(scaleModel({ delayMs: 30 }), concurrencyLimit({ maxConcurrent: 1, maxQueue: 5 }));
    const running = m.infer(x());
    const queued = m.infer(x());
    const disposed = m.dispose();
    await expect(queued).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await running;
    await disposed;
    expect(() => concurrencyLimit({ maxConcurrent: 0 })).toThrow(
      'options.maxConcurrent must be a positive integer',
    );
    expect(() => concurrencyLimit({ maxConcurrent: 1, maxQueue: -1 })).toThrow(
      'options.maxQueue must be a non-negative integer',
    );
  });
});
