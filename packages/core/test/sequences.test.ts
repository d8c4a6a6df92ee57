import { describe, expect, it } from 'vitest';
import type { ServeError } from '../src/errors.js';
import { fromFunction } from '../src/function-model.js';
import { pipeline } from '../src/pipeline.js';
import { SequenceStore, sequences, statefulModel } from '../src/sequences.js';
import type { SequenceInfo, Tensors } from '../src/types.js';

const f32 = (dims: number[], values: number[]) => ({
  type: 'float32' as const,
  dims,
  data: new Float32Array(values),
});

function accumulator(
  opts: Parameters<typeof statefulModel<number>>[0] extends infer O ? Partial<O> : never = {},
) {
  return statefulModel<number>({
    name: 'acc',
    inputs: [{ name: 'x', type: 'float32', dims: [1] }],
    outputs: [{ name: 'total', type: 'float32', dims: [1] }],
    initialState: () => 0,
    infer: async ({ x }, total) => {
      const next = total + (x!.data as Float32Array)[0]!;
      return { outputs: { total: f32([1], [next]) }, state: next };
    },
    ...opts,
  });
}

const add = (m: ReturnType<typeof accumulator>, v: number, sequence?: SequenceInfo) =>
  m.infer({ x: f32([1], [v]) }, sequence ? { sequence } : {}).then((o) => o.total!.data[0]);

async function rejection(p: Promise<unknown>): Promise<ServeError> {
  try {
    await p;
  } catch (err) {
    return err as ServeError;
  }
  throw new Error('expected a rejection');
}

