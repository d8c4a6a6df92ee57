// `npm pack` of several workspace packages in one call, shared by scripts/check-packages.mjs and
// packages/readme-tests (both check what a user would install, not the workspace's dist).
import { execFileSync } from 'node:child_process';
import { relative } from 'node:path';

/**
 * Packs the workspace packages in `dirs` into `destination` (lifecycle scripts off) and returns
 * what `npm pack --json` reports: one entry per tarball, with its package `name`, `filename`
 * (in `destination`) and `files`. Throws with npm's stderr when npm fails.
 */
export function packWorkspaces(root, dirs, destination) {
  const out = execFileSync(
    'npm',
    [
      'pack',
      '--json',
      '--ignore-scripts',
      '--pack-destination',
      destination,
      ...dirs.flatMap((dir) => ['-w', relative(root, dir)]),
    ],
    { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 },
  );
  return JSON.parse(out);
}
