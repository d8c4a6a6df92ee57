/**
 * `mlserve serve --auth-keys --tls-cert --tls-key --cors-origin` and `mlserve keys create`, with a
 * certificate this test makes with Debian's openssl, and real clients: curl, Node's https and a
 * grpc-js client with TLS credentials.
 */
import { execFile } from 'node:child_process';
import { appendFile, copyFile, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { loadInferenceProto } from '@mlserve/grpc';
import { modelPath, requireService } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCommandLine, type RunningServer, type ServeOptions, serve, UsageError } from '../src/index.js';
import { CLI } from './helpers.js';

const run = promisify(execFile);
const haveOpenssl = requireService('openssl', 'apt-get install -y openssl');
const haveCurl = requireService('curl', 'apt-get install -y curl');

const parse = (...args: string[]): ServeOptions => {
  const c = parseCommandLine(['serve', '--model-repository', 'm', ...args]);
  if (c.command !== 'serve') throw new Error('not serve');
  return c.options;
};
const quiet = { out: () => {}, err: () => {} };

/** `mlserve keys create ...` as a user runs it (the built CLI); stdout lines. */
async function keysCreate(...args: string[]): Promise<string[]> {
  const { stdout } = await run(process.execPath, [CLI, 'keys', 'create', ...args]);
  return stdout.trim().split('\n');
}

describe('security flags', () => {
  it('parses --cors-origin, --auth-keys, --tls-cert/--tls-key and keys create', () => {
    expect(parse('--cors-origin', 'http://localhost:5173/', '--cors-origin', '*')).toMatchObject({
      corsOrigins: ['http://localhost:5173', '*'],
    });
    expect(() => parse('--cors-origin', 'localhost:5173')).toThrow(/--cors-origin must be an origin/);
    expect(parse('--auth-keys', 'k.jsonl', '--tls-cert', 'c.pem', '--tls-key', 'k.pem')).toMatchObject({
      authKeys: 'k.jsonl',
      tlsCert: 'c.pem',
      tlsKey: 'k.pem',
    });
    expect(() => parse('--tls-cert', 'c.pem')).toThrow(/go together/);
    expect(
      parseCommandLine(['keys', 'create', '--name', 'ci', '--scopes', 'infer,metrics', '--rate-limit', '5']),
    ).toEqual({
      command: 'keys-create',
      options: { name: 'ci', scopes: ['infer', 'metrics'], perSecond: 5 },
    });
    expect(() => parseCommandLine(['keys', 'create', '--name', 'ci', '--scopes', 'root'])).toThrow(
      UsageError,
    );
    expect(() => parseCommandLine(['keys', 'create', '--scopes', 'infer'])).toThrow(/--name/);
    expect(() => parseCommandLine(['keys', 'list'])).toThrow(UsageError);
  });
});

