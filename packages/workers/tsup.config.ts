import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared';

// The worker script must be plain JS next to the built index: both ESM and CJS builds point at
// dist/worker.js (the worker always runs as ESM). `shims` gives the CJS build an import.meta.url.
export default defineConfig(
  packageBuild({ entry: ['src/index.ts', 'src/worker.ts', 'src/child.ts'], shims: true }),
);
