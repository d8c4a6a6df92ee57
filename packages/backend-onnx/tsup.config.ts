import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared';

// Two entries: `.` on onnxruntime-node, `./web` on onnxruntime-web. `shims` gives the CJS build an
// `import.meta.url` (the Node entry uses it to find onnxruntime-node's provider libraries).
export default defineConfig(packageBuild({ entry: ['src/index.ts', 'src/web.ts'], shims: true }));
