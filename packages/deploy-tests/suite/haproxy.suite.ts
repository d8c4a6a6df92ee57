/**
 * Three `mlserve serve` replicas on loopback behind a real haproxy (Debian's), health-checking the
 * V2 readiness route, sharing one real Redis response cache. Under a steady load through haproxy:
 * a rolling restart (SIGTERM with --shutdown-delay, one replica at a time, each back before the
 * next) loses no request; kill -9 of one replica loses at most the requests it held (counted and
 * printed); an answer one replica computed is a cache hit on another. The haproxy configuration is
 * the recipe in docs/deploy.md.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  mnistHoldout,
  modelPath,
  type RedisServer,
  requireService,
  startRedis,
} from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const CLI = join(root, 'packages/cli/dist/cli.js');

/** haproxy as docs/deploy.md recommends it for mlserve (ports and paths filled in). */
export function haproxyConfig(frontendPort: number, servers: { name: string; port: number }[]): string {
  return `global
  maxconn 1024
  tune.bufsize 262144

defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  # Retry a request that never reached a server, or whose server closed or died without answering
  # (L7 retries need the body buffered). Inference is safe to retry: it changes nothing.
  option http-buffer-request
  retries 3
  retry-on conn-failure empty-response response-timeout 502 503
  option redispatch 1

frontend mlserve
  bind 127.0.0.1:${frontendPort}
  default_backend mlserve

backend mlserve
  balance leastconn
  # Readiness: 503 while loading and from the first moment of a shutdown (--shutdown-delay keeps
  # serving meanwhile), so haproxy stops sending before the listener closes.
  option httpchk GET /v2/health/ready
  http-check expect status 200
  default-server check inter 500ms fall 1 rise 2
${servers.map((s) => `  server ${s.name} 127.0.0.1:${s.port}`).join('\n')}
`;
}

interface Replica {
  name: string;
  port: number;
  child?: ChildProcess;
  log: string;
}

let redis: RedisServer;
let repo: string;
let haproxy: ChildProcess;
let frontend: number;
const replicas: Replica[] = [];

function startReplica(r: Replica): Promise<void> {
  r.log = '';
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--model-repository',
      repo,
      '--port',
      String(r.port),
      '--cache-redis',
      redis.url,
      '--shutdown-delay',
      '2s',
      '--metrics',
      '--poll-interval',
      '0',
      '--log-level',
      'warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout!.on('data', (d) => {
    r.log += d;
  });
  child.stderr!.on('data', (d) => {
    r.log += d;
  });
  r.child = child;
  return waitReady(r);
}

async function status(url: string): Promise<number> {
  return fetch(url, { signal: AbortSignal.timeout(1000) }).then(
    (res) => res.status,
    () => 0,
  );
}

async function waitReady(r: Replica): Promise<void> {
  const end = Date.now() + 60_000;
  while ((await status(`http://127.0.0.1:${r.port}/v2/health/ready`)) !== 200) {
    if (r.child?.exitCode !== null || Date.now() > end) throw new Error(`${r.name} never ready:\n${r.log}`);
    await new Promise((res) => setTimeout(res, 100));
  }
  // haproxy's check: rise 2 x inter 500 ms.
  await new Promise((res) => setTimeout(res, 1500));
}

function exited(child: ChildProcess): Promise<number | null> {
  return child.exitCode !== null
    ? Promise.resolve(child.exitCode)
    : new Promise((res) => child.on('exit', res));
}

const bodies = Array.from({ length: 50 }, (_, i) =>
  JSON.stringify({
    inputs: [
      { name: 'image', shape: [1, 1, 28, 28], datatype: 'FP32', data: Array.from(mnistHoldout().image(i)) },
    ],
  }),
);

/** Closed-loop load through haproxy: `clients` loops until stopped; counts answers by status. */
function load(clients: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: clients });
  const counts = { ok: 0, failed: 0, errors: [] as string[] };
  let running = true;
  const one = (i: number) =>
    new Promise<void>((resolve) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: frontend,
          path: '/v2/models/mnist/infer',
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json' },
          timeout: 30_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200) counts.ok++;
            else {
              counts.failed++;
              counts.errors.push(`status ${res.statusCode}`);
            }
            resolve();
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (e) => {
        counts.failed++;
        counts.errors.push(e.message);
        resolve();
      });
      req.end(bodies[i % bodies.length]);
    });
  const loops = Array.from({ length: clients }, async (_, c) => {
    let i = c;
    while (running) {
      await one(i);
      i += clients;
    }
  });
  return {
    counts,
    async stop() {
      running = false;
      await Promise.all(loops);
      agent.destroy();
      return counts;
    },
  };
}

