/**
 * Security: management endpoints off by default and behind a token when on, model names that
 * cannot traverse paths, no request data reaching eval / a shell / a file path (a source scan), and
 * the CLI binding to loopback by default.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseCommandLine } from '@mlserve/cli';
import { ModelRegistry } from '@mlserve/core';
import { loadRepository, type Repository } from '@mlserve/repository';
import { modelPath } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADAPTERS,
  type Adapter,
  check,
  describeReply,
  digitRequest,
  loadMnist,
  type Running,
  send,
  sleep,
  startServer,
} from './helpers.js';

const AREA = 'Security';
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(ROOT, 'packages/cli/dist/cli.js');
const TOKEN = 's3cret-token';

describe.each(ADAPTERS)('security: %s', (adapter: Adapter) => {
  it('management endpoints are off by default', async () => {
    await check(
      {
        area: AREA,
        name: 'management off by default',
        adapter,
        sent: 'POST /v2/repository/index and POST /v2/repository/models/mnist/unload to a server given no `management` option',
      },
      async (row) => {
        const registry = new ModelRegistry();
        registry.add(await loadMnist());
        const server = await startServer(adapter, { registry });
        try {
          const index = await send(server.url, '/v2/repository/index', { body: '{}' });
          const unload = await send(server.url, '/v2/repository/models/mnist/unload', { body: '{}' });
          const meta = (await send(server.url, '/v2')).json as { extensions: string[] };
          const infer = await send(server.url, '/v2/models/mnist/infer', {
            body: JSON.stringify(digitRequest(0)),
          });
          row.got = `index ${describeReply(index)}; unload ${describeReply(unload)}; model still served: ${infer.status}; extensions without model_repository: ${!meta.extensions.includes('model_repository')}`;
          expect(index.status).toBe(404);
          expect(unload.status).toBe(404);
          expect(infer.status).toBe(200);
          expect(meta.extensions).not.toContain('model_repository');
        } finally {
          await server.close();
          await registry.close();
        }
      },
    );
  });

  describe('with a model repository and a management token', () => {
    let dir: string;
    let repo: Repository;
    let server: Running;

    beforeAll(async () => {
      // <tmp>/repo/mnist/1/model.onnx is served; <tmp>/outside/1/model.onnx must stay out of reach.
      dir = await mkdtemp(join(tmpdir(), 'mlserve-rel-sec-'));
      for (const d of ['repo/mnist/1', 'outside/1', 'repo/other/1'])
        await mkdir(join(dir, d), { recursive: true });
      await copyFile(modelPath('mnist-cnn.onnx'), join(dir, 'repo/mnist/1/model.onnx'));
      await copyFile(modelPath('mnist-cnn.onnx'), join(dir, 'outside/1/model.onnx'));
      await copyFile(modelPath('mnist-cnn.onnx'), join(dir, 'repo/other/1/model.onnx'));
      repo = await loadRepository(join(dir, 'repo'), { intraOpThreads: 1, warmup: false });
      await repo.unloadModel('other');
      server = await startServer(adapter, {
        registry: repo.registry,
        management: { ...repo.management(), token: TOKEN },
      });
    });
    afterAll(async () => {
      await server.close();
      await repo.close();
      await rm(dir, { recursive: true, force: true });
    });

    it('needs the bearer token', async () => {
      await check(
        {
          area: AREA,
          name: 'management behind a token',
          adapter,
          sent: 'POST .../other/load and .../mnist/unload with no Authorization, a wrong token, a lower-case scheme, then the right token for load',
        },
        async (row) => {
          const auth = (v: string | undefined): Record<string, string> =>
            v === undefined ? {} : { authorization: v };
          const results: string[] = [];
          for (const [label, header] of [
            ['none', undefined],
            ['wrong', 'Bearer nope'],
            ['lower-case scheme', `bearer ${TOKEN}`],
            ['token with a suffix', `Bearer ${TOKEN}x`],
          ] as const) {
            const unload = await send(server.url, '/v2/repository/models/mnist/unload', {
              body: '{}',
              headers: auth(header),
            });
            const load = await send(server.url, '/v2/repository/models/other/load', {
              body: '{}',
              headers: auth(header),
            });
            results.push(`${label}: unload ${unload.status}, load ${load.status}`);
            expect(unload.status).toBe(401);
            expect(load.status).toBe(401);
          }
          const names = repo.registry.names();
          const ok = await send(server.url, '/v2/repository/models/other/load', {
            body: '{}',
            headers: auth(`Bearer ${TOKEN}`),
          });
          row.got = `${results.join('; ')}; models after the refused calls: ${names.join(',')}; right token: load ${ok.status}`;
          expect(names).toEqual(['mnist']);
          expect(ok.status).toBe(200);
          expect(repo.registry.names().sort()).toEqual(['mnist', 'other']);
        },
      );
    });

    const variants = [
      '..%2Foutside',
      '%2E%2E%2Foutside',
      '%2e%2e%2foutside',
      '..%252Foutside',
      '..%5Coutside',
      '..%2F..%2F..%2F..%2Fetc%2Fpasswd',
      '%2Fetc%2Fpasswd',
      '..',
      '%2E%2E',
      '.%2E',
      'mnist%00..%2Foutside',
      '%C0%AE%C0%AE%2Foutside',
      '..%c0%afoutside',
    ];

    it('model names cannot traverse paths (load, infer, metadata)', async () => {
      await check(
        {
          area: AREA,
          name: 'path traversal in model names',
          adapter,
          sent: `${variants.length} encodings of ../outside (${variants.slice(0, 5).join(', ')}, ...), plus raw ../, to load (with the token), infer and metadata`,
        },
        async (row) => {
          const statuses = new Map<string, number>();
          const wrong: string[] = [];
          const count = (k: string) => statuses.set(k, (statuses.get(k) ?? 0) + 1);
          const headers = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
          for (const v of [...variants, '../outside']) {
            const load = await send(server.url, `/v2/repository/models/${v}/load`, { body: '{}', headers });
            const infer = await send(server.url, `/v2/models/${v}/infer`, {
              body: JSON.stringify(digitRequest(0)),
              headers,
            });
            const meta = await send(server.url, `/v2/models/${v}`);
            const tf = await send(server.url, `/v1/models/${v}:predict`, {
              body: '{"instances":[[1]]}',
              headers,
            });
            for (const [what, r] of [
              ['load', load],
              ['infer', infer],
              ['metadata', meta],
              ['predict', tf],
            ] as const) {
              count(String(r.status));
              if (r.status < 400 || r.status >= 500) wrong.push(`${what} ${v} -> ${describeReply(r)}`);
            }
          }
          const names = repo.registry.names();
          expect(wrong).toEqual([]);
          row.got = `statuses ${[...statuses].map(([s, n]) => `${s}x${n}`).join(' ')}; models served afterwards: ${names.sort().join(', ')}`;
          expect(names.some((n) => n.includes('outside') || n.includes('.') || n.includes('/'))).toBe(false);
        },
      );
    });
  });
});

/** Every non-test TypeScript file under packages/<pkg>/src. */
async function sources(): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const full = join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && !e.name.endsWith('.d.ts'))
        out.push(full);
    }
  };
  for (const p of await readdir(join(ROOT, 'packages'), { withFileTypes: true })) {
    // Test and benchmark tooling never serves requests.
    if (!p.isDirectory() || ['bench', 'test-utils', 'reliability', 'examples'].includes(p.name)) continue;
    await walk(join(ROOT, 'packages', p.name, 'src')).catch(() => undefined);
  }
  return out;
}

