import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { requireService } from '@mlserve/test-utils';
import { describe, expect, it } from 'vitest';

// The http scenario drives its servers with wrk; cache and features need a real redis-server.
const haveWrk = requireService('wrk', 'apt-get install -y wrk');
const haveRedis = requireService('redis-server', 'apt-get install -y redis-server');

const here = fileURLToPath(new URL('.', import.meta.url));
const scenarioFiles = readdirSync(new URL('./scenarios/', import.meta.url)).filter((f) => f.endsWith('.ts'));

/** Every scenario's title, read from its source (the suite must print a section for each). */
function titles(): string[] {
  return scenarioFiles.map((f) => {
    const src = readFileSync(new URL(`./scenarios/${f}`, import.meta.url), 'utf8');
    const m = /title:\s*\n?\s*'([^']+)'/.exec(src);
    if (!m) throw new Error(`no title in ${f}`);
    return m[1]!;
  });
}

// The whole suite in quick mode, as CI runs it: it must exit 0 and print every scenario's section.
// It writes no report (quick mode prints only) and asserts no speed: figures on a shared CI machine
// mean nothing, what matters is that no scenario rots.
describe.runIf(haveWrk && haveRedis)('bench suite, quick mode', () => {
  it('runs every scenario and prints each one section', { timeout: 300_000 }, () => {
    const out = spawnSync(process.execPath, ['--import', 'tsx', 'run.ts', '--quick'], {
      cwd: here,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      timeout: 290_000,
      env: { ...process.env, NODE_OPTIONS: '' },
    });
    expect(out.error, out.stderr).toBeUndefined();
    expect(out.status, out.stderr.slice(-4000)).toBe(0);
    expect(out.stdout).toContain('# Benchmarks');
    expect(out.stdout).toContain('**Quick mode**');
    const expected = titles();
    expect(expected.length).toBeGreaterThanOrEqual(6);
    for (const title of expected) {
      expect(out.stdout, title).toContain(`## ${title}`);
    }
    expect(out.stdout).not.toContain('This scenario failed');
    // Every section carries at least one ratio table.
    const sections = out.stdout.split(/^## /m).slice(1);
    expect(sections.length).toBe(expected.length);
    for (const s of sections) expect(s, s.slice(0, 80)).toContain('(baseline)');
  });
});
