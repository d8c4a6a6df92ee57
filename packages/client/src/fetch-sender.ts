import { type HttpAnswer, type HttpExchange, type HttpSender, NetworkError } from './http.js';

/**
 * The browser's sender: `fetch` (the browser pools connections and inflates compressed answers
 * itself), gzip through `CompressionStream`.
 * @internal
 */
export function fetchSender(
  origin: string,
  fetchImpl: typeof fetch = globalThis.fetch.bind(globalThis),
): HttpSender {
  return {
    async send(x: HttpExchange): Promise<HttpAnswer> {
      let res: Response;
      try {
        res = await fetchImpl(origin + x.path, {
          method: x.method,
          headers: x.headers,
          ...(x.body ? { body: x.body as BodyInit } : {}),
          signal: x.signal,
        });
      } catch (err) {
        if (x.signal.aborted) throw err;
        // fetch does not say whether the request left: only GETs are repeated.
        throw new NetworkError((err as Error).message, true, { cause: err });
      }
      let body: Uint8Array;
      try {
        body = new Uint8Array(await res.arrayBuffer());
      } catch (err) {
        if (x.signal.aborted) throw err;
        throw new NetworkError(`the answer was cut off: ${(err as Error).message}`, true, { cause: err });
      }
      return { status: res.status, header: (name) => res.headers.get(name), body };
    },
    async gzip(bytes) {
      const stream = new Blob([bytes as BlobPart]).stream().pipeThrough(new CompressionStream('gzip'));
      return new Uint8Array(await new Response(stream).arrayBuffer());
    },
    async close() {},
  };
}
