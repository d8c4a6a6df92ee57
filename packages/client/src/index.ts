import { isModuleNotFound, notInstalled } from '@mlserve/core';
import type { Client } from './client.js';
import { createHttpClient } from './http.js';
import { lazyClient } from './lazy.js';
import { undiciSender } from './node-sender.js';
import type { ClientOptions } from './types.js';

export * from './common.js';

/**
 * A KServe V2 client for Node.js: HTTP through undici's connection pool (binary tensors when the
 * server has them), or gRPC through @grpc/grpc-js (`transport: 'grpc'`, loaded on first use from
 * `@mlserve/client/grpc`). Tensors in and out are core's; every failure is a `ServeError` with the
 * server's code and message.
 *
 * @example
 * ```ts
 * import { createClient } from '@mlserve/client';
 * import { tensor } from '@mlserve/core';
 *
 * const client = createClient({ url: 'http://127.0.0.1:8000' });
 * const out = await client.infer('mnist', { image: tensor('float32', new Float32Array(784), [1, 1, 28, 28]) });
 * console.log(out.logits?.data);
 * await client.close();
 * ```
 */
export function createClient(options: ClientOptions): Client {
  if (options.transport === 'grpc') {
    return lazyClient('grpc', async () => {
      // Through the package's own subpath (a specifier in a variable, so no bundler inlines it):
      // the HTTP entry never loads @grpc/grpc-js, and gRPC users load it once.
      const entry = '@mlserve/client/grpc';
      let mod: typeof import('./grpc.js');
      try {
        mod = (await import(entry)) as typeof import('./grpc.js');
      } catch (err) {
        const missing = ['@grpc/grpc-js', '@grpc/proto-loader'].find((pkg) => isModuleNotFound(err, pkg));
        throw notInstalled(
          missing ?? '@grpc/grpc-js',
          {
            neededBy: "createClient({ transport: 'grpc' })",
            install: 'npm install @grpc/grpc-js @grpc/proto-loader',
          },
          err,
        );
      }
      return mod.createGrpcClient(options);
    });
  }
  if (options.transport !== undefined && options.transport !== 'http')
    throw new TypeError(
      `createClient: options.transport must be 'http' or 'grpc', got ${String(options.transport)}`,
    );
  const origin = new URL(options.url).origin;
  const connections = options.connections ?? 32;
  if (!Number.isSafeInteger(connections) || connections < 1)
    throw new TypeError('createClient: options.connections must be a positive integer');
  return createHttpClient(options, undiciSender(origin, connections));
}
