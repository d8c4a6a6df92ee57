import { packageProject } from '../../vitest.shared.ts';

// The fast part (manifests against their schemas, the KServe model layout served for real). The
// container and load-balancer suite runs with `npm run test:deploy` (vitest.suite.config.ts), and in
// CI from `npm test` (scripts/run-tests.mjs).
export default packageProject('deploy-tests');
