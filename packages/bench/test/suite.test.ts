import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { requireService } from '@mlserve/test-utils';
import { describe, expect, it } from 'vitest';

// The http scenario drives its servers with wrk; cache and features need a real redis-server.
const haveWrk = requireService('wrk', 'apt-get install -y wrk');
const haveRedis = requireService('redis-server', 'apt-get install -y redis-server');

const here = fileURLToPath(new URL('../src/', import.meta.url));

/** Every scenario's title, as the runner lists them (the suite must print a section for each). */
function titles(): string[] {
  const out = spawnSync(process.execPath, ['--import', 'tsx', 'run.ts', '--list'], {
    cwd: here,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (out.status !== 0) throw new Error(`run.ts --list failed: ${out.stderr}`);
  return out.stdout
    .trim()
    .split('\n')
    .map((line) => line.slice(line.indexOf('\t') + 1));
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
    // The six scenarios at least, whatever else the packages add.
    expect(expected.length).toBeGreaterThanOrEqual(6);
    for (const name of [
      'Overhead',
      'Dynamic batching',
      'Worker pool',
      'HTTP',
      'Response cache',
      'Backends',
    ]) {
      expect(
        expected.some((t) => t.startsWith(name)),
        name,
      ).toBe(true);
    }
    for (const title of expected) {
      expect(out.stdout, title).toContain(`## ${title}`);
    }
    expect(out.stdout).not.toContain('This scenario failed');
    // Every section carries at least one ratio table.
    const [headlines, ...sections] = out.stdout.split(/^## /m).slice(1);
    expect(headlines).toMatch(/^Headlines\n/);
    expect(sections.length).toBe(expected.length);
    for (const s of sections) expect(s, s.slice(0, 80)).toContain('(baseline)');
  });
});
