import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cell, readRecords, recordCase, recordNote, renderReport } from '../src/report.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'mlserve-report-test-'));
  dirs.push(d);
  return d;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const meta = {
  mode: 'ci',
  startedAt: new Date('2026-01-01T00:00:00Z'),
  durationMs: 61_000,
  environment: 'test box',
};

describe('report', () => {
  it('reads back what was recorded, cases and notes apart, in order', () => {
    const dir = tempDir();
    recordCase(dir, { area: 'Faults', name: 'a', adapter: 'fastify', sent: 's', got: 'g', result: 'pass' });
    recordNote(dir, { area: 'Overload', title: 't', markdown: '| x |' });
    recordCase(dir, { area: 'Faults', name: 'b', adapter: 'express', sent: 's', got: 'g', result: 'fail' });
    const { cases, notes } = readRecords(dir);
    expect(cases.map((c) => c.name)).toEqual(['a', 'b']);
    expect(cases[0]).toEqual({
      area: 'Faults',
      name: 'a',
      adapter: 'fastify',
      sent: 's',
      got: 'g',
      result: 'pass',
    });
    expect(notes).toEqual([{ area: 'Overload', title: 't', markdown: '| x |' }]);
  });

  it('reads nothing from a directory with no records', () => {
    expect(readRecords(tempDir())).toEqual({ cases: [], notes: [] });
  });

  it('renders sections in the fixed order, counts failures and marks them', () => {
    const md = renderReport(
      {
        cases: [
          {
            area: 'Security',
            name: 'token',
            adapter: 'express',
            sent: 'no header',
            got: '401',
            result: 'pass',
          },
          {
            area: 'Hostile input',
            name: 'bad json',
            adapter: 'fastify',
            sent: '{',
            got: '400',
            result: 'fail',
          },
        ],
        notes: [{ area: 'Overload', title: 'RSS', markdown: '| t | MiB |' }],
      },
      meta,
    );
    expect(md.indexOf('## Hostile input')).toBeLessThan(md.indexOf('## Overload'));
    expect(md.indexOf('## Overload')).toBeLessThan(md.indexOf('## Security'));
    expect(md).toContain('Cases: 2, passed 1, failed 1');
    expect(md).toContain('| bad json | fastify | { | 400 | **FAIL** |');
    expect(md).toContain('### RSS\n\n| t | MiB |');
    expect(md).toContain('61 s, mode `ci`');
    expect(md).not.toContain('## Faults');
  });

  it('escapes pipes and newlines in cells and shortens long text', () => {
    expect(cell('a|b\nc')).toBe('a\\|b c');
    expect(cell('')).toBe('-');
    const long = cell('x'.repeat(500), 50);
    expect(long).toHaveLength(50);
    expect(long.endsWith('…')).toBe(true);
  });
});