describe('statefulModel', () => {
  it('keeps state per sequence id, interleaved, and frees it at end', async () => {
    const m = accumulator();
    expect(await add(m, 1, { id: 1, start: true })).toBe(1);
    expect(await add(m, 10, { id: 'one', start: true })).toBe(10);
    expect(await add(m, 2, { id: 1 })).toBe(3);
    expect(await add(m, 20, { id: 'one' })).toBe(30);
    // 1n and 1 are the same sequence; '1' would be another.
    expect(await add(m, 3, { id: 1n, end: true })).toBe(6);
    expect(m.stats?.()).toMatchObject({ sequences: { open: 1, started: 2, ended: 1 } });
    const e = await rejection(add(m, 1, { id: 1 }));
    expect(e.code).toBe('FAILED_PRECONDITION');
    expect(e.status).toBe(400);
    expect(e.message).toMatch(/sequence 1 of model "acc" is not open.*sequence_start/);
    await m.dispose();
  });

  it('echoes at most the first 64 characters of a long sequence id, with its length', async () => {
    const m = accumulator();
    const e = await rejection(add(m, 1, { id: 's'.repeat(64 * 1024) }));
    expect(e.code).toBe('FAILED_PRECONDITION');
    expect(e.message).toContain(
      `sequence "${'s'.repeat(64)}"... (65536 characters) of model "acc" is not open`,
    );
    expect(e.message.length).toBeLessThan(400);
    // A short one is quoted whole, as before.
    expect((await rejection(add(m, 1, { id: 'abc' }))).message).toMatch(/^sequence "abc" of model "acc"/);
    await m.dispose();
  });

  it('runs a sequence in order even when its requests arrive together', async () => {
    const seen: number[] = [];
    const m = statefulModel<number[]>({
      name: 'order',
      inputs: [{ name: 'x', type: 'float32', dims: [1] }],
      outputs: [{ name: 'n', type: 'float32', dims: [1] }],
      initialState: () => [],
      infer: async ({ x }, list) => {
        const v = (x!.data as Float32Array)[0]!;
        // Later requests finish sooner if nothing orders them.
        await new Promise((r) => setTimeout(r, 20 - v * 2));
        seen.push(v);
        return { outputs: { n: f32([1], [list.length]) }, state: [...list, v] };
      },
    });
    const results = await Promise.all(
      [0, 1, 2, 3, 4].map((v) =>
        m.infer({ x: f32([1], [v]) }, { sequence: { id: 9, start: v === 0, end: v === 4 } }),
      ),
    );
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(results.map((r) => r.n!.data[0])).toEqual([0, 1, 2, 3, 4]);
    await m.dispose();
  });

  it('start on an open sequence restarts it; a request without a sequence is a sequence of one', async () => {
    const freed: number[] = [];
    const m = accumulator({ onFree: (s: number) => freed.push(s) });
    await add(m, 5, { id: 2, start: true });
    expect(await add(m, 1, { id: 2, start: true })).toBe(1);
    expect(freed).toEqual([5]);
    expect(await add(m, 7)).toBe(7);
    expect(await add(m, 7)).toBe(7);
    expect(m.stats?.()).toMatchObject({ sequences: { open: 1, started: 2 } });
    await m.dispose();
    expect(freed).toEqual([5, 7, 7, 1]);
    expect((await rejection(add(m, 1, { id: 2 }))).code).toBe('UNAVAILABLE');
  });

  it("unsequenced: 'reject' refuses a request without a sequence", async () => {
    const m = accumulator({ unsequenced: 'reject' });
    const e = await rejection(add(m, 1));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/stateful/);
    await m.dispose();
  });

  it('refuses a start beyond maxSequences with 429 and accepts one again after an end', async () => {
    const m = accumulator({ maxSequences: 2 });
    await add(m, 1, { id: 'a', start: true });
    await add(m, 1, { id: 'b', start: true });
    const e = await rejection(add(m, 1, { id: 'c', start: true }));
    expect(e.code).toBe('RESOURCE_EXHAUSTED');
    expect(e.status).toBe(429);
    expect(e.message).toMatch(/2 sequences are open/);
    // Open sequences keep working.
    expect(await add(m, 1, { id: 'a', end: true })).toBe(2);
    expect(await add(m, 4, { id: 'c', start: true })).toBe(4);
    expect(m.stats?.()).toMatchObject({ sequences: { open: 2, rejected: 1, ended: 1 } });
    await m.dispose();
  });

  it('frees a sequence that sat idle longer than idleTimeoutMs, never one with a request running', async () => {
    const freed: number[] = [];
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const m = statefulModel<number>({
      name: 'acc',
      inputs: [{ name: 'x', type: 'float32', dims: [1] }],
      outputs: [{ name: 'total', type: 'float32', dims: [1] }],
      initialState: () => 0,
      infer: async ({ x }, total) => {
        const v = (x!.data as Float32Array)[0]!;
        if (v === 100) await gate;
        return { outputs: { total: f32([1], [total + v]) }, state: total + v };
      },
      idleTimeoutMs: 30,
      onFree: (s: number) => freed.push(s),
    });
    const run = (v: number, sequence: SequenceInfo) =>
      m.infer({ x: f32([1], [v]) }, { sequence }).then((o) => o.total!.data[0]);
    await run(3, { id: 'idle', start: true });
    await run(4, { id: 'busy', start: true });
    const held = run(100, { id: 'busy' });
    const until = Date.now() + 10_000;
    while (freed.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    expect(freed).toEqual([3]);
    // Idle far longer than 30 ms, but with a request running: still open.
    await new Promise((r) => setTimeout(r, 100));
    expect(freed).toEqual([3]);
    release();
    expect(await held).toBe(104);
    expect(await run(1, { id: 'busy', end: true })).toBe(105);
    expect((await rejection(run(1, { id: 'idle' }))).code).toBe('FAILED_PRECONDITION');
    expect(m.stats?.()).toMatchObject({ sequences: { expired: 1, ended: 1, open: 0 } });
    await m.dispose();
  });

  it('a failed request leaves the state as it was', async () => {
    const m = statefulModel<number>({
      name: 'fragile',
      inputs: [{ name: 'x', type: 'float32', dims: [1] }],
      outputs: [{ name: 'total', type: 'float32', dims: [1] }],
      initialState: () => 0,
      infer: ({ x }, total) => {
        const v = (x!.data as Float32Array)[0]!;
        if (v < 0) throw new Error('negative');
        return { outputs: { total: f32([1], [total + v]) }, state: total + v };
      },
    });
    await m.infer({ x: f32([1], [2]) }, { sequence: { id: 1, start: true } });
    const e = await rejection(m.infer({ x: f32([1], [-1]) }, { sequence: { id: 1 } }));
    expect(e.code).toBe('INTERNAL');
    const out = await m.infer({ x: f32([1], [3]) }, { sequence: { id: 1, end: true } });
    expect(out.total!.data[0]).toBe(5);
    await m.dispose();
  });

  it('checks its options', () => {
    expect(() => accumulator({ maxSequences: 0 })).toThrow(/maxSequences/);
    expect(() => accumulator({ idleTimeoutMs: -1 })).toThrow(/idleTimeoutMs/);
    expect(() => new SequenceStore({ name: 'x', initialState: 1 as never })).toThrow(/initialState/);
  });
});

