import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared';

// Three entries: `.` is browser-safe (the codec), `./server` is the Node request path, `./grpc` the
// gRPC messages' contents codec (browser-safe too) the gRPC server and the client share.
export default defineConfig(packageBuild({ entry: ['src/index.ts', 'src/server.ts', 'src/grpc.ts'] }));
