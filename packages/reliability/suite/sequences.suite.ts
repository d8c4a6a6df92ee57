/**
 * Stateful sequences over HTTP on both adapters: a JavaScript accumulator (`statefulModel`) keeps a
 * running total per sequence. Unknown and ended sequences are refused (400 FAILED_PRECONDITION),
 * starts beyond the limit are 429, an idle sequence's state is freed and its slot reused, many
 * sequences interleaved never mix state, and hostile sequence ids are clear 4xx errors.
 */
import { type Model, ModelRegistry, statefulModel } from '@mlserve/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADAPTERS,
  type Adapter,
  check,
  describeReply,
  errorCode,
  type Reply,
  type Running,
  send,
  sleep,
  startServer,
} from './helpers.js';

const AREA = 'Stateful sequences';
const JSON_CT = { 'content-type': 'application/json' };
const IDLE_MS = 500;

function accumulator(name: string, maxSequences: number, idleTimeoutMs = IDLE_MS): Model {
  return statefulModel<number>({
    name,
    version: '1',
    inputs: [{ name: 'x', type: 'float32', dims: [1] }],
    outputs: [{ name: 'total', type: 'float32', dims: [1] }],
    initialState: () => 0,
    infer: ({ x }, total) => {
      const next = total + (x!.data as Float32Array)[0]!;
      return {
        outputs: { total: { type: 'float32', dims: [1], data: new Float32Array([next]) } },
        state: next,
      };
    },
    idleTimeoutMs,
    maxSequences,
  });
}