describe('sequences() middleware: state tensors carried by the server', () => {
  // h_next = h + x; y = 2 * h_next. Batched along dim 0, as a recurrent ONNX model is.
  const calls: Tensors[] = [];
  const recurrent = () =>
    fromFunction({
      name: 'rnn',
      inputs: [
        { name: 'x', type: 'float32', dims: [-1, 2] },
        { name: 'h', type: 'float32', dims: [-1, 2] },
      ],
      outputs: [
        { name: 'y', type: 'float32', dims: [-1, 2] },
        { name: 'h_next', type: 'float32', dims: [-1, 2] },
      ],
      infer: (inputs, opts) => {
        calls.push({ ...inputs, ...(opts.sequence ? { seq: f32([1], [1]) } : {}) });
        const x = inputs.x!.data as Float32Array;
        const h = inputs.h!.data as Float32Array;
        const next = x.map((v, i) => v + h[i]!);
        return {
          y: f32([...inputs.x!.dims], [...next.map((v) => v * 2)]),
          h_next: f32([...inputs.x!.dims], [...next]),
        };
      },
    });

  it('feeds each request the state output of the previous one and hides the state', async () => {
    calls.length = 0;
    const m = pipeline(recurrent(), sequences({ state: [{ input: 'h', output: 'h_next' }] }));
    expect(m.metadata().inputs.map((i) => i.name)).toEqual(['x']);
    expect(m.metadata().outputs.map((o) => o.name)).toEqual(['y']);
    const step = (v: number, sequence: SequenceInfo) => m.infer({ x: f32([1, 2], [v, -v]) }, { sequence });
    expect([...(await step(1, { id: 5, start: true })).y!.data]).toEqual([2, -2]);
    expect([...(await step(1, { id: 6, start: true })).y!.data]).toEqual([2, -2]);
    const out = await step(2, { id: 5, end: true });
    expect(Object.keys(out)).toEqual(['y']);
    expect([...out.y!.data]).toEqual([6, -6]);
    // The inner model was not told the sequence (so a batcher below may merge sequences' rows).
    expect(calls.some((c) => 'seq' in c)).toBe(false);
    expect(m.stats?.()).toMatchObject({ sequences: { open: 1, started: 2, ended: 1 } });
    const e = await rejection(step(1, { id: 5 }));
    expect(e.code).toBe('FAILED_PRECONDITION');
    const sent = await rejection(
      m.infer({ x: f32([1, 2], [0, 0]), h: f32([1, 2], [0, 0]) }, { sequence: { id: 6 } }),
    );
    expect(sent.code).toBe('INVALID_ARGUMENT');
    expect(sent.message).toMatch(/"h" is the sequence state/);
    await m.dispose();
  });

  it('exposeState, forwardSequence, an initial tensor and asked-for outputs', async () => {
    calls.length = 0;
    const m = pipeline(
      recurrent(),
      sequences({
        state: [{ input: 'h', output: 'h_next', initial: f32([1, 2], [10, 10]) }],
        exposeState: true,
        forwardSequence: true,
      }),
    );
    const out = await m.infer({ x: f32([1, 2], [1, 1]) }, { sequence: { id: 1, start: true } });
    expect([...out.h_next!.data]).toEqual([11, 11]);
    const only = await m.infer({ x: f32([1, 2], [1, 1]) }, { sequence: { id: 1 }, outputs: ['y'] });
    expect(Object.keys(only)).toEqual(['y']);
    expect([...only.y!.data]).toEqual([24, 24]);
    expect(calls.every((c) => 'seq' in c)).toBe(true);
    await m.dispose();
  });

  it('refuses a state input or output the model does not have', () => {
    expect(() => pipeline(recurrent(), sequences({ state: [{ input: 'c', output: 'h_next' }] }))).toThrow(
      /no input "c"/,
    );
    expect(() => sequences({ state: [] })).toThrow(/options.state/);
  });
});
