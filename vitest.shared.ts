import { fileURLToPath } from 'node:url';
import { defineProject, type UserWorkspaceConfig } from 'vitest/config';

const packagesDir = fileURLToPath(new URL('./packages/', import.meta.url));

/**
 * Tests run against source: `@mlserve/x` resolves to `packages/x/src/index.ts` and
 * `@mlserve/x/sub` to `packages/x/src/sub.ts`, so no build is needed to test a change.
 */
export function packageProject(name: string, overrides: UserWorkspaceConfig['test'] = {}) {
  return defineProject({
    resolve: {
      alias: [
        { find: /^@mlserve\/([a-z0-9-]+)$/, replacement: `${packagesDir}$1/src/index.ts` },
        { find: /^@mlserve\/([a-z0-9-]+)\/([a-z0-9-]+)$/, replacement: `${packagesDir}$1/src/$2.ts` },
      ],
    },
    test: {
      name,
      environment: 'node',
      include: ['test/**/*.test.ts'],
      testTimeout: 30_000,
      hookTimeout: 60_000,
      ...overrides,
    },
  });
}