describe.each(ADAPTERS)('stateful sequences (%s)', (adapter: Adapter) => {
  let server: Running;
  let small: Model;
  let n = 0;

  beforeAll(async () => {
    const registry = new ModelRegistry();
    small = accumulator('acc', 3);
    registry.add(small);
    // Long idle timeout: 40 sequences at once on a loaded machine may wait longer than 500 ms.
    registry.add(accumulator('wide', 100, 60_000));
    server = await startServer(adapter, { registry });
  });
  afterAll(() => server?.close());

  /** One request of a sequence; returns the reply and the running total (when 200). */
  async function step(
    model: string,
    id: unknown,
    x: number,
    flags: { start?: boolean; end?: boolean } = {},
  ): Promise<{ reply: Reply; total?: number }> {
    const parameters: Record<string, unknown> = { sequence_id: id };
    if (flags.start) parameters.sequence_start = true;
    if (flags.end) parameters.sequence_end = true;
    const reply = await send(server.url, `/v2/models/${model}/infer`, {
      headers: JSON_CT,
      body: JSON.stringify({ parameters, inputs: [{ name: 'x', datatype: 'FP32', shape: [1], data: [x] }] }),
    });
    const total =
      reply.status === 200
        ? (reply.json as { outputs: { data: number[] }[] }).outputs[0]!.data[0]
        : undefined;
    return { reply, ...(total !== undefined && { total }) };
  }
  const fresh = () => `${adapter}-${n++}`;
  const open = () => (small.stats!() as { sequences: { open: number; expired: number } }).sequences;

  it('refuses a sequence that was never started, and one that has ended', async () => {
    await check(
      {
        area: AREA,
        name: 'unknown and ended sequences',
        adapter,
        sent: 'a request continuing sequence "never-started"; then start x=2, x=3, end x=4, and one more after the end',
      },
      async (row) => {
        const unknown = await step('acc', 'never-started', 1);
        const id = fresh();
        const a = await step('acc', id, 2, { start: true });
        const b = await step('acc', id, 3);
        const c = await step('acc', id, 4, { end: true });
        const after = await step('acc', id, 5);
        row.got = `${describeReply(unknown.reply)}; totals ${a.total}, ${b.total}, ${c.total}; after the end ${describeReply(after.reply)}`;
        expect(unknown.reply.status).toBe(400);
        expect(errorCode(unknown.reply)).toBe('FAILED_PRECONDITION');
        expect([a.total, b.total, c.total]).toEqual([2, 5, 9]);
        expect(after.reply.status).toBe(400);
        expect(errorCode(after.reply)).toBe('FAILED_PRECONDITION');
      },
    );
  });

  it('answers 429 beyond the open-sequence limit, and frees idle sequences', async () => {
    await check(
      {
        area: AREA,
        name: 'limit on open sequences, idle timeout',
        adapter,
        sent: `3 sequences started on a model limited to 3, then a 4th start; then ${IDLE_MS * 3} ms idle (timeout ${IDLE_MS} ms), the old ones continued, a new one started`,
      },
      async (row) => {
        // Whatever earlier cases left open expires first.
        await sleep(IDLE_MS * 3);
        const ids = [fresh(), fresh(), fresh()];
        const starts = await Promise.all(ids.map((id) => step('acc', id, 1, { start: true })));
        const fourth = await step('acc', fresh(), 1, { start: true });
        const openBefore = open().open;
        const stillFine = await step('acc', ids[0], 1);
        await sleep(IDLE_MS * 3);
        const expiredBefore = open().expired;
        const stale = await step('acc', ids[1], 1);
        const openAfter = open().open;
        const next = await step('acc', fresh(), 7, { start: true });
        row.got =
          `starts ${starts.map((s) => s.reply.status).join(', ')}; 4th ${describeReply(fourth.reply)}; ` +
          `open ${openBefore}; continuing one ${stillFine.reply.status} (total ${stillFine.total}); after the idle time: ` +
          `continuing ${describeReply(stale.reply)}, open ${openAfter}, expired ${expiredBefore}; a new start ${next.reply.status} (total ${next.total})`;
        expect(starts.every((s) => s.reply.status === 200)).toBe(true);
        expect(fourth.reply.status).toBe(429);
        expect(errorCode(fourth.reply)).toBe('RESOURCE_EXHAUSTED');
        expect(openBefore).toBe(3);
        expect(stillFine.total).toBe(2);
        expect(stale.reply.status).toBe(400);
        expect(errorCode(stale.reply)).toBe('FAILED_PRECONDITION');
        expect(expiredBefore).toBeGreaterThanOrEqual(3);
        expect(openAfter).toBe(0);
        expect(next.total).toBe(7);
      },
    );
  });

  it('keeps 40 interleaved sequences apart', async () => {
    await check(
      {
        area: AREA,
        name: '40 sequences interleaved',
        adapter,
        sent: '40 sequences sending 10 requests each concurrently (sequence k adds k each time)',
      },
      async (row) => {
        const ids = Array.from({ length: 40 }, () => fresh());
        const errors: string[] = [];
        const totals = await Promise.all(
          ids.map(async (id, k) => {
            const seen: (number | undefined)[] = [];
            for (let i = 0; i < 10; i++) {
              const r = await step('wide', id, k, { start: i === 0, end: i === 9 });
              seen.push(r.total);
              if (r.total === undefined) errors.push(describeReply(r.reply));
            }
            return seen;
          }),
        );
        const wrong = totals.filter((seen, k) => seen.some((t, i) => t !== k * (i + 1))).length;
        row.got = `${40 - wrong}/40 sequences saw exactly their own running totals${errors.length ? `; ${errors.length} errors, first: ${errors[0]}` : ''}`;
        expect(wrong).toBe(0);
      },
    );
  });

  const hostile: { name: string; id: unknown; sent: string }[] = [
    { name: 'a boolean sequence id', id: true, sent: '`"sequence_id": true`' },
    { name: 'an object as sequence id', id: { a: 1 }, sent: '`"sequence_id": {"a": 1}`' },
    {
      name: 'a 64 KiB sequence id',
      id: 's'.repeat(64 * 1024),
      sent: '`"sequence_id"` of 64 KiB, continuing',
    },
  ];
  for (const h of hostile) {
    it(`refuses ${h.name}`, async () => {
      await check({ area: AREA, name: h.name, adapter, sent: h.sent }, async (row) => {
        const r = await step('acc', h.id, 1);
        const ok = await step('wide', fresh(), 1, { start: true, end: true });
        row.got = `${describeReply(r.reply)}; next request ${ok.reply.status}`;
        expect(r.reply.status).toBeGreaterThanOrEqual(400);
        expect(r.reply.status).toBeLessThan(500);
        expect(errorCode(r.reply)).toBeTruthy();
        expect(ok.total).toBe(1);
      });
    });
  }
});
