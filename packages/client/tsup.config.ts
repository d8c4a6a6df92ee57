import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared';

// Three entries: the Node client (undici), the browser client (fetch; what `browser` bundlers pick)
// and the gRPC client (a subpath, so nothing else ever loads @grpc/grpc-js). shims: the CJS build
// of the gRPC entry resolves the .proto through import.meta.url.
export default defineConfig(
  packageBuild({ entry: ['src/index.ts', 'src/browser.ts', 'src/grpc.ts'], shims: true }),
);
