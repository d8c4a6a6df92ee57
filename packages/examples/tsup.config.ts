import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared';

// The servers for Node; then the page (browser bundle, HTML, CSS) into dist/public.
export default defineConfig(
  packageBuild({
    entry: ['src/demo.ts', 'src/fastify-app.ts', 'src/express-app.ts'],
    format: ['esm'],
    dts: false,
    onSuccess: 'tsx src/page/build.ts',
  }),
);
