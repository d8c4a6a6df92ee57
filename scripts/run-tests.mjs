#!/usr/bin/env node
// Runs every vitest project, then prints one plain closing line ("Tests: N passed, N failed,
// N skipped") that any CI can read, and exits with vitest's status.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const out = join('node_modules', '.cache', 'mlserve-tests');
mkdirSync(out, { recursive: true });
const report = join(out, 'vitest.json');
rmSync(report, { force: true });

const args = [
  'vitest',
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${report}`,
  ...process.argv.slice(2),
];
const result = spawnSync('npx', args, { stdio: 'inherit' });

let summary = 'Tests: no result file was written';
try {
  const r = JSON.parse(readFileSync(report, 'utf8'));
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  summary = `Tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`;
} catch {}
console.log(`\n${summary}`);
process.exit(result.status ?? 1);
