import type { Client } from './client.js';

/**
 * A client whose implementation loads on first use (the gRPC client behind `createClient`, so the
 * main entry never imports @grpc/grpc-js by itself).
 * @internal
 */
export function lazyClient(transport: 'http' | 'grpc', load: () => Promise<Client>): Client {
  let loaded: Promise<Client> | undefined;
  let closed = false;
  const get = () => {
    loaded ??= load().catch((err: unknown) => {
      // Not cached: a later call tries again (the package may have been installed meanwhile).
      loaded = undefined;
      throw err;
    });
    return loaded;
  };
  return {
    transport,
    serverLive: async (o) => (await get()).serverLive(o),
    serverReady: async (o) => (await get()).serverReady(o),
    serverMetadata: async (o) => (await get()).serverMetadata(o),
    modelReady: async (m, o) => (await get()).modelReady(m, o),
    modelMetadata: async (m, o) => (await get()).modelMetadata(m, o),
    infer: async (m, i, o) => (await get()).infer(m, i, o),
    model: async (n, o) => (await get()).model(n, o),
    async close() {
      if (closed) return;
      closed = true;
      if (loaded) await (await loaded.catch(() => undefined))?.close();
    },
  };
}
