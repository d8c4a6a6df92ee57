import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { readRecords, renderReport } from '../src/index.js';

/**
 * Full mode (`npm run test:reliability`) writes the published RELIABILITY.md at the repository
 * root; CI mode (part of `npm test`) writes its shorter report under node_modules/.cache, so
 * running the tests never rewrites a committed file. RELIABILITY_REPORT overrides both.
 */
function reportPath(mode: 'full' | 'ci'): string {
  if (process.env.RELIABILITY_REPORT) return process.env.RELIABILITY_REPORT;
  if (mode === 'full') return fileURLToPath(new URL('../../../RELIABILITY.md', import.meta.url));
  return fileURLToPath(
    new URL('../../../node_modules/.cache/mlserve-reliability/RELIABILITY.md', import.meta.url),
  );
}

/**
 * Hands every test file a shared results directory (test files run in their own processes), and
 * once they are all done, writes RELIABILITY.md from what they recorded.
 */
export default function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'mlserve-reliability-'));
  const mode = process.env.RELIABILITY_FULL === '1' ? 'full' : 'ci';
  project.provide('resultsDir', dir);
  project.provide('mode', mode);
  const startedAt = new Date();
  return () => {
    const records = readRecords(dir);
    const cpu = cpus()[0]?.model ?? 'unknown CPU';
    const environment = `Node ${process.version}, ${process.platform}/${process.arch}, ${cpus().length} cores (${cpu}), ${Math.round(totalmem() / 2 ** 30)} GiB`;
    const REPORT = reportPath(mode);
    if (records.cases.length > 0) {
      mkdirSync(dirname(REPORT), { recursive: true });
      writeFileSync(
        REPORT,
        renderReport(records, { mode, startedAt, durationMs: Date.now() - startedAt.getTime(), environment }),
      );
      process.stdout.write(`\nreliability: wrote ${REPORT} (${records.cases.length} cases)\n`);
    }
    rmSync(dir, { recursive: true, force: true });
  };
}
