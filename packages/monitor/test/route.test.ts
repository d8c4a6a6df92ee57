import { pipeline } from '@mlserve/core';
import { describe, expect, it } from 'vitest';
import { columns } from '../src/extractors.js';
import { monitor } from '../src/monitor.js';
import { profile } from '../src/profile.js';
import { feedbackAction, feedbackHandler, MAX_FEEDBACK_BATCH } from '../src/route.js';
import { scoresModel, x } from './scores-model.js';

const model = scoresModel;

describe('feedbackHandler', () => {
  it('routes single and batched labels to the model monitor and counts what joined', async () => {
    const ex = [columns('x', ['x'])];
    const ref = await profile([{ inputs: x(0.5) }], { extractors: ex });
    const watch = monitor({ profile: ref, extractors: ex, feedback: { output: 'scores', sampleRate: 1 } });
    const served = pipeline(model, watch);
    for (let i = 0; i < 3; i++) await served.infer(x(i === 1 ? 0.9 : 0.1), { id: `r${i}` });
    const handle = feedbackHandler({ tab: watch });
    expect(await handle('tab', undefined, { id: 'r0', label: 1 })).toEqual({
      joined: 1,
      unmatched: 0,
      skipped: 0,
    });
    expect(
      await handle('tab', '1', {
        labels: [
          { id: 'r1', label: 0 },
          { id: 'r2', label: 0 },
          { id: 'nope', label: 0 },
        ],
      }),
    ).toEqual({ joined: 2, unmatched: 1, skipped: 0 });
    expect(watch.quality().accuracy!.estimate).toBeCloseTo(2 / 3, 12);
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (err) {
        return `${(err as { code?: string }).code}: ${(err as Error).message}`;
      }
      return 'no error';
    };
    expect(code(() => handle('other', undefined, { id: 'r0', label: 1 }))).toMatch(/^NOT_FOUND: .*"other"/);
    expect(code(() => handle('tab', undefined, [1]))).toMatch(/^INVALID_ARGUMENT: .*JSON object/);
    expect(code(() => handle('tab', undefined, { label: 1 }))).toMatch(/^INVALID_ARGUMENT: .*"id"/);
    expect(code(() => handle('tab', undefined, { id: 'r0' }))).toMatch(/^INVALID_ARGUMENT: .*missing/);
    expect(code(() => handle('tab', undefined, { id: 'r0', label: 'dog' }))).toMatch(
      /^INVALID_ARGUMENT: .*unknown class/,
    );
    expect(code(() => handle('tab', undefined, { labels: 'x' }))).toMatch(/must be an array/);
    expect(code(() => handle('tab', undefined, { labels: [{ id: 'a', label: 0 }, { id: 5 }] }))).toMatch(
      /^INVALID_ARGUMENT: labels\[1\]: .*\(1 before it applied\)/,
    );
    // The same in the shape of the servers' model actions.
    await served.infer(x(0.9), { id: 'r9' });
    expect(await feedbackAction({ tab: watch })({ name: 'tab', body: { id: 'r9', label: 0 } })).toEqual({
      joined: 1,
      unmatched: 0,
      skipped: 0,
    });
    const many = Array.from({ length: MAX_FEEDBACK_BATCH + 1 }, (_, i) => ({ id: `m${i}`, label: 0 }));
    expect(code(() => handle('tab', undefined, { labels: many }))).toMatch(/at most 10000/);
  });
});
