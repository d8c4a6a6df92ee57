import { describe, expect, it } from 'vitest';
import {
  mergeOptions,
  NEVER_ABORTED,
  parametersKey,
  pickOutputs,
  SharedCalls,
  SharedSignal,
} from '../src/index.js';

describe('merging semantics', () => {
  it('parametersKey is equal for equal parameters in any order, and distinguishes types', () => {
    expect(parametersKey({ a: 1, b: 'x' })).toBe(parametersKey({ b: 'x', a: 1 }));
    expect(parametersKey({ a: 1 })).not.toBe(parametersKey({ a: '1' }));
    expect(parametersKey({ a: true })).not.toBe(parametersKey({ a: 'true' }));
    expect(parametersKey(undefined)).toBe('');
    expect(parametersKey({})).toBe('');
  });

  it('mergeOptions takes the latest deadline, highest priority and the union of outputs', () => {
    const m = mergeOptions([
      { deadline: 100, priority: 1, outputs: ['a'] },
      { deadline: 300, priority: 5, outputs: ['b', 'a'] },
      { deadline: 200, outputs: ['c'] },
    ]);
    expect(m).toMatchObject({ deadline: 300, priority: 5 });
    expect(m.outputs?.sort()).toEqual(['a', 'b', 'c']);
  });

  it('mergeOptions: one request without a deadline or outputs means none / all', () => {
    const m = mergeOptions([{ deadline: 100, outputs: ['a'] }, {}]);
    expect(m.deadline).toBeUndefined();
    expect(m.outputs).toBeUndefined();
    expect(m.priority).toBe(0);
  });

  it('pickOutputs gives each caller what it asked for', () => {
    expect(pickOutputs({ a: 1, b: 2 }, ['b'])).toEqual({ b: 2 });
    expect(pickOutputs({ a: 1, b: 2 }, undefined)).toEqual({ a: 1, b: 2 });
  });

  it('SharedSignal aborts only when every waiter has aborted', () => {
    const shared = new SharedSignal();
    const a = new AbortController();
    const b = new AbortController();
    shared.join(a.signal);
    shared.join(b.signal);
    a.abort();
    expect(shared.signal.aborted).toBe(false);
    b.abort();
    expect(shared.signal.aborted).toBe(true);
  });

  it('SharedSignal never aborts while a waiter without a signal remains', () => {
    const shared = new SharedSignal();
    const a = new AbortController();
    shared.join(a.signal);
    shared.join(undefined);
    a.abort();
    expect(shared.signal.aborted).toBe(false);
  });
});

describe('SharedCalls (coalescing)', () => {
  it('runs concurrent calls with one key once, and calls with other keys separately', async () => {
    const calls = new SharedCalls<number>();
    let runs = 0;
    const fn = async () => {
      runs++;
      await new Promise((r) => setTimeout(r, 10));
      return 7;
    };
    const first = calls.run('k', {}, fn).promise;
    expect(calls.has('k')).toBe(true);
    expect(calls.has('other')).toBe(false);
    const results = await Promise.all([
      first,
      calls.run('k', {}, fn).promise,
      calls.run('other', {}, fn).promise,
    ]);
    expect(results).toEqual([7, 7, 7]);
    expect(runs).toBe(2);
    expect(calls.size).toBe(0);
  });

  it('a waiter that aborts is rejected at once; the others still get the result', async () => {
    const calls = new SharedCalls<string>();
    let signal: AbortSignal | undefined;
    let finish!: (v: string) => void;
    const fn = (s: AbortSignal) => {
      signal = s;
      return new Promise<string>((r) => {
        finish = r;
      });
    };
    const a = new AbortController();
    const first = calls.run('k', { signal: a.signal }, fn);
    const second = calls.run('k', {}, fn);
    expect(second.joined).toBe(true);
    a.abort();
    await expect(first.promise).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(signal!.aborted).toBe(false);
    finish('done');
    await expect(second.promise).resolves.toBe('done');
  });

  it('the shared execution is aborted when all waiters are gone (abort or deadline)', async () => {
    const calls = new SharedCalls<string>();
    let signal: AbortSignal | undefined;
    const fn = (s: AbortSignal) => {
      signal = s;
      return new Promise<string>(() => {});
    };
    const a = new AbortController();
    const first = calls.run('k', { signal: a.signal }, fn);
    const second = calls.run('k', { deadline: Date.now() + 20 }, fn);
    a.abort();
    await expect(first.promise).rejects.toMatchObject({ code: 'CANCELLED' });
    await expect(second.promise).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect(signal!.aborted).toBe(true);
  });

  it('a first waiter without signal or deadline pins the call: it gets NEVER_ABORTED, which never aborts', async () => {
    const calls = new SharedCalls<string>();
    const seen: AbortSignal[] = [];
    let finish!: (v: string) => void;
    const fn = (s: AbortSignal) => {
      seen.push(s);
      return new Promise<string>((r) => {
        finish = r;
      });
    };
    const first = calls.run('k', undefined, fn);
    const a = new AbortController();
    const second = calls.run('k', { signal: a.signal }, fn);
    a.abort();
    await expect(second.promise).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(seen).toEqual([NEVER_ABORTED]);
    expect(NEVER_ABORTED.aborted).toBe(false);
    finish('done');
    await expect(first.promise).resolves.toBe('done');
    // A first waiter with a signal (or a deadline) gets a real shared signal.
    const third = calls.run('j', { deadline: Date.now() + 10_000 }, fn);
    expect(seen[1]).not.toBe(NEVER_ABORTED);
    finish('later');
    await expect(third.promise).resolves.toBe('later');
  });

  it('SharedSignal aborts when its last waiter leaves even if nobody read the signal before', () => {
    const shared = new SharedSignal();
    const a = new AbortController();
    shared.join(a.signal);
    a.abort();
    expect(shared.signal.aborted).toBe(true);
    expect(shared.signal.reason).toMatchObject({ code: 'CANCELLED' });
  });

  it('a synchronous throw rejects the waiter; the key is free again before any waiter resumes', async () => {
    const calls = new SharedCalls<string>();
    const boom = calls.run('k', undefined, () => {
      throw new Error('sync');
    });
    await expect(boom.promise).rejects.toThrow('sync');
    expect(calls.size).toBe(0);
    const ok = calls.run('k', undefined, async () => 'v');
    const joined = calls.run('k', undefined, async () => 'never');
    expect(joined.joined).toBe(true);
    await expect(joined.promise.then((v) => [v, calls.has('k')])).resolves.toEqual(['v', false]);
    await expect(ok.promise).resolves.toBe('v');
  });

  it('a failure reaches every waiter', async () => {
    const calls = new SharedCalls<string>();
    const fn = async () => {
      await new Promise((r) => setTimeout(r, 5));
      throw new Error('broken');
    };
    const all = [calls.run('k', {}, fn).promise, calls.run('k', {}, fn).promise];
    for (const p of all) await expect(p).rejects.toThrow('broken');
  });
});
