import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared';

// Two entries: `.` is browser-safe (the codec), `./server` is the Node request path.
export default defineConfig(packageBuild({ entry: ['src/index.ts', 'src/server.ts'] }));