async function metric(r: Replica, re: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${r.port}/metrics`)).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : 0;
}

beforeAll(async () => {
  requireService('haproxy', 'apt-get install haproxy');
  requireService('redis-server', 'apt-get install redis-server');
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: run npx turbo run build --filter=@mlserve/cli...`);
  redis = await startRedis();
  repo = await mkdtemp(join(tmpdir(), 'mlserve-haproxy-'));
  await mkdir(join(repo, 'mnist', '1'), { recursive: true });
  await copyFile(modelPath('mnist-cnn.onnx'), join(repo, 'mnist', '1', 'model.onnx'));
  await writeFile(
    join(repo, 'mnist', 'config.json'),
    JSON.stringify({ cache: { ttlMs: 600_000 }, warmup: false }),
  );
  for (const name of ['a', 'b', 'c']) replicas.push({ name, port: await freePort(), log: '' });
  await Promise.all(replicas.map(startReplica));
  frontend = await freePort();
  const cfg = join(repo, 'haproxy.cfg');
  await writeFile(cfg, haproxyConfig(frontend, replicas));
  const check = spawnSync('haproxy', ['-c', '-f', cfg], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy -c: ${check.stdout}${check.stderr}`);
  haproxy = spawn('haproxy', ['-db', '-f', cfg], { stdio: ['ignore', 'ignore', 'pipe'] });
  const end = Date.now() + 20_000;
  while ((await status(`http://127.0.0.1:${frontend}/v2/health/ready`)) !== 200) {
    if (Date.now() > end) throw new Error('haproxy never answered');
    await new Promise((res) => setTimeout(res, 100));
  }
}, 180_000);

afterAll(async () => {
  haproxy?.kill('SIGKILL');
  for (const r of replicas) if (r.child && r.child.exitCode === null) r.child.kill('SIGKILL');
  await redis?.stop();
  if (repo) await rm(repo, { recursive: true, force: true });
});

describe('three replicas behind haproxy, one Redis cache', () => {
  it('an answer one replica computed is a cache hit on another', async () => {
    const [a, b] = replicas as [Replica, Replica];
    const body = JSON.stringify({
      inputs: [
        {
          name: 'image',
          shape: [1, 1, 28, 28],
          datatype: 'FP32',
          data: Array.from(mnistHoldout().image(77)),
        },
      ],
    });
    const hits = /^nv_cache_num_hits_per_model\{model="mnist",version="1"\} (\d+)/m;
    const misses = /^nv_cache_num_misses_per_model\{model="mnist",version="1"\} (\d+)/m;
    const before = {
      aMiss: await metric(a, misses),
      bHit: await metric(b, hits),
      bMiss: await metric(b, misses),
    };
    const post = (r: Replica) =>
      fetch(`http://127.0.0.1:${r.port}/v2/models/mnist/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      }).then(async (res) => ({ status: res.status, json: (await res.json()) as { outputs: unknown } }));
    const first = await post(a);
    const second = await post(b);
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.json.outputs).toEqual(first.json.outputs);
    expect((await metric(a, misses)) - before.aMiss).toBe(1);
    expect((await metric(b, hits)) - before.bHit).toBe(1);
    expect((await metric(b, misses)) - before.bMiss).toBe(0);
  });

  it('a rolling restart under load (SIGTERM with --shutdown-delay, one at a time) loses no request', async () => {
    const driver = load(8);
    await new Promise((res) => setTimeout(res, 1000));
    for (const r of replicas) {
      r.child!.kill('SIGTERM');
      expect(await exited(r.child!)).toBe(0);
      await startReplica(r);
    }
    await new Promise((res) => setTimeout(res, 1000));
    const counts = await driver.stop();
    process.stdout.write(`rolling restart: ${counts.ok} answered, ${counts.failed} failed\n`);
    expect(counts.ok).toBeGreaterThan(100);
    expect(counts.errors).toEqual([]);
  }, 300_000);

  it('kill -9 of one replica under load loses at most the requests it held (with haproxy retries: counted)', async () => {
    const clients = 8;
    const driver = load(clients);
    await new Promise((res) => setTimeout(res, 1500));
    const victim = replicas[1]!;
    victim.child!.kill('SIGKILL');
    await exited(victim.child!);
    await new Promise((res) => setTimeout(res, 3000));
    const counts = await driver.stop();
    process.stdout.write(
      `kill -9: ${counts.ok} answered, ${counts.failed} failed (${counts.errors.join(', ') || 'none'})\n`,
    );
    expect(counts.ok).toBeGreaterThan(100);
    // It held at most one request per client (closed loop), and haproxy retries what never got an answer.
    expect(counts.failed).toBeLessThanOrEqual(clients);
    // And the survivors keep serving while it is gone; then it comes back.
    await startReplica(victim);
    expect(await status(`http://127.0.0.1:${frontend}/v2/health/ready`)).toBe(200);
  }, 300_000);
});
