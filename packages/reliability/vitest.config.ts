import { packageProject } from '../../vitest.shared.ts';

// The unit tests of the report writer only: the suite itself runs with `npm run test:reliability`
// (vitest.suite.config.ts), on its own, because its soak must not share the cores with other tests.
export default packageProject('reliability');
