import { describe, expect, it } from 'vitest';
import { type Model, ModelRegistry, type Tensors, tensor } from '../src/index.js';
import { scaleModel } from './helpers.js';

const x = () => ({ x: tensor('float32', [1, 2, 3, 4], [1, 4]) });

function versioned(
  version: string,
  opts: { delayMs?: number; factor?: number } = {},
): Model & { disposed: number } {
  const base = scaleModel({ name: 'm', ...opts });
  const m = { ...base, version, disposed: 0 } as Model & { disposed: number };
  m.metadata = () => ({ ...base.metadata(), version });
  m.dispose = async () => {
    m.disposed++;
  };
  return m;
}

const y0 = (out: Tensors) => (out.y!.data as Float32Array)[0];

describe('ModelRegistry', () => {
  it('gets models by name and version, the latest ready version when none is named', async () => {
    const r = new ModelRegistry();
    r.add(versioned('1', { factor: 1 }));
    r.add(versioned('2', { factor: 2 }));
    r.add(versioned('10', { factor: 10 }));
    expect(r.versions('m')).toEqual(['1', '2', '10']);
    expect(y0(await r.get('m').infer(x()))).toBe(10);
    expect(y0(await r.get('m', '2').infer(x()))).toBe(2);
    expect(y0(await r.infer('m', '1', x()))).toBe(1);
    expect(r.list().map((s) => `${s.version}:${s.state}`)).toEqual(['1:ready', '2:ready', '10:ready']);
  });

  it('answers NOT_FOUND for unknown models and versions, without throwing from infer', async () => {
    const r = new ModelRegistry();
    r.add(versioned('1'));
    expect(() => r.get('nope')).toThrow(
      expect.objectContaining({ code: 'NOT_FOUND', message: 'unknown model "nope"' }),
    );
    expect(() => r.get('m', '9')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    await expect(r.infer('nope', undefined, x())).rejects.toMatchObject({ code: 'NOT_FOUND', status: 404 });
  });

  it('resolves labels to versions', async () => {
    const r = new ModelRegistry();
    r.add(versioned('1', { factor: 1 }), { labels: ['stable'] });
    r.add(versioned('2', { factor: 2 }));
    r.setLabel('m', 'canary', '2');
    expect(y0(await r.get('m', 'stable').infer(x()))).toBe(1);
    expect(y0(await r.get('m', 'canary').infer(x()))).toBe(2);
    expect(r.status('m', '1')?.labels).toEqual(['stable']);
  });

  it('uses a resolver to route requests that name no version', async () => {
    const r = new ModelRegistry({
      resolver: (_n, versions, o) => (o?.id === 'sticky' ? versions[0] : undefined),
    });
    r.add(versioned('1', { factor: 1 }));
    r.add(versioned('2', { factor: 2 }));
    expect(y0(await r.get('m', undefined, { id: 'sticky' }).infer(x()))).toBe(1);
    expect(y0(await r.get('m', undefined, { id: 'other' }).infer(x()))).toBe(2);
  });

  it('holds a version in shadow or rejected: no client reaches it; canary and promoted serve', async () => {
    const r = new ModelRegistry();
    r.add(versioned('1', { factor: 1 }));
    r.add(versioned('2', { factor: 2 }));
    r.setLabel('m', 'next', '2');
    const states: string[] = [];
    r.on('state', (s) => states.push(`${s.version}:${s.rollout?.phase ?? '-'}`));
    r.setRollout('m', '2', { phase: 'shadow' });
    expect(y0(await r.infer('m', undefined, x()))).toBe(1);
    expect(() => r.get('m', '2')).toThrow(
      expect.objectContaining({
        code: 'UNAVAILABLE',
        message: 'model "m" version 2 is in shadow, not serving yet',
      }),
    );
    expect(() => r.get('m', 'next')).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
    expect(r.isReady('m', '2')).toBe(false);
    r.setRollout('m', '2', {
      phase: 'rejected',
      reason: 'agreement 0.5 < 0.99',
      figures: { agreement: 0.5 },
    });
    expect(r.status('m', '2')).toMatchObject({
      ready: false,
      rollout: { phase: 'rejected', reason: 'agreement 0.5 < 0.99', figures: { agreement: 0.5 } },
    });
    expect(() => r.get('m', '2')).toThrow(/version 2 is rejected: agreement 0.5 < 0.99/);
    r.setRollout('m', '2', { phase: 'canary', weight: 5 });
    expect(y0(await r.infer('m', '2', x()))).toBe(2);
    r.setRollout('m', '2', undefined);
    expect(y0(await r.infer('m', undefined, x()))).toBe(2);
    expect(r.status('m', '2')?.rollout).toBeUndefined();
    expect(states).toEqual(['2:shadow', '2:rejected', '2:canary', '2:-']);
    expect(() => r.setRollout('m', '9', { phase: 'shadow' })).toThrow(
      expect.objectContaining({ code: 'NOT_FOUND' }),
    );
  });

  it('tracks loading versions; a failed load leaves the others serving', async () => {
    const r = new ModelRegistry();
    const errors: string[] = [];
    r.on('error', (e, _n, v) => errors.push(`${v}:${e.message}`));
    r.add(versioned('1'));
    let finish!: (m: Model) => void;
    const loading = r.load('m', '2', () => new Promise<Model>((res) => (finish = res)));
    expect(r.status('m', '2')?.state).toBe('loading');
    expect(r.isReady()).toBe(false);
    expect(r.get('m').version).toBe('1');
    finish(versioned('2'));
    await loading;
    expect(r.get('m').version).toBe('2');
    await expect(r.load('m', '3', async () => Promise.reject(new Error('corrupt file')))).rejects.toThrow(
      'corrupt file',
    );
    expect(r.status('m', '3')).toMatchObject({ state: 'failed', ready: false, error: 'corrupt file' });
    expect(errors).toEqual(['3:corrupt file']);
    expect(r.get('m').version).toBe('2');
    expect(() => r.get('m', '3')).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
    // A failed version can be loaded again.
    await r.load('m', '3', async () => versioned('3'));
    expect(r.get('m').version).toBe('3');
  });

  it('remove() stops new requests, lets in-flight ones finish, then disposes once', async () => {
    const r = new ModelRegistry();
    const m = versioned('1', { delayMs: 40 });
    r.add(m);
    const handle = r.get('m');
    const inflight = handle.infer(x());
    await new Promise((res) => setTimeout(res, 5));
    const removing = r.remove('m', '1');
    expect(r.status('m', '1')?.state).toBe('unloading');
    await expect(handle.infer(x())).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(m.disposed).toBe(0);
    await expect(inflight).resolves.toBeDefined();
    await removing;
    expect(m.disposed).toBe(1);
    expect(r.names()).toEqual([]);
    expect(() => r.get('m')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
  });

  it('close() turns not ready at once, drains every model and disposes it', async () => {
    const r = new ModelRegistry();
    const a = versioned('1', { delayMs: 30 });
    const b = versioned('2');
    r.add(a);
    r.add(b);
    const inflight = r.get('m', '1').infer(x());
    await new Promise((res) => setTimeout(res, 5));
    const closing = r.close();
    expect(r.isReady()).toBe(false);
    expect(r.isReady('m', '2')).toBe(false);
    expect(() => r.get('m', '2')).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
    await expect(inflight).resolves.toBeDefined();
    await closing;
    expect([a.disposed, b.disposed]).toEqual([1, 1]);
    expect(() => r.get('m')).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
    expect(() => r.add(versioned('3'))).toThrow(expect.objectContaining({ code: 'UNAVAILABLE' }));
  });

  it('refuses names that could escape a path, duplicates, and bad labels', () => {
    const r = new ModelRegistry();
    for (const bad of ['../etc', 'a/b', '', '.hidden', 'a\\b']) {
      expect(() => r.add({ ...versioned('1'), name: bad })).toThrow(
        expect.objectContaining({ code: 'INVALID_ARGUMENT' }),
      );
    }
    r.add(versioned('1'));
    expect(() => r.add(versioned('1'))).toThrow('already registered');
    expect(() => r.setLabel('m', '../x', '1')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('emits state changes', () => {
    const r = new ModelRegistry();
    const states: string[] = [];
    r.on('state', (s) => states.push(`${s.version}:${s.state}`));
    r.add(versioned('1'));
    expect(states).toEqual(['1:ready']);
  });
});
