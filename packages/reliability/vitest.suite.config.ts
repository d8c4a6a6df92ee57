import { packageProject } from '../../vitest.shared.ts';

/**
 * The reliability suite (`npm run test:reliability`): one file at a time, so the overload soak and
 * the fault cases do not compete with each other for the machine's cores. The global setup collects
 * every case each file records and writes the report (see global-setup.ts for where).
 */
export default packageProject('reliability-suite', {
  include: ['suite/**/*.suite.ts'],
  globalSetup: ['suite/global-setup.ts'],
  fileParallelism: false,
  testTimeout: 120_000,
  hookTimeout: 120_000,
});
