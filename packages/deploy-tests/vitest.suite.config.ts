import { packageProject } from '../../vitest.shared.ts';

/**
 * The deployment suite (`npm run test:deploy`; CI runs it from `npm test`): the image built and run
 * on a real container daemon, three replicas behind a real haproxy. One file at a time: they build,
 * start servers and drive load on the same cores.
 */
export default packageProject('deploy-suite', {
  include: ['suite/**/*.suite.ts'],
  fileParallelism: false,
  testTimeout: 900_000,
  hookTimeout: 1_800_000,
});
