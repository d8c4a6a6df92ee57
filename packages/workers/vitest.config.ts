import { packageProject } from '../../vitest.shared.ts';

// Worker threads run dist/worker.js: the global setup fails with a clear message when it is
// missing or older than the source (`npm test` builds first).
export default packageProject('workers', { globalSetup: ['./test/global-setup.ts'] });