/**
 * Uses that are allowed, with the reason: none takes request data. A new hit fails the test until
 * someone reads it and adds it here.
 */
const ALLOWED: Record<string, string> = {
  'packages/workers/src/processes.ts child_process':
    "fork()s the package's own dist/child.js with fixed arguments; models come from the pool's options",
};

const DANGEROUS: [label: string, re: RegExp][] = [
  ['eval(', /(^|[^.\w])eval\s*\(/m],
  ['new Function', /\bnew\s+Function\s*\(/],
  ['Function(', /(^|[^.\w])Function\s*\(\s*['"`]/m],
  // exec/spawn/fork can only run a program through child_process: any import of it is a hit.
  ['child_process', /['"](node:)?child_process['"]/],
  ['vm', /['"](node:)?vm['"]/],
  ['setTimeout(string)', /setTimeout\s*\(\s*['"`]/],
];

/** Packages on the request path, which must not touch the file system at all. */
const REQUEST_PATH = ['core', 'http', 'batching', 'cache', 'metrics', 'monitor', 'features', 'grpc'];
/** File system use on the request path that is allowed, with the reason. */
const FS_ALLOWED: Record<string, string> = {
  'packages/monitor/src/sink.ts':
    "the monitor's file sink appends to the path its options name (operator config, never request data)",
  'packages/monitor/src/profile.ts':
    'profile() reads and writes the path its caller names (operator config, never request data)',
  'packages/monitor/src/ingest.ts':
    'ingestFeedbackFile() reads the labels file its caller names (operator config, never request data)',
};

describe('security: the source', () => {
  it('no request data reaches eval, a shell or a file path', async () => {
    await check(
      {
        area: AREA,
        name: 'no eval, shell or file path on request data (source scan)',
        adapter: '-',
        sent: `grep of every non-test packages/*/src/**/*.ts for ${DANGEROUS.map(([l]) => l).join(', ')}; fs imports in the request-path packages (${REQUEST_PATH.join(', ')})`,
      },
      async (row) => {
        const hits: string[] = [];
        const fsHits: string[] = [];
        const files = await sources();
        for (const file of files) {
          const rel = relative(ROOT, file);
          const text = (await readFile(file, 'utf8'))
            // Comments and TSDoc may mention anything.
            .replace(/\/\*[\s\S]*?\*\//g, '')
            .replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
          for (const [label, re] of DANGEROUS) if (re.test(text)) hits.push(`${rel} ${label}`);
          const pkg = rel.split('/')[1]!;
          if (REQUEST_PATH.includes(pkg) && /from\s+['"](node:)?fs(\/promises)?['"]/.test(text))
            fsHits.push(rel);
        }
        const unexplained = hits.filter((h) => !(h in ALLOWED));
        row.got =
          `${files.length} files scanned; hits: ${hits.map((h) => `${h} (${ALLOWED[h] ?? 'UNEXPLAINED'})`).join('; ') || 'none'}; ` +
          `fs imports on the request path: ${fsHits.map((f) => `${f} (${FS_ALLOWED[f] ?? 'UNEXPLAINED'})`).join('; ') || 'none'}`;
        expect(files.length).toBeGreaterThan(20);
        expect(unexplained).toEqual([]);
        expect(fsHits.filter((f) => !(f in FS_ALLOWED))).toEqual([]);
      },
    );
  });
});

describe('security: the mlserve CLI', () => {
  let child: ChildProcess | undefined;
  let dir: string;
  afterAll(async () => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('binds to loopback by default', async () => {
    const external = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    await check(
      {
        area: AREA,
        name: 'default bind address is loopback',
        adapter: 'cli',
        sent: `\`mlserve serve\` with no --host; a connection to this machine's ${external ?? '(no non-loopback interface)'} on its port`,
      },
      async (row) => {
        const parsed = parseCommandLine(['serve', '--model-repository', '.']);
        expect(parsed.command).toBe('serve');
        const host = parsed.command === 'serve' ? parsed.options.host : undefined;
        const mgmt = parsed.command === 'serve' ? parsed.options.management : undefined;
        dir = await mkdtemp(join(tmpdir(), 'mlserve-rel-bind-'));
        child = spawn(
          process.execPath,
          [CLI, 'serve', '--model-repository', dir, '--port', '0', '--poll-interval', '0'],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let out = '';
        child.stdout!.on('data', (d) => {
          out += d;
        });
        const until = Date.now() + 60_000;
        while (!/listening on/.test(out) && Date.now() < until && child.exitCode === null) await sleep(50);
        const m = /listening on http:\/\/([^:]+):(\d+)/.exec(out);
        const port = Number(m?.[2]);
        const tryConnect = (host: string) =>
          new Promise<string>((resolve) => {
            const s = connect({ host, port });
            s.once('connect', () => {
              s.destroy();
              resolve('connected');
            });
            s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
          });
        const loop = await tryConnect('127.0.0.1');
        const ext = external ? await tryConnect(external) : 'no external interface';
        row.got = `default host ${host}, management ${mgmt}; listening on ${m?.[1]}; 127.0.0.1: ${loop}; ${external ?? '-'}: ${ext}`;
        expect(host).toBe('127.0.0.1');
        expect(mgmt).toBe(false);
        expect(m?.[1]).toBe('127.0.0.1');
        expect(loop).toBe('connected');
        if (external) expect(ext).toBe('ECONNREFUSED');
      },
    );
  });
});
