import * as grpc from '@grpc/grpc-js';
import { createAuthenticator, createKey } from '@mlserve/protocol/server';
import { echoRegistry } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GrpcServing, serveGrpc } from '../src/index.js';
import { connect, rejection } from './client.js';

const inferKey = createKey({ name: 'app', scopes: ['infer'] });
const readerKey = createKey({ name: 'dashboard', scopes: ['metadata'] });
const adminKey = createKey({ name: 'ops', scopes: ['infer', 'metadata', 'management'] });
const slowKey = createKey({ name: 'trial', scopes: ['infer'], rateLimit: { perSecond: 0.2, burst: 2 } });

const { registry, calls } = echoRegistry();
const REQUEST = {
  model_name: 'echo',
  inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 1], contents: { fp32_contents: [3] } }],
};

function md(entries: Record<string, string>): grpc.Metadata {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(entries)) m.set(k, v);
  return m;
}

let server: GrpcServing;
let c: ReturnType<typeof connect>;
beforeAll(async () => {
  server = await serveGrpc({
    registry,
    management: true,
    auth: { keys: [inferKey.stored, readerKey.stored, adminKey.stored, slowKey.stored] },
  });
  c = connect(server.port);
});
afterAll(async () => {
  c?.close();
  await server?.close();
});

describe('gRPC auth (grpc-js client over loopback)', () => {
  it('keeps ServerLive, ServerReady and ModelReady open; the rest need a key (UNAUTHENTICATED)', async () => {
    expect(await c.call('ServerLive', {})).toEqual({ live: true });
    expect(await c.call('ServerReady', {})).toEqual({ ready: true });
    expect(await c.call('ModelReady', { name: 'echo' })).toEqual({ ready: true });
    for (const [method, req] of [
      ['ServerMetadata', {}],
      ['ModelMetadata', { name: 'echo' }],
      ['ModelConfig', { name: 'echo' }],
      ['ModelInfer', REQUEST],
      ['ModelStatistics', { name: 'echo' }],
      ['RepositoryIndex', {}],
    ] as const) {
      const err = await rejection(c.call(method, req));
      expect(err.code, method).toBe(grpc.status.UNAUTHENTICATED);
      expect(err.metadata.get('mlserve-error-code')).toEqual(['UNAUTHENTICATED']);
    }
    const wrong = await rejection(
      c.call('ModelInfer', REQUEST, { metadata: md({ authorization: 'Bearer mls_nope' }) }),
    );
    expect(wrong.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(calls.n).toBe(0);
  });

  it('serves keys within their scopes (authorization or x-api-key metadata), PERMISSION_DENIED otherwise', async () => {
    const res = await c.call<{ model_name: string }>('ModelInfer', REQUEST, {
      metadata: md({ authorization: `Bearer ${inferKey.key}` }),
    });
    expect(res.model_name).toBe('echo');
    await c.call('ModelInfer', REQUEST, { metadata: md({ 'x-api-key': inferKey.key }) });
    expect(calls.n).toBe(2);
    const denied = await rejection(
      c.call('ModelMetadata', { name: 'echo' }, { metadata: md({ 'x-api-key': inferKey.key }) }),
    );
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(
      (await rejection(c.call('ModelInfer', REQUEST, { metadata: md({ 'x-api-key': readerKey.key }) }))).code,
    ).toBe(grpc.status.PERMISSION_DENIED);
    expect(
      (await rejection(c.call('RepositoryIndex', {}, { metadata: md({ 'x-api-key': readerKey.key }) }))).code,
    ).toBe(grpc.status.PERMISSION_DENIED);
    expect(
      await c.call('ModelMetadata', { name: 'echo' }, { metadata: md({ 'x-api-key': readerKey.key }) }),
    ).toMatchObject({
      name: 'echo',
    });
    const index = await c.call<{ models: { name: string }[] }>(
      'RepositoryIndex',
      {},
      { metadata: md({ 'x-api-key': adminKey.key }) },
    );
    expect(index.models.map((m) => m.name)).toEqual(['echo']);
  });

  it('checks every message of a stream: no key answers UNAUTHENTICATED per message, a key gets answers', async () => {
    const run = async (metadata: grpc.Metadata) => {
      const stream = (
        c.client as unknown as { ModelStreamInfer(m: grpc.Metadata): unknown }
      ).ModelStreamInfer(metadata) as grpc.ClientDuplexStream<unknown, Record<string, unknown>>;
      const got: Record<string, unknown>[] = [];
      const done = new Promise<void>((resolve, reject) => {
        stream.on('data', (m) => got.push(m));
        stream.on('end', resolve);
        stream.on('error', reject);
      });
      stream.write({ ...REQUEST, id: 'a' });
      stream.write({ ...REQUEST, id: 'b' });
      stream.end();
      await done;
      return got;
    };
    const anonymous = await run(new grpc.Metadata());
    expect(anonymous.map((m) => m.error_message)).toEqual([
      expect.stringMatching(/API key/),
      expect.stringMatching(/API key/),
    ]);
    const keyed = await run(md({ 'x-api-key': inferKey.key }));
    expect(keyed.map((m) => m.error_message)).toEqual(['', '']);
  });

  it("answers RESOURCE_EXHAUSTED with retry-after-ms past a key's rate limit", async () => {
    const m = md({ 'x-api-key': slowKey.key });
    await c.call('ModelInfer', REQUEST, { metadata: m });
    await c.call('ModelInfer', REQUEST, { metadata: m });
    const err = await rejection(c.call('ModelInfer', REQUEST, { metadata: m }));
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(Number(err.metadata.get('retry-after-ms')[0])).toBeGreaterThan(0);
    await c.call('ModelInfer', REQUEST, { metadata: md({ 'x-api-key': inferKey.key }) });
  });

  it('refuses auth with a management token; one authenticator can be shared', async () => {
    await expect(serveGrpc({ registry, auth: { keys: [] }, token: 't' })).rejects.toThrow(
      /cannot be combined/,
    );
    const shared = createAuthenticator({ keys: [slowKey.stored] });
    expect(shared.apiKeyHeader).toBe('x-api-key');
  });
});
