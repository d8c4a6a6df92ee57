import { unavailable } from './errors.js';

/**
 * What {@link whenConnected} reads of a Redis client's connection state (an ioredis `Redis` or
 * `Cluster` satisfies it; every member is optional, since other clients lack them).
 */
export interface ConnectingClient {
  /** ioredis: `wait`, `connecting`, `connect`, `ready`, `reconnecting`, `close`, `end`. */
  readonly status?: string;
  once?(event: 'ready', listener: () => void): unknown;
  off?(event: 'ready', listener: () => void): unknown;
}

/**
 * While an ioredis client is still connecting (`connecting` or `connect`: the socket is up, the
 * handshake is not), a promise that settles when it is ready, rejecting UNAVAILABLE after `ms`;
 * undefined when there is nothing to wait for (ready, or any other state: those fail or succeed
 * on their own, at once). So the first requests after start wait for the connection instead of
 * failing with "Stream isn't writeable and enableOfflineQueue options is false". The Redis
 * response cache and the Redis feature store both wait through it.
 *
 * @example
 * ```ts
 * import { whenConnected } from '@mlserve/core';
 *
 * const client = { status: 'ready' }; // an ioredis client, say
 * await whenConnected(client, 1000); // nothing to wait for: undefined
 * ```
 */
export function whenConnected(client: ConnectingClient, ms: number): Promise<void> | undefined {
  const status = client.status;
  if ((status !== 'connecting' && status !== 'connect') || !client.once || !client.off) return undefined;
  return new Promise<void>((resolve, reject) => {
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      client.off?.('ready', onReady);
      reject(unavailable(`redis is still connecting after ${ms} ms (status ${client.status})`));
    }, ms);
    client.once?.('ready', onReady);
  });
}
