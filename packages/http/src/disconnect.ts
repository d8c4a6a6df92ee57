import type { Socket } from 'node:net';

const bySocket = new WeakMap<Socket, AbortController>();
const NEVER = new AbortController().signal;

/**
 * The signal that aborts when the client's connection closes: one per connection, made on its
 * first request and shared by every request on it (HTTP/1.1 answers them in order, and a closed
 * connection can answer none of them). A per-request AbortController and `close` listener cost
 * more than the rest of the adapter (the CPU profile in issue 18's notes); this costs one WeakMap
 * lookup per request.
 */
export function disconnectSignal(socket: Socket | null | undefined): AbortSignal {
  if (!socket) return NEVER;
  let controller = bySocket.get(socket);
  if (controller === undefined) {
    const c = new AbortController();
    controller = c;
    bySocket.set(socket, c);
    if (socket.destroyed) c.abort();
    else socket.once('close', () => c.abort());
  }
  return controller.signal;
}
