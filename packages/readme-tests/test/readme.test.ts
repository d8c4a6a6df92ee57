/**
 * Every code block of every README runs as written (issue 21 item 2).
 *
 * - ```ts blocks (root README.md, packages/*\/README.md, docs/**\/*.md) are typechecked strictly
 *   (`strict`, `module`/`moduleResolution: nodenext`) in a fresh app that has the PACKED packages
 *   (`npm pack` of every public package, extracted into its node_modules/@mlserve; third-party
 *   packages are linked from the workspace's node_modules, so nothing needs the network).
 * - Unmarked ```ts blocks are then run, each as its own node process (the tsc output, no loader),
 *   in a directory holding the paths the READMEs name (see README.md of this package), with
 *   PORT (a free loopback port) and REDIS_URL (a real redis-server) set. A block either exits by
 *   itself with code 0, or listens on PORT: then it must answer GET /v2/health/ready with 200
 *   (gRPC: ServerReady) and exit with code 0 after SIGTERM.
 * - ```ts compile-only: typechecked, not run. ```ts fragment: neither.
 * - ```sh blocks must parse (`bash -n`); ```json blocks must parse.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { createGrpcClient } from '@mlserve/client/grpc';
import { freePort, modelPath, type RedisServer, requireService, startRedis } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packWorkspaces } from '../../../scripts/pack.mjs';
import { type Block, extractBlocks } from '../src/extract.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const RUN_TIMEOUT_MS = 45_000;
const STOP_TIMEOUT_MS = 15_000;

// ------------------------------------------------------------------------------------------------
// The READMEs and their blocks (read when the file is collected: one test per block)
function markdownFiles(): string[] {
  const files = ['README.md'];
  for (const dir of readdirSync(join(root, 'packages')).sort()) {
    if (existsSync(join(root, 'packages', dir, 'README.md'))) files.push(`packages/${dir}/README.md`);
  }
  const walk = (dir: string): string[] =>
    existsSync(join(root, dir))
      ? readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) =>
          e.isDirectory() ? walk(`${dir}/${e.name}`) : e.name.endsWith('.md') ? [`${dir}/${e.name}`] : [],
        )
      : [];
  return [...files, ...walk('docs').sort()];
}

/**
 * READMEs whose ```ts blocks are not checked YET (their sh/json blocks are): being made to run as
 * written, one README at a time (issue 21 item 2). Remove a file from here when its blocks pass.
 */
const NOT_YET = new Set<string>([]);

const blocks = markdownFiles().flatMap((file) => extractBlocks(file, readFileSync(join(root, file), 'utf8')));
const TS = new Set(['ts', 'typescript']);
const tsBlocks = blocks.filter((b) => TS.has(b.lang) && b.mode !== 'fragment' && !NOT_YET.has(b.file));
const where = (b: Block) => `${b.file}:${b.line}`;
const idOf = (b: Block) =>
  `${b.file
    .replace(/\/README\.md$/, '')
    .replace(/^packages\//, '')
    .replace(/[^a-zA-Z0-9]+/g, '-')}-L${b.line}`;

// ------------------------------------------------------------------------------------------------
// The app: packed packages + linked third-party packages, one .ts file per block, one tsc run
let work = '';
let app = '';
let redis: RedisServer | undefined;
/** `mlserve serve` (the packed CLI) for blocks that are clients: MLSERVE_URL, MLSERVE_GRPC_URL. */
let server: { child: ChildProcess; env: Record<string, string> } | undefined;
const diagnostics = new Map<string, string[]>(); // block id -> "file:line: TSxxxx message"

function publicPackages(): { name: string; dir: string }[] {
  return readdirSync(join(root, 'packages'))
    .map((dir) => ({ dir: join(root, 'packages', dir), file: join(root, 'packages', dir, 'package.json') }))
    .filter((p) => existsSync(p.file))
    .map((p) => ({ ...p, json: JSON.parse(readFileSync(p.file, 'utf8')) }))
    .filter((p) => p.json.private !== true)
    .map((p) => {
      for (const f of [p.json.main, p.json.module, p.json.types]) {
        if (f && !existsSync(join(p.dir, f))) {
          throw new Error(`${p.json.name} is not built (${f} missing): run npm run build first`);
        }
      }
      return { name: p.json.name as string, dir: p.dir };
    });
}

