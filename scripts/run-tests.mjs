#!/usr/bin/env node
// Runs every vitest project, then the reliability suite (CI mode: short soaks), then (under CI, or
// with MLSERVE_DEPLOY_TESTS=1) the deployment suite (the container image built and run on a real
// daemon, replicas behind haproxy: minutes, and root for dockerd), then prints one
// plain closing line ("Tests: N passed, N failed, N skipped") that any CI can read, and exits
// non-zero if either run failed. Extra arguments go to the first run only.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const out = join(process.cwd(), 'node_modules', '.cache', 'mlserve-tests');
mkdirSync(out, { recursive: true });

const runs = [
  { name: 'projects', args: process.argv.slice(2) },
  { name: 'reliability', args: ['--root', 'packages/reliability', '--config', 'vitest.suite.config.ts'] },
];
if (process.env.CI || process.env.MLSERVE_DEPLOY_TESTS === '1') {
  runs.push({
    name: 'deploy',
    args: ['--root', 'packages/deploy-tests', '--config', 'vitest.suite.config.ts'],
  });
} else {
  console.log(
    'deploy suite (docker image, haproxy replicas): not run; CI runs it, or MLSERVE_DEPLOY_TESTS=1 npm test, or npm run test:deploy',
  );
}
if (process.argv.length > 2) runs.splice(1);

let status = 0;
const totals = { passed: 0, failed: 0, skipped: 0 };
for (const run of runs) {
  const report = join(out, `${run.name}.json`);
  rmSync(report, { force: true });
  const args = [
    'vitest',
    'run',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${report}`,
    ...run.args,
  ];
  const result = spawnSync('npx', args, { stdio: 'inherit' });
  if (result.status !== 0) status = result.status ?? 1;
  try {
    const r = JSON.parse(readFileSync(report, 'utf8'));
    totals.passed += r.numPassedTests;
    totals.failed += r.numFailedTests;
    totals.skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  } catch {
    console.error(`${run.name}: vitest wrote no result file`);
    status ||= 1;
  }
}
console.log(`\nTests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(status);