describe.runIf(haveOpenssl && haveCurl)(
  'mlserve serve with API keys and TLS (openssl certificate, curl, https, grpc-js)',
  () => {
    let dir: string;
    let server: RunningServer;
    let ca: Buffer;
    let inferKey: string;
    let readerKey: string;
    const cert = () => join(dir, 'cert.pem');

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'mlserve-tls-'));
      await run('openssl', [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        cert(),
        '-days',
        '2',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ]);
      ca = await readFile(cert());
      const keys = join(dir, 'keys.jsonl');
      // --append creates the keys file (0600), writes the line and prints only the key; without it
      // the key and then the line are printed.
      readerKey = (await keysCreate('--name', 'dash', '--scopes', 'metadata,metrics', '--append', keys))[0]!;
      expect(((await stat(keys)).mode & 0o777).toString(8)).toBe('600');
      const [printed, line] = await keysCreate('--name', 'app', '--scopes', 'infer');
      inferKey = printed!;
      await appendFile(keys, `${line}\n`);
      const text = await readFile(keys, 'utf8');
      expect(text).not.toContain(inferKey);
      expect(
        text
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l).name),
      ).toEqual(['dash', 'app']);

      const repo = join(dir, 'models');
      await mkdir(join(repo, 'mnist', '1'), { recursive: true });
      await copyFile(modelPath('mnist-cnn.onnx'), join(repo, 'mnist', '1', 'model.onnx'));
      server = await serve(
        {
          ...parse(
            '--port',
            '0',
            '--grpc-port',
            '0',
            '--no-warmup',
            '--metrics',
            '--auth-keys',
            keys,
            '--tls-cert',
            cert(),
            '--tls-key',
            join(dir, 'key.pem'),
            '--cors-origin',
            'http://127.0.0.1:9',
          ),
          modelRepository: repo,
          workers: 0,
        },
        quiet,
      );
      await server.loaded;
    }, 60_000);
    afterAll(async () => {
      await server?.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    async function curl(path: string, ...args: string[]): Promise<{ status: number; body: string }> {
      const { stdout } = await run('curl', [
        '-sS',
        '--cacert',
        cert(),
        '-w',
        '\n%{http_code}',
        ...args,
        `${server.url}${path}`,
      ]);
      const at = stdout.lastIndexOf('\n');
      return { status: Number(stdout.slice(at + 1)), body: stdout.slice(0, at) };
    }

    it('serves HTTPS: curl with the key gets a prediction, without it 401, with a metadata-only key 403', async () => {
      expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const meta = JSON.parse((await curl('/v2/models/mnist', '-H', `x-api-key: ${readerKey}`)).body);
      const input = meta.inputs[0];
      const req = JSON.stringify({
        inputs: [{ name: input.name, datatype: 'FP32', shape: [1, 1, 28, 28], data: new Array(784).fill(0) }],
      });
      const json = ['-H', 'content-type: application/json', '-d', req];
      const ok = await curl('/v2/models/mnist/infer', ...json, '-H', `authorization: Bearer ${inferKey}`);
      expect(ok.status).toBe(200);
      expect(JSON.parse(ok.body).outputs[0].shape).toEqual([1, 10]);
      expect((await curl('/v2/models/mnist/infer', ...json)).status).toBe(401);
      expect((await curl('/v2/models/mnist/infer', ...json, '-H', `x-api-key: ${readerKey}`)).status).toBe(
        403,
      );
      expect((await curl('/v2/health/ready')).status).toBe(200);
      expect((await curl('/metrics', '-H', `x-api-key: ${readerKey}`)).status).toBe(200);
      expect((await curl('/metrics', '-H', `x-api-key: ${inferKey}`)).status).toBe(403);
      // CORS preflight from the allowed origin.
      const pre = await curl(
        '/v2/models/mnist/infer',
        '-X',
        'OPTIONS',
        '-H',
        'origin: http://127.0.0.1:9',
        '-H',
        'access-control-request-method: POST',
        '-i',
      );
      expect(pre.status).toBe(204);
      expect(pre.body.toLowerCase()).toContain('access-control-allow-origin: http://127.0.0.1:9');
      // Without the CA, curl refuses the self-signed certificate.
      const untrusted = await run('curl', ['-sS', '-o', '/dev/null', `${server.url}/v2/health/ready`]).catch(
        (e) => e,
      );
      expect(untrusted.code).toBe(60);
    });

    it("serves Node's https client with the test CA, and refuses plain HTTP on the port", async () => {
      const get = (headers: Record<string, string>) =>
        new Promise<number>((resolve, reject) => {
          const req = httpsRequest(`${server.url}/v2/models/mnist`, { ca, headers }, (res) => {
            res.resume();
            resolve(res.statusCode!);
          });
          req.on('error', reject);
          req.end();
        });
      expect(await get({ 'x-api-key': readerKey })).toBe(200);
      expect(await get({})).toBe(401);
      const plain = await fetch(server.url.replace('https:', 'http:')).then(
        (r) => r.status,
        () => 'failed',
      );
      expect(plain).not.toBe(200);
    });

    it('serves gRPC over TLS to grpc-js with the CA: keyed calls answered, others UNAUTHENTICATED', async () => {
      const { GRPCInferenceService } = loadInferenceProto();
      const client = new GRPCInferenceService(server.grpc!.address, grpc.credentials.createSsl(ca));
      const call = (method: string, req: unknown, md = new grpc.Metadata()) =>
        new Promise<Record<string, unknown>>((resolve, reject) => {
          (client as unknown as Record<string, Function>)[method]!.call(
            client,
            req,
            md,
            (err: grpc.ServiceError | null, res: Record<string, unknown>) =>
              err ? reject(err) : resolve(res),
          );
        });
      try {
        expect(await call('ServerLive', {})).toEqual({ live: true });
        const md = new grpc.Metadata();
        md.set('authorization', `Bearer ${inferKey}`);
        const meta = new grpc.Metadata();
        meta.set('x-api-key', readerKey);
        const info = (await call('ModelMetadata', { name: 'mnist' }, meta)) as { inputs: { name: string }[] };
        const res = await call(
          'ModelInfer',
          {
            model_name: 'mnist',
            inputs: [
              {
                name: info.inputs[0]!.name,
                datatype: 'FP32',
                shape: [1, 1, 28, 28],
                contents: { fp32_contents: new Array(784).fill(0) },
              },
            ],
          },
          md,
        );
        expect(res.model_name).toBe('mnist');
        const err = (await call('ModelMetadata', { name: 'mnist' }).catch((e) => e)) as grpc.ServiceError;
        expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
      } finally {
        client.close();
      }
      // A plaintext client cannot talk to the TLS port.
      const plain = new GRPCInferenceService(server.grpc!.address, grpc.credentials.createInsecure());
      try {
        const err = await new Promise<grpc.ServiceError>((resolve) => {
          (plain as unknown as Record<string, Function>).ServerLive!.call(
            plain,
            {},
            new grpc.Metadata(),
            { deadline: Date.now() + 5000 },
            (e: grpc.ServiceError) => resolve(e),
          );
        });
        expect(err?.code).toBe(grpc.status.UNAVAILABLE);
      } finally {
        plain.close();
      }
    });

    it('refuses bad key files and certificates with a usage error naming the file', async () => {
      const bad = join(dir, 'bad.jsonl');
      await writeFile(bad, '{"name":"x"}\n');
      await expect(
        serve({ ...parse('--port', '0', '--auth-keys', bad), modelRepository: dir }, quiet),
      ).rejects.toThrow(/--auth-keys .*bad\.jsonl line 1/);
      await expect(
        serve(
          {
            ...parse('--port', '0', '--tls-cert', join(dir, 'key.pem'), '--tls-key', cert()),
            modelRepository: dir,
          },
          quiet,
        ),
      ).rejects.toThrow(UsageError);
      await expect(
        serve(
          { ...parse('--port', '0', '--auth-keys', join(dir, 'missing.jsonl')), modelRepository: dir },
          quiet,
        ),
      ).rejects.toThrow(/missing\.jsonl/);
    });
  },
);