function buildApp(): void {
  const packages = publicPackages();
  const packDir = join(work, 'pack');
  mkdirSync(packDir);
  const packed = packWorkspaces(
    root,
    packages.map((p) => p.dir),
    packDir,
  );

  app = join(work, 'app');
  const modules = join(app, 'node_modules');
  mkdirSync(join(modules, '@mlserve'), { recursive: true });
  for (const t of packed) {
    const at = join(modules, t.name);
    mkdirSync(at);
    execFileSync('tar', ['xzf', join(packDir, t.filename), '-C', at, '--strip-components=1']);
  }
  // Everything else from the workspace, as an app that installed it would have it.
  for (const entry of readdirSync(join(root, 'node_modules'))) {
    if (entry.startsWith('.') || entry === '@mlserve') continue;
    symlinkSync(join(root, 'node_modules', entry), join(modules, entry), 'dir');
  }
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'readme-app', private: true, type: 'module' }),
  );
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        target: 'ES2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        moduleDetection: 'force',
        types: ['node'],
        skipLibCheck: true,
        rootDir: 'snippets',
        outDir: 'out',
        pretty: false,
      },
      include: ['snippets'],
    }),
  );
  mkdirSync(join(app, 'snippets'));
  for (const b of tsBlocks) writeFileSync(join(app, 'snippets', `${idOf(b)}.ts`), `${b.code}\n`);

  let output = '';
  try {
    execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', app], {
      cwd: app,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    output = `${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
  const byId = new Map(tsBlocks.map((b) => [idOf(b), b]));
  for (const line of output.split('\n')) {
    const m = /^snippets\/(.+)\.ts\((\d+),(\d+)\): (error TS\d+: .*)$/.exec(line.trim());
    if (!m) {
      if (/error TS/.test(line)) diagnostics.set('*', [...(diagnostics.get('*') ?? []), line]);
      continue;
    }
    const b = byId.get(m[1]!);
    if (!b) continue;
    diagnostics.set(m[1]!, [
      ...(diagnostics.get(m[1]!) ?? []),
      `${b.file}:${b.line + Number(m[2])}: ${m[4]}`,
    ]);
  }
}

/** The paths the READMEs name, linked into a fresh directory for each block. */
let runs = 0;
function fixtureDir(id: string): string {
  const dir = join(work, 'run', `${id}-${++runs}`);
  const link = (path: string, target: string) => {
    mkdirSync(join(dir, path, '..'), { recursive: true });
    symlinkSync(target, join(dir, path));
  };
  mkdirSync(dir, { recursive: true });
  link('node_modules', join(app, 'node_modules'));
  link('package.json', join(app, 'package.json'));
  link('packages/examples/model-repository', join(root, 'packages/examples/model-repository'));
  // A real directory: the repository refuses model directories that resolve outside it.
  cpSync(join(root, 'packages/examples/model-repository/mnist'), join(dir, 'model-repository/mnist'), {
    recursive: true,
  });
  link('mnist.onnx', modelPath('mnist-cnn.onnx'));
  link('mnist-cnn.onnx', modelPath('mnist-cnn.onnx'));
  link('models/mnist-cnn.onnx', modelPath('mnist-cnn.onnx'));
  link('models/mobilenetv2.onnx', modelPath('mobilenetv2.onnx'));
  return dir;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'mlserve-readme-'));
  buildApp();
  if (tsBlocks.some((b) => b.mode === 'run' && /REDIS_URL/.test(b.code))) {
    if (requireService('redis-server', 'apt-get install -y redis-server')) redis = await startRedis();
  }
  if (tsBlocks.some((b) => b.mode === 'run' && /MLSERVE_(GRPC_)?URL/.test(b.code)))
    server = await startServer();
});

afterAll(async () => {
  if (server && server.child.exitCode === null && server.child.signalCode === null) {
    const exited = new Promise((r) => server!.child.once('exit', r));
    server.child.kill('SIGTERM');
    await Promise.race([exited, sleep(STOP_TIMEOUT_MS)]);
    server.child.kill('SIGKILL');
  }
  await redis?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** The packed CLI, installed alone, serving model-repository/ over HTTP and gRPC on free ports. */
async function startServer(): Promise<{ child: ChildProcess; env: Record<string, string> }> {
  const dir = strictApp('server-app', ['@mlserve/cli']);
  const json = JSON.parse(readFileSync(join(dir, 'node_modules/@mlserve/cli/package.json'), 'utf8'));
  const [port, grpcPort] = [await freePort(), await freePort()];
  const args = ['serve', '--model-repository', './model-repository', '--port', String(port)];
  const child = spawn(
    process.execPath,
    [join(dir, 'node_modules/@mlserve/cli', json.bin.mlserve), ...args, '--grpc-port', String(grpcPort)],
    { cwd: fixtureDir('server'), stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const until = Date.now() + RUN_TIMEOUT_MS;
  const mnistReady = () =>
    fetch(`http://127.0.0.1:${port}/v2/models/mnist/ready`).then(
      (r) => r.status === 200,
      () => false,
    );
  while (!(await mnistReady())) {
    if (child.exitCode !== null || Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`mlserve serve (for the client blocks) did not become ready:\n${tail(output)}`);
    }
    await sleep(200);
  }
  return {
    child,
    env: { MLSERVE_URL: `http://127.0.0.1:${port}`, MLSERVE_GRPC_URL: `127.0.0.1:${grpcPort}` },
  };
}

