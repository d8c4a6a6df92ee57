import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared';

// `shims` gives the CJS build a real `import.meta.url` (backends.ts falls back to it for createRequire).
export default defineConfig(packageBuild({ shims: true }));
