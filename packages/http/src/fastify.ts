import { isServeError, ServeError, toServeError } from '@mlserve/core';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { disconnectSignal } from './disconnect.js';
import {
  createProtocol,
  errorResponse,
  type MlserveHttpOptions,
  type ProtocolResponse,
  requestIdOf,
  setRequestId,
} from './protocol.js';

/** Options of {@link mlservePlugin}: the shared options; the mount point comes from `register`'s `prefix`. */
export type MlservePluginOptions = MlserveHttpOptions;

function send(reply: FastifyReply, res: ProtocolResponse): FastifyReply {
  reply.code(res.status).headers(res.headers);
  return reply.send(res.body ?? '');
}

/** Marks a request `precheck` passed (a property, not a WeakSet: no weak entry per request). */
const CHECKED = Symbol('mlserve.checked');

async function mlserve(app: FastifyInstance, options: MlservePluginOptions): Promise<void> {
  const protocol = createProtocol(options);
  const prefix = app.prefix;
  // Every body arrives raw (tritonclient sends binary requests with no Content-Type at all); the
  // protocol core decompresses and parses it. Only this plugin's routes are affected.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: protocol.bodyLimit }, (_req, body, done) => {
    done(null, body);
  });
  app.setErrorHandler((err, request, reply) => {
    // Fastify's own failures (body too large, aborted upload) as `{"error": ...}` with their status.
    const status = (err as { statusCode?: number }).statusCode;
    let e = toServeError(err);
    if (!isServeError(err) && status !== undefined && status >= 400 && status < 500) {
      e = new ServeError(status === 413 ? 'PAYLOAD_TOO_LARGE' : 'INVALID_ARGUMENT', e.message, {
        status,
        cause: err,
      });
    }
    return send(reply, errorResponse(e, request.id));
  });

  const pathOf = (request: FastifyRequest) => {
    const url = request.raw.url ?? '/';
    const q = url.indexOf('?');
    const full = q < 0 ? url : url.slice(0, q);
    return prefix && full.startsWith(prefix) ? full.slice(prefix.length) || '/' : full;
  };
  // Cross-origin and API-key refusals before the body is read (onRequest runs before parsing). A
  // callback hook, not an async one: no promise per request. Registered only when there is
  // something to check.
  if (protocol.prechecks) {
    app.addHook('onRequest', (request, reply, done) => {
      const refusal = protocol.precheck({
        id: requestIdOf(request.raw) === undefined ? undefined : request.id,
        method: request.method,
        path: pathOf(request),
        headers: request.headers,
        localAddress: request.socket.localAddress,
        log: request.log,
      });
      if (refusal) {
        if (request.method === 'POST' || request.method === 'PUT') reply.header('connection', 'close');
        send(reply, refusal);
        return;
      }
      (request as { [CHECKED]?: true })[CHECKED] = true;
      done();
    });
  }

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    const path = pathOf(request);
    // With Fastify's genReqId set to genRequestId, request.id is the request id (one id in the logs
    // and in the answer); otherwise the protocol picks it (x-request-id or a UUID).
    const id = requestIdOf(request.raw) === undefined ? undefined : request.id;
    const res = await protocol.handle({
      checked: (request as { [CHECKED]?: true })[CHECKED] === true,
      id,
      ...(id !== undefined && {
        setId: (v: string) => {
          (request as { id: string }).id = v;
          setRequestId(request.raw, v);
        },
      }),
      method: request.method,
      path,
      headers: request.headers,
      body: Buffer.isBuffer(request.body) ? request.body : undefined,
      signal: disconnectSignal(request.raw.socket),
      log: request.log,
      localAddress: request.socket.localAddress,
    });
    return send(reply, res);
  };
  // OPTIONS only with CORS: the plugin answers preflights then (else Fastify's 404, or the app's own).
  const methods = options.cors
    ? (['GET', 'HEAD', 'POST', 'OPTIONS'] as const)
    : (['GET', 'HEAD', 'POST'] as const);
  app.route({ method: [...methods], url: '/v2', handler, exposeHeadRoute: false });
  app.route({ method: [...methods], url: '/v2/*', handler, exposeHeadRoute: false });
  app.route({ method: [...methods], url: '/v1/*', handler, exposeHeadRoute: false });
  if (options.metrics) app.route({ method: [...methods], url: '/metrics', handler, exposeHeadRoute: false });
}

/**
 * The Fastify plugin: KServe V2 and TF Serving REST for a registry's models, encapsulated (its
 * body parser, body limit and error handler touch only its own routes).
 *
 * @example
 * ```ts
 * import Fastify from 'fastify';
 * import { mlservePlugin } from '@mlserve/http';
 * const app = Fastify({ logger: true });
 * await app.register(mlservePlugin, { registry, bodyLimit: 16 * 1024 * 1024 });
 * await app.listen({ port: 8000 });
 * ```
 */
export const mlservePlugin: FastifyPluginAsync<MlservePluginOptions> = fp(mlserve, {
  name: '@mlserve/http',
  fastify: '5.x',
  encapsulate: true,
});