// ------------------------------------------------------------------------------------------------
// Running one block
interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

async function answers(port: number, grpc: boolean): Promise<string | undefined> {
  if (grpc) {
    const client = createGrpcClient({ url: `127.0.0.1:${port}` });
    try {
      return (await client.serverReady({ timeoutMs: 1000 })) ? 'ServerReady: true' : undefined;
    } catch {
      return undefined;
    } finally {
      await client.close();
    }
  }
  let res: Response;
  try {
    res = await fetch(`http://127.0.0.1:${port}/v2/health/ready`, { signal: AbortSignal.timeout(1000) });
  } catch {
    return undefined;
  }
  return res.status === 200 ? 'GET /v2/health/ready: 200' : undefined;
}

/** A server that serves `mnist` must classify the README's digit 7; one that mounts metrics serves them. */
async function checkServer(b: Block, port: number): Promise<void> {
  const base = `http://127.0.0.1:${port}`;
  const meta = await fetch(`${base}/v2/models/mnist`);
  // A block that names mnist or a model repository must serve mnist (a server with no model is
  // ready too).
  if (/mnist|model-repository/.test(b.code)) {
    expect(
      meta.status,
      `${where(b)}: GET /v2/models/mnist answered ${meta.status}: mnist is not served`,
    ).toBe(200);
  }
  if (meta.status === 200) {
    const res = await fetch(`${base}/v2/models/mnist/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: readFileSync(join(root, 'packages/examples/requests/digit-7.json')),
    });
    const text = await res.text();
    expect(res.status, `${where(b)}: POST /v2/models/mnist/infer answered ${res.status}: ${text}`).toBe(200);
    // digit-7.json asks for the classification extension: "score:index" of the top class.
    const top = (JSON.parse(text) as { outputs: { name: string; data: string[] }[] }).outputs.find(
      (o) => o.name === 'logits',
    )?.data[0];
    expect(top?.split(':')[1], `${where(b)}: the digit 7 was not classified as 7: ${text}`).toBe('7');
  }
  if (/metrics: /.test(b.code)) {
    const res = await fetch(`${base}/metrics`);
    const text = await res.text();
    expect(res.status, `${where(b)}: GET /metrics answered ${res.status}`).toBe(200);
    expect(text, `${where(b)}: GET /metrics has no mlserve_ series`).toMatch(/^mlserve_/m);
  }
}

async function runBlock(
  b: Block,
  argv: (port: number) => string[] = () => [join(app, 'out', `${idOf(b)}.js`)],
): Promise<{ ran: Ran; served?: string }> {
  const port = await freePort();
  const env: NodeJS.ProcessEnv = { ...process.env, PORT: String(port), NODE_ENV: 'test' };
  if (redis) env.REDIS_URL = redis.url;
  Object.assign(env, server?.env);
  delete env.NODE_OPTIONS; // vitest's own loader options are not the user's
  const child: ChildProcess = spawn(process.execPath, argv(port), {
    cwd: fixtureDir(idOf(b)),
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const exited = new Promise<Ran>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, output })),
  );
  let done: Ran | undefined;
  void exited.then((r) => (done = r));
  const grpc = /serveGrpc\(/.test(b.code);
  const until = Date.now() + RUN_TIMEOUT_MS;
  try {
    while (!done && Date.now() < until) {
      const served = await answers(port, grpc);
      if (served) {
        if (!grpc) await checkServer(b, port);
        child.kill('SIGTERM');
        const stopped = await Promise.race([exited, sleep(STOP_TIMEOUT_MS).then(() => undefined)]);
        if (!stopped) {
          throw new Error(
            `${where(b)}: the server answered (${served}) but did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM\n${tail(output)}`,
          );
        }
        return { ran: stopped, served };
      }
      await Promise.race([exited, sleep(200)]);
    }
    if (!done) {
      throw new Error(
        `${where(b)}: neither exited nor answered on PORT=${port} within ${RUN_TIMEOUT_MS / 1000} s (a server block must listen on process.env.PORT)\n${tail(output)}`,
      );
    }
    return { ran: done };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

// ------------------------------------------------------------------------------------------------
// An app that installed only what one README install line names: those packages, the packed
// @mlserve packages they depend on, and the dependencies and required peers of those (what npm
// installs for that line). Packed @mlserve packages are copied, so their imports resolve here only.
function strictApp(name: string, packages: string[]): string {
  const dir = join(work, name);
  const modules = join(dir, 'node_modules');
  mkdirSync(join(dir, 'out'), { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, private: true, type: 'module' }));
  const queue = [...packages];
  const seen = new Set<string>();
  while (queue.length > 0) {
    const pkg = queue.shift()!;
    if (seen.has(pkg)) continue;
    seen.add(pkg);
    mkdirSync(join(modules, pkg, '..'), { recursive: true });
    if (!pkg.startsWith('@mlserve/')) {
      if (existsSync(join(root, 'node_modules', pkg)))
        symlinkSync(join(root, 'node_modules', pkg), join(modules, pkg));
      continue;
    }
    const packed = join(app, 'node_modules', pkg);
    if (!existsSync(packed)) throw new Error(`${pkg} is not a public package of this repository`);
    cpSync(packed, join(modules, pkg), { recursive: true });
    const json = JSON.parse(readFileSync(join(packed, 'package.json'), 'utf8'));
    const optional = json.peerDependenciesMeta ?? {};
    queue.push(
      ...Object.keys(json.dependencies ?? {}),
      ...Object.keys(json.peerDependencies ?? {}).filter((peer) => !optional[peer]?.optional),
    );
  }
  return dir;
}

/** The packages an `npm install ...` line of a sh block names. */
function installLine(b: Block, pick: (names: string[]) => boolean): string[] {
  for (const line of b.code.split('\n')) {
    const m = /^npm install ([^#]+)/.exec(line.trim());
    const names = (m?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
    if (names.length > 0 && pick(names)) return names;
  }
  throw new Error(`${where(b)}: no matching npm install line`);
}

// ------------------------------------------------------------------------------------------------
describe('README code blocks', () => {
  it('finds the blocks, and tsc itself reports nothing outside them', () => {
    expect(tsBlocks.length).toBeGreaterThan(15);
    expect(diagnostics.get('*') ?? []).toEqual([]);
  });

  it.each(
    blocks
      .filter((b) => b.unknown.length > 0 && ['ts', 'js', 'sh'].includes(b.lang))
      .map((b) => [where(b), b]),
  )('%s has a known marker', (_w, b) => {
    expect.fail(`${where(b)}: unknown marker "${b.unknown.join(' ')}" (use compile-only or fragment)`);
  });

  it.each(
    blocks
      .filter((b) => b.lang === 'js' && b.mode !== 'fragment' && !NOT_YET.has(b.file))
      .map((b) => [where(b), b]),
  )('%s (js) is marked fragment or written as ts', (_w, b) => {
    expect.fail(`${where(b)}: js blocks are not checked; write it as \`\`\`ts or mark it \`\`\`js fragment`);
  });

  it.each(blocks.filter((b) => b.lang === 'sh' && b.mode !== 'fragment').map((b) => [where(b), b]))(
    '%s (sh) parses',
    (_w, b) => {
      try {
        execFileSync('bash', ['-n'], { input: b.code, stdio: ['pipe', 'pipe', 'pipe'] });
      } catch (err) {
        expect.fail(`${where(b)}: bash -n: ${String((err as { stderr?: Buffer }).stderr ?? err)}`);
      }
    },
  );

  it.each(blocks.filter((b) => b.lang === 'json' && b.mode !== 'fragment').map((b) => [where(b), b]))(
    '%s (json) parses',
    (_w, b) => {
      expect(() => JSON.parse(b.code), `${where(b)}: not valid JSON`).not.toThrow();
    },
  );

  it('README.md: the headline example runs in an app that installed only the Fastify line', async () => {
    const root = blocks.filter((b) => b.file === 'README.md');
    const install = root.find((b) => b.lang === 'sh' && /npm install .*fastify/.test(b.code));
    const headline = root.find((b) => TS.has(b.lang) && b.mode === 'run');
    expect(install, 'README.md has an npm install line for Fastify').toBeDefined();
    expect(headline, 'README.md has a headline ts block').toBeDefined();
    const packages = installLine(install!, (names) => names.includes('fastify'));
    const dir = strictApp('fastify-app', packages);
    copyFileSync(join(app, 'out', `${idOf(headline!)}.js`), join(dir, 'out', 'headline.js'));
    const { ran, served } = await runBlock(headline!, () => [join(dir, 'out', 'headline.js')]);
    expect(served, `${where(headline!)}: never answered on PORT\n${tail(ran.output)}`).toBeDefined();
    expect(ran.code, `${where(headline!)} (installed: ${packages.join(' ')})\n${tail(ran.output)}`).toBe(0);
  });

  it('README.md: the CLI line serves the model repository from the packed @mlserve/cli alone', async () => {
    const install = blocks.find(
      (b) => b.file === 'README.md' && b.lang === 'sh' && /npx @mlserve\/cli serve/.test(b.code),
    );
    expect(install, 'README.md has an npx @mlserve/cli serve line').toBeDefined();
    const line = install!.code.split('\n').find((l) => l.startsWith('npx @mlserve/cli serve'))!;
    const args = line.replace(/#.*/, '').trim().split(/\s+/).slice(2); // after `npx @mlserve/cli`
    const dir = strictApp('cli-app', ['@mlserve/cli']);
    const json = JSON.parse(readFileSync(join(dir, 'node_modules/@mlserve/cli/package.json'), 'utf8'));
    const bin = join(dir, 'node_modules/@mlserve/cli', json.bin.mlserve);
    const withPort = (port: number) => args.map((a, i) => (args[i - 1] === '--port' ? String(port) : a));
    const { ran, served } = await runBlock(install!, (port) => [bin, ...withPort(port)]);
    expect(served, `${where(install!)}: \`${line}\` never answered\n${tail(ran.output)}`).toBeDefined();
    expect(ran.code, `${where(install!)}: \`${line}\` after SIGTERM\n${tail(ran.output)}`).toBe(0);
  });

  describe.concurrent('ts', () => {
    it.each(
      tsBlocks.map((b) => [`${where(b)} (${b.mode === 'run' ? 'typecheck + run' : 'compile-only'})`, b]),
    )('%s', async (_w, b) => {
      const errors = diagnostics.get(idOf(b)) ?? [];
      if (errors.length > 0) {
        expect.fail(
          `${where(b)} does not typecheck (strict, nodenext, packed packages):\n${errors.join('\n')}`,
        );
      }
      if (b.mode !== 'run') return;
      const { ran } = await runBlock(b);
      if (process.env.README_TESTS_SHOW) console.log(`--- ${where(b)} printed:\n${ran.output}`);
      if (ran.code !== 0) {
        expect.fail(
          `${where(b)} exited with ${ran.code ?? ran.signal} (cwd: the fixture layout of packages/readme-tests/README.md)\n${tail(ran.output)}`,
        );
      }
    });
  });
});
