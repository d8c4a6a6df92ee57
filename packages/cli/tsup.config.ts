import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared';

// `shims` gives the CJS build a real `import.meta.url` (cli.ts reads ../package.json through it).
export default defineConfig(packageBuild({ entry: ['src/index.ts', 'src/cli.ts'], shims: true }));
