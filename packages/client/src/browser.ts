import { unimplemented } from '@mlserve/core';
import type { Client } from './client.js';
import { fetchSender } from './fetch-sender.js';
import { createHttpClient } from './http.js';
import type { ClientOptions } from './types.js';

export * from './common.js';

/**
 * A KServe V2 client for browsers (what bundlers pick through the `browser` condition): HTTP through
 * `fetch`, binary tensors when the server has them. gRPC needs Node.
 *
 * @example
 * ```ts
 * import { createClient } from '@mlserve/client';
 * import { tensor } from '@mlserve/core';
 *
 * const client = createClient({ url: location.origin });
 * const out = await client.infer('mnist', { image: tensor('float32', pixels, [1, 1, 28, 28]) });
 * ```
 */
export function createClient(options: ClientOptions & { fetch?: typeof fetch }): Client {
  if (options.transport === 'grpc')
    throw unimplemented('gRPC needs Node.js; use the HTTP transport in browsers');
  // A relative url ('/', '') is the page's own server.
  const url = new URL(options.url, globalThis.location?.href);
  return createHttpClient({ ...options, url: url.href }, fetchSender(url.origin, options.fetch));
}
