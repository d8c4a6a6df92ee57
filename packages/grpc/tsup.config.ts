import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared';

// shims: the CJS build resolves the bundled .proto files through import.meta.url too.
export default defineConfig(packageBuild({ shims: true }));
