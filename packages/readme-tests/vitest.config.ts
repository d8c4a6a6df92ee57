import { packageProject } from '../../vitest.shared.ts';

// Packs every public package once, typechecks every README block in one tsc run, then runs the
// runnable blocks a few at a time (each its own node process).
export default packageProject('readme-tests', {
  testTimeout: 90_000,
  hookTimeout: 120_000,
  maxConcurrency: 3,
});
