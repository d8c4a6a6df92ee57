import { defineProject } from 'vitest/config';

// The `repo` project: checks over the whole workspace (public API reports, declared imports, the
// architecture page). The API reports read the built .d.ts: `npm test` builds first.
export default defineProject({
  test: {
    name: 'repo',
    environment: 'node',
    include: ['test/**/*.test.mjs'],
    testTimeout: 120_000,
  },
});
