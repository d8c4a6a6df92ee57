import { cancelled, payloadTooLarge } from '@mlserve/core';
import type { NextFunction, Request, Response } from 'express';
import { disconnectSignal } from './disconnect.js';
import {
  createProtocol,
  errorResponse,
  type Logger,
  type MlserveHttpOptions,
  type ProtocolResponse,
} from './protocol.js';

/** Options of {@link mlserveRouter}. */
export interface MlserveRouterOptions extends MlserveHttpOptions {
  /** Where request logs go (a pino logger, say); none by default. */
  logger?: Logger;
}

/** Reads a request body up to `limit` bytes; past it, stops reading and rejects with 413. */
export function readLimited(req: Request, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    return Promise.reject(
      payloadTooLarge(`the body (${declared} bytes) is over the limit of ${limit} bytes`),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(payloadTooLarge(`the body is over the limit of ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    // A client that goes away mid-body: no 'end' will come.
    const onClose = () => {
      if (req.complete) return;
      cleanup();
      reject(cancelled('the client closed the connection before sending the whole body'));
    };
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * When a body parser (express.json()) ran before this router, the stream is spent: use what it
 * parsed (JSON only; a binary request cannot survive a JSON parser).
 */
function alreadyParsed(req: Request): Buffer | undefined {
  if (!req.readableEnded) return undefined;
  const parsed: unknown = req.body;
  if (parsed === undefined) return Buffer.alloc(0);
  return Buffer.from(typeof parsed === 'string' ? parsed : JSON.stringify(parsed));
}

function send(res: Response, out: ProtocolResponse, closeAfter = false): void {
  res.status(out.status);
  for (const [k, v] of Object.entries(out.headers)) res.setHeader(k, v);
  if (closeAfter) res.setHeader('connection', 'close');
  res.end(out.body ?? '');
}

/**
 * The Express 5 middleware: KServe V2 and TF Serving REST for a registry's models. It reads the
 * raw body itself (so it must be mounted before any body parser for these paths, or without
 * one) and passes every other path to `next()`.
 *
 * @example
 * ```ts
 * import express from 'express';
 * import { mlserveRouter } from '@mlserve/http';
 * const app = express();
 * app.use(mlserveRouter({ registry }));
 * app.listen(8000);
 * ```
 */
export function mlserveRouter(options: MlserveRouterOptions) {
  const protocol = createProtocol(options);
  const metricsPath = options.metrics ? '/metrics' : undefined;
  return async function mlserveMiddleware(req: Request, res: Response, next: NextFunction): Promise<void> {
    const path = req.path;
    if (!(path === '/v2' || path.startsWith('/v2/') || path.startsWith('/v1/') || path === metricsPath)) {
      next();
      return;
    }
    // Cross-origin and API-key refusals before the body is read; the connection closes after them.
    const refusal = protocol.precheck({
      method: req.method,
      path,
      headers: req.headers,
      localAddress: req.socket.localAddress,
      ...(options.logger ? { log: options.logger } : {}),
    });
    if (refusal) {
      send(res, refusal, (req.method === 'POST' || req.method === 'PUT') && !req.readableEnded);
      return;
    }
    let body: Buffer | undefined;
    if (req.method === 'POST' || req.method === 'PUT') {
      try {
        body = Buffer.isBuffer(req.body)
          ? req.body
          : (alreadyParsed(req) ?? (await readLimited(req, protocol.bodyLimit)));
      } catch (err) {
        // The rest of the body is not read: answer, then close the connection.
        send(res, errorResponse(err), true);
        return;
      }
    }
    const out = await protocol.handle({
      checked: true,
      method: req.method,
      path,
      headers: req.headers,
      body,
      signal: disconnectSignal(req.socket),
      localAddress: req.socket.localAddress,
      ...(options.logger ? { log: options.logger } : {}),
    });
    send(res, out);
  };
}
