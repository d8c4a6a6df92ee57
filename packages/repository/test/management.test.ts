/**
 * A gated rollout managed over real HTTP and gRPC on loopback: the repository index shows each
 * version's rollout phase and figures, and management promotes and rejects by hand (HTTP routes
 * `/v2/repository/models/{name}/versions/{v}/promote|reject`; gRPC RepositoryModelLoad with the
 * parameters `rollout` and `version`, since KServe's API has no such method).
 */
import * as grpc from '@grpc/grpc-js';
import { loadInferenceProto, serveGrpc } from '@mlserve/grpc';
import { mlservePlugin } from '@mlserve/http';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadRepository } from '../src/index.js';
import { addVersion, digit, sleep, tempRepo, writeConfig } from './helpers.js';
import { onnxLoader } from './loader.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const TOKEN = 's3cret';

async function until(what: string, cond: () => boolean, ms = 30_000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Row {
  name: string;
  version: string;
  state: string;
  reason: string;
  rollout?: { phase: string; reason?: string; figures?: Record<string, number> };
}

describe('rollout management over HTTP and gRPC', () => {
  it('indexes rollout phases, promotes over HTTP and rejects over gRPC, behind the token', async () => {
    const t = await tempRepo();
    cleanups.push(t.cleanup);
    await addVersion(t.dir, 'mnist', '1');
    // A gate that cannot decide on its own here (no replay, no traffic, a long window): a new
    // version stays in shadow until management decides.
    await writeConfig(t.dir, 'mnist', {
      warmup: false,
      rollout: { gate: { shadowRequests: 100_000, maxShadowMs: 600_000, replay: false } },
    });
    const repo = await loadRepository(t.dir, { loaders: { onnx: onnxLoader() }, warmup: false });
    cleanups.push(() => repo.close());
    await addVersion(t.dir, 'mnist', '2');
    await repo.loadModel('mnist');
    await until('shadow', () => repo.registry.status('mnist', '2')?.rollout?.phase === 'shadow');

    const management = { ...repo.management(), token: TOKEN };
    const app = Fastify();
    await app.register(mlservePlugin, { registry: repo.registry, management });
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => app.close());
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const grpcServer = await serveGrpc({ registry: repo.registry, host: '127.0.0.1', port: 0, management });
    cleanups.push(() => grpcServer.close());
    const { GRPCInferenceService } = loadInferenceProto();
    const client = new GRPCInferenceService(
      `127.0.0.1:${grpcServer.port}`,
      grpc.credentials.createInsecure(),
    );
    cleanups.push(async () => client.close());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${TOKEN}`);
    const call = <T>(method: string, req: unknown, metadata = md) =>
      new Promise<T>((resolve, reject) =>
        (client as unknown as Record<string, (...a: unknown[]) => void>)[method]!.call(
          client,
          req,
          metadata,
          (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)),
        ),
      );
    const post = (path: string, body?: unknown, token = TOKEN) =>
      fetch(`${base}${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
    const httpIndex = async () => (await (await post('/v2/repository/index')).json()) as Row[];
    const grpcIndex = async () => (await call<{ models: Row[] }>('RepositoryIndex', {})).models;

    // The index shows the version held in shadow, over both transports.
    let row = (await httpIndex()).find((r) => r.version === '2')!;
    expect(row).toMatchObject({ name: 'mnist', state: 'READY', rollout: { phase: 'shadow' } });
    expect(row.reason).toMatch(/^rollout shadow/);
    expect((await grpcIndex()).find((r) => r.version === '2')!.reason).toMatch(/^rollout shadow/);
    expect((await httpIndex()).find((r) => r.version === '1')!.reason).toBe('');

    // Promote over HTTP: refused without the token, NOT_FOUND for an unknown version, then done.
    expect((await post('/v2/repository/models/mnist/versions/2/promote', undefined, 'wrong')).status).toBe(
      401,
    );
    const unknown = await post('/v2/repository/models/mnist/versions/9/promote');
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { code: string }).code).toBe('NOT_FOUND');
    const promoted = await post('/v2/repository/models/mnist/versions/2/promote');
    expect(promoted.status).toBe(200);
    await until('promotion', () => repo.registry.status('mnist')?.version === '2');
    expect(repo.registry.status('mnist', '2')!.rollout).toMatchObject({
      phase: 'promoted',
      reason: 'promoted by hand',
    });
    const out = await repo.registry.infer('mnist', undefined, digit(0));
    expect(out.logits!.dims).toEqual([1, 10]);
    row = (await httpIndex()).find((r) => r.version === '2')!;
    expect(row.reason).toContain('rollout promoted: promoted by hand');
    // A version in no rollout cannot be rejected: INVALID_ARGUMENT, 400.
    const notHeld = await post('/v2/repository/models/mnist/versions/2/reject', { reason: 'x' });
    expect(notHeld.status).toBe(400);
    expect((await post('/v2/repository/models/mnist/versions/2/reject', { reason: 7 })).status).toBe(400);

    // Version 3 arrives and is held; reject it over gRPC, with a reason.
    await addVersion(t.dir, 'mnist', '3');
    await repo.loadModel('mnist');
    await until('shadow of 3', () => repo.registry.status('mnist', '3')?.rollout?.phase === 'shadow');
    const params = (p: Record<string, string>) =>
      Object.fromEntries(Object.entries(p).map(([k, v]) => [k, { string_param: v }]));
    const noAuth = await call(
      'RepositoryModelLoad',
      {
        model_name: 'mnist',
        parameters: params({ rollout: 'reject', version: '3' }),
      },
      new grpc.Metadata(),
    ).catch((e: grpc.ServiceError) => e);
    expect((noAuth as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
    const bad = await call('RepositoryModelLoad', {
      model_name: 'mnist',
      parameters: params({ rollout: 'retire', version: '3' }),
    }).catch((e: grpc.ServiceError) => e);
    expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    await call('RepositoryModelLoad', {
      model_name: 'mnist',
      parameters: params({ rollout: 'reject', version: '3', reason: 'bad on the holdout set' }),
    });
    expect(repo.registry.status('mnist', '3')!.rollout).toMatchObject({
      phase: 'rejected',
      reason: 'bad on the holdout set',
    });
    // Still version 2 serving; 3 is held and says why in both indexes.
    expect(repo.registry.status('mnist')!.version).toBe('2');
    expect((await grpcIndex()).find((r) => r.version === '3')!.reason).toContain(
      'rollout rejected: bad on the holdout set',
    );
    expect((await httpIndex()).find((r) => r.version === '3')!.rollout).toMatchObject({ phase: 'rejected' });
  });
});
