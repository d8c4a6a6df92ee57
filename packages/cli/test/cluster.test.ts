/**
 * `mlserve serve --processes N`: the built CLI as a child process (node:cluster forks dist/cli.js),
 * real HTTP on loopback, real models; and the npx orphan fix. `npm test` builds first; alone, run
 * `npx turbo run build --filter=@mlserve/cli...`.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpuBudget } from '@mlserve/repository';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { processBudget } from '../src/cluster.js';
import { CLI, killChildren, type Running, requireBuiltCli, spawnProcess } from './helpers.js';

const pids: number[] = [];
afterEach(() => {
  killChildren();
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
});

/** `command args`; its `waitFor` matches stdout or stderr, within 90 s. */
function run(command: string, args: string[], options: { cwd?: string } = {}): Running {
  return spawnProcess(command, args, { ...options, matchStderr: true, waitMs: 90_000 });
}

/** Direct children of a process, from /proc. */
function childPids(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {}
  }
  return found;
}

/** Running (a zombie waiting to be reaped counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function until<T>(
  what: string,
  f: () => Promise<T | undefined> | T | undefined,
  ms = 60_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// A fresh connection per check (no keep-alive pool). A connection the primary hands to a process at
// the moment it dies is lost with it (node:cluster's round robin): a short timeout covers it, as a
// load balancer's does.
const status = (url: string) =>
  new Promise<number>((resolve) => {
    const req = get(url, { agent: false, timeout: 500 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });

function digitRequest(i: number) {
  return JSON.stringify({
    inputs: [
      { name: 'image', shape: [1, 1, 28, 28], datatype: 'FP32', data: Array.from(mnistHoldout().image(i)) },
    ],
  });
}

async function infer(url: string, i: number): Promise<number> {
  // A new connection per request: the cluster's round robin spreads connections.
  const res = await fetch(`${url}/v2/models/mnist/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', connection: 'close' },
    body: digitRequest(i),
    signal: AbortSignal.timeout(20_000),
  });
  await res.arrayBuffer();
  return res.status;
}

function metricValue(text: string, line: RegExp): number {
  const m = line.exec(text);
  return m ? Number(m[1]) : Number.NaN;
}

let repo: string;
beforeAll(async () => {
  requireBuiltCli();
  repo = await mkdtemp(join(tmpdir(), 'mlserve-cluster-'));
  await mkdir(join(repo, 'mnist', '1'), { recursive: true });
  await copyFile(modelPath('mnist-cnn.onnx'), join(repo, 'mnist', '1', 'model.onnx'));
  await writeFile(join(repo, 'mnist', 'config.json'), JSON.stringify({ warmup: false }));
});
afterAll(async () => {
  await rm(repo, { recursive: true, force: true });
});

describe('the thread budget across processes', () => {
  it('gives each process an equal share of the CPUs and warns when threads outnumber them', () => {
    expect(processBudget({ workers: 0 }, 2, 8)).toEqual({ cpusPerProcess: 4 });
    expect(processBudget({ workers: 0 }, 3, 8)).toEqual({ cpusPerProcess: 2 });
    expect(processBudget({ workers: 0 }, 4, 2)).toMatchObject({ cpusPerProcess: 1 });
    expect(processBudget({ workers: 0 }, 4, 2).warning).toMatch(/4 processes on 2 CPU/);
    expect(processBudget({ workers: 2, intraOpThreads: 2 }, 2, 8)).toEqual({ cpusPerProcess: 4 });
    expect(processBudget({ workers: 2, intraOpThreads: 2 }, 2, 4).warning).toMatch(/8 threads on 4 CPU/);
  });
});

describe('mlserve serve --processes', () => {
  it('shares the port; /metrics aggregates every process; readiness waits for all; a killed process is replaced and counted; SIGTERM drains all', async () => {
    const r = run(process.execPath, [
      CLI,
      'serve',
      '--model-repository',
      repo,
      '--port',
      '0',
      '--processes',
      '2',
      '--metrics',
      '--poll-interval',
      '0',
    ]);
    const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    await until('ready', async () => ((await status(`${url}/v2/health/ready`)) === 200 ? true : undefined));
    const workers = childPids(r.child.pid!);
    expect(workers).toHaveLength(2);
    pids.push(...workers);

    // 40 requests, one connection each: both processes serve, and /metrics counts all of them.
    const statuses = await Promise.all(Array.from({ length: 40 }, (_, i) => infer(url!, i)));
    expect(statuses.every((s) => s === 200)).toBe(true);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metricValue(metrics, /^nv_inference_request_success\{model="mnist",version="1"\} (\d+)/m)).toBe(
      40,
    );
    expect(metricValue(metrics, /^mlserve_cluster_processes\{state="ready"\} (\d+)/m)).toBe(2);
    expect(metricValue(metrics, /^mlserve_cluster_process_restarts_total (\d+)/m)).toBe(0);
    // Each process answered some: their CPU time is in the aggregate, and each model loaded once per process.
    expect(metricValue(metrics, /^mlserve_model_versions\{model="mnist",state="ready"\} (\d+)/m)).toBe(2);

    // kill -9 one process: readiness drops until its replacement has loaded, requests keep working.
    process.kill(workers[0]!, 'SIGKILL');
    await until('not ready', async () =>
      (await status(`${url}/v2/health/ready`)) === 503 ? true : undefined,
    );
    expect(await infer(url!, 1)).toBe(200);
    await until('ready again', async () =>
      (await status(`${url}/v2/health/ready`)) === 200 ? true : undefined,
    );
    const replaced = childPids(r.child.pid!);
    pids.push(...replaced);
    expect(replaced).toHaveLength(2);
    expect(replaced).not.toContain(workers[0]);
    expect(r.stderr()).toMatch(new RegExp(`process ${workers[0]} exited \\(SIGKILL\\); replacing it`));
    const after = await (await fetch(`${url}/metrics`)).text();
    expect(metricValue(after, /^mlserve_cluster_process_restarts_total (\d+)/m)).toBe(1);

    // SIGTERM to the primary: every process drains, requests in flight finish, exit 0.
    const inFlight = Array.from({ length: 20 }, (_, i) => infer(url!, i));
    await new Promise((res) => setTimeout(res, 20));
    r.child.kill('SIGTERM');
    const late = await Promise.allSettled(inFlight);
    // Every request the server accepted was answered 200; connections it never accepted are refused.
    for (const s of late) if (s.status === 'fulfilled') expect(s.value).toBe(200);
    expect(await r.exited).toBe(0);
    for (const pid of replaced) expect(alive(pid)).toBe(false);
  }, 120_000);

  it('--processes auto starts one per CPU this server may use', async () => {
    const r = run(process.execPath, [
      CLI,
      'serve',
      '--model-repository',
      repo,
      '--port',
      '0',
      '--processes',
      'auto',
      '--poll-interval',
      '0',
    ]);
    const cpus = cpuBudget();
    if (cpus === 1) {
      // One CPU: no cluster at all.
      await r.waitFor(/listening on/);
      expect(r.stderr()).not.toMatch(/processes on/);
    } else {
      const [, n] = await r.waitFor(/mlserve: (\d+) processes on (\d+) CPU/);
      expect(r.stderr()).toMatch(new RegExp(`a budget of ${Math.max(1, Math.floor(cpus / cpus))} CPU`));
      expect(Number(n)).toBe(cpus);
      await r.waitFor(/listening on/);
    }
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  }, 90_000);
});

describe('under npx', () => {
  it('kill -TERM on the npx process stops the server (it used to stay running, orphaned)', async () => {
    // A project with mlserve installed: npx finds node_modules/.bin/mlserve and runs it through sh -c.
    const project = await mkdtemp(join(tmpdir(), 'mlserve-npx-'));
    try {
      await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'npx-test', version: '1.0.0' }));
      await mkdir(join(project, 'node_modules', '.bin'), { recursive: true });
      await symlink(CLI, join(project, 'node_modules', '.bin', 'mlserve'));
      const r = run(
        'npx',
        [
          '--no-install',
          'mlserve',
          'serve',
          '--model-repository',
          repo,
          '--port',
          '0',
          '--poll-interval',
          '0',
        ],
        { cwd: project },
      );
      const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      await until('ready', async () => ((await status(`${url}/v2/health/ready`)) === 200 ? true : undefined));
      // npx -> sh -c -> node: find the server process.
      const descendants = (pid: number): number[] => childPids(pid).flatMap((c) => [c, ...descendants(c)]);
      const tree = descendants(r.child.pid!);
      pids.push(...tree);
      const server = tree.find((pid) =>
        /(^|\/)node$/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0] ?? ''),
      );
      expect(server).toBeDefined();
      r.child.kill('SIGTERM');
      await r.exited;
      await until('server gone', () => (alive(server!) ? undefined : true), 30_000);
      expect(await status(`${url}/v2/health/live`)).toBe(0);
    } finally {
      await rm(project, { recursive: true, force: true });
    }
  }, 90_000);
});
