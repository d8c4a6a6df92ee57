import { describe, expect, it, vi } from 'vitest';
import { compose, layers, type Middleware, type Model, pipeline, tensor, wrap } from '../src/index.js';
import { scaleModel } from './helpers.js';

/** A layer that records when a request passes it, on the way in and out. */
function tracer(name: string, log: string[]): Middleware {
  return (inner) =>
    wrap(inner, {
      layer: name,
      infer: async function traced(inputs, options) {
        log.push(`${name}>`);
        try {
          return await inner.infer(inputs, options);
        } finally {
          log.push(`<${name}`);
        }
      },
      stats: () => ({ name }),
    });
}

const x = () => ({ x: tensor('float32', [1, 2, 3, 4], [1, 4]) });

describe('pipeline (a behaviour spec, in the manner of koa-compose)', () => {
  it('with zero middleware returns the model itself', () => {
    const m = scaleModel();
    expect(pipeline(m)).toBe(m);
  });

  it('passes a request through middleware in the order given, first outermost', async () => {
    const log: string[] = [];
    const m = pipeline(scaleModel(), tracer('a', log), tracer('b', log), tracer('c', log));
    await m.infer(x());
    expect(log).toEqual(['a>', 'b>', 'c>', '<c', '<b', '<a']);
  });

  it('composes nested pipelines and composed stacks the same way', async () => {
    const log: string[] = [];
    const inner = pipeline(scaleModel(), tracer('c', log));
    const m = pipeline(inner, compose(tracer('a', log), tracer('b', log)));
    await m.infer(x());
    expect(log).toEqual(['a>', 'b>', 'c>', '<c', '<b', '<a']);
  });

  it('propagates errors from inside through every layer, which can observe them', async () => {
    const seen: unknown[] = [];
    const observer: Middleware = (inner) =>
      wrap(inner, {
        infer: async (inputs, options) => {
          try {
            return await inner.infer(inputs, options);
          } catch (err) {
            seen.push(err);
            throw err;
          }
        },
      });
    const m = pipeline(scaleModel({ fail: () => true }), observer, observer);
    await expect(m.infer(x())).rejects.toMatchObject({
      code: 'INTERNAL',
      message: 'model failed on purpose',
    });
    expect(seen).toHaveLength(2);
  });

  it('lets a layer short-circuit without calling inner', async () => {
    const model = scaleModel();
    const short: Middleware = (inner) => wrap(inner, { infer: async () => ({ y: tensor('float32', [0]) }) });
    const out = await pipeline(model, short).infer(x());
    expect(out.y!.data).toEqual(new Float32Array([0]));
    expect(model.calls).toHaveLength(0);
  });

  it('a layer may call inner more than once (retries)', async () => {
    const model = scaleModel();
    const twice: Middleware = (inner) =>
      wrap(inner, {
        infer: async (inputs, options) => {
          await inner.infer(inputs, options);
          return inner.infer(inputs, options);
        },
      });
    await pipeline(model, twice).infer(x());
    expect(model.calls).toHaveLength(2);
  });

  it('passes name, version and metadata through untouched layers', () => {
    const m = pipeline(scaleModel({ name: 'm' }), tracer('a', []), tracer('b', []));
    expect(m.name).toBe('m');
    expect(m.version).toBe('1');
    expect(m.metadata().inputs[0]).toMatchObject({
      name: 'x',
      type: 'float32',
      dims: [-1, 4],
      batched: true,
    });
  });

  it('merges stats of every layer under its name', () => {
    const m = pipeline(scaleModel(), tracer('a', []), tracer('b', []));
    expect(m.stats?.()).toEqual({ a: { name: 'a' }, b: { name: 'b' } });
  });

  it('dispose reaches the inner model exactly once, after each layer cleaned up', async () => {
    const order: string[] = [];
    const base = scaleModel();
    const spy = vi.spyOn(base, 'dispose');
    const layer =
      (name: string): Middleware =>
      (inner) =>
        wrap(inner, { dispose: () => void order.push(name) });
    const m = pipeline(base, layer('outer'), layer('inner'));
    await Promise.all([m.dispose(), m.dispose()]);
    await m.dispose();
    expect(spy).toHaveBeenCalledTimes(1);
    expect(order).toEqual(['outer', 'inner']);
    expect(m.isReady?.()).toBe(false);
  });

  it('forwards readiness and warmup from below', async () => {
    let ready = false;
    const warmed: string[] = [];
    const base: Model = {
      ...scaleModel(),
      isReady: () => ready,
      warmup: async () => void warmed.push('base'),
    };
    const m = pipeline(base, (inner) => wrap(inner, { warmup: async () => void warmed.push('layer') }));
    expect(m.isReady?.()).toBe(false);
    ready = true;
    expect(m.isReady?.()).toBe(true);
    await m.warmup?.();
    expect(warmed).toEqual(['base', 'layer']);
  });

  it('exposes the layers from the outside in', () => {
    const base = scaleModel();
    const m = pipeline(base, tracer('a', []), tracer('b', []));
    const all = [...layers(m)];
    expect(all).toHaveLength(3);
    expect(all[2]).toBe(base);
  });

  it('rejects a non-function middleware with a clear message', () => {
    expect(() => pipeline(scaleModel(), 42 as never)).toThrow('pipeline: middleware 0 is not a function');
  });

  it('rejects a middleware that returns no Model, naming its position (as undici checks interceptors)', () => {
    const ok: Middleware = (inner) => wrap(inner, { layer: 'ok' });
    const forgot = ((inner: Model) => {
      void inner;
    }) as unknown as Middleware;
    const asyncLayer = (async (inner: Model) => inner) as unknown as Middleware;
    const plain = (() => ({ name: 'x', version: '1' })) as unknown as Middleware;
    expect(() => pipeline(scaleModel(), ok, forgot)).toThrow(
      new TypeError('pipeline: middleware 1 (forgot) returned undefined, not a Model'),
    );
    expect(() => pipeline(scaleModel(), asyncLayer, ok)).toThrow(
      'pipeline: middleware 0 (asyncLayer) returned a Promise (a middleware must return its layer synchronously), not a Model',
    );
    expect(() => pipeline(scaleModel(), ok, ok, plain)).toThrow(
      'pipeline: middleware 2 (plain) returned an object without infer(), not a Model',
    );
    // compose() counts positions in its own list.
    expect(() => pipeline(scaleModel(), ok, compose(ok, forgot))).toThrow('pipeline: middleware 1 (forgot)');
  });
});
