/**
 * The CLI talks like a server: the built `dist/cli.js` (and `npx mlserve`) as a child process with
 * stdout on a pipe (so JSON logs by default), real HTTP on loopback, the real mnist model.
 */
import type { ChildProcess } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killChildren, requireBuiltCli, spawnProcess } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));

type Line = Record<string, unknown> & { msg: string; level: number };

interface Talking {
  child: ChildProcess;
  /** Every stdout line, parsed (a line that is not JSON fails the test). */
  lines: () => Line[];
  stderr: () => string;
  waitFor: (test: (l: Line) => boolean, what: string, ms?: number) => Promise<Line>;
  exited: Promise<number | null>;
}

afterEach(killChildren);

/** `command args` with stdout read as JSON lines. */
function start(command: string, args: string[], cwd?: string): Talking {
  const r = spawnProcess(command, args, { ...(cwd && { cwd }), env: { MLSERVE_TEST: '1' } });
  const lines: Line[] = [];
  const bad: string[] = [];
  let read = 0;
  const parse = () => {
    const text = r.stdout();
    for (let i = text.indexOf('\n', read); i >= 0; i = text.indexOf('\n', read)) {
      const line = text.slice(read, i);
      read = i + 1;
      try {
        lines.push(JSON.parse(line) as Line);
      } catch {
        bad.push(line);
      }
    }
    return lines;
  };
  return {
    child: r.child,
    lines: () => {
      parse();
      expect(bad, 'stdout lines that are not JSON').toEqual([]);
      return lines;
    },
    stderr: r.stderr,
    waitFor: (test, what, ms) => r.waitUntil(() => parse().find(test), what, ms),
    exited: r.exited,
  };
}

let repo: string;
beforeAll(async () => {
  requireBuiltCli();
  repo = await mkdtemp(join(tmpdir(), 'mlserve-talk-'));
  await mkdir(join(repo, 'mnist', '1'), { recursive: true });
  await copyFile(modelPath('mnist-cnn.onnx'), join(repo, 'mnist', '1', 'model.onnx'));
});
afterAll(() => rm(repo, { recursive: true, force: true }));

async function serveJson(...extra: string[]): Promise<{ r: Talking; url: string }> {
  const r = start(process.execPath, [
    CLI,
    'serve',
    '--model-repository',
    repo,
    '--port',
    '0',
    '--poll-interval',
    '0',
    ...extra,
  ]);
  const listening = await r.waitFor((l) => typeof l.url === 'string', 'the listening line');
  await r.waitFor((l) => Array.isArray(l.models), 'the model summary');
  return { r, url: listening.url as string };
}

function digit(i: number, id?: string): string {
  return JSON.stringify({
    ...(id && { id }),
    inputs: [
      { name: 'image', shape: [1, 1, 28, 28], datatype: 'FP32', data: Array.from(mnistHoldout().image(i)) },
    ],
  });
}

const JSON_CT = { 'content-type': 'application/json' };

describe('mlserve serve talks like a server', () => {
  it('logs pino JSON lines on a pipe; one request id per request, echoed and in its access line at debug', async () => {
    const { r, url } = await serveJson('--log-level', 'debug');
    const startup = r.lines();
    expect(startup[0]).toMatchObject({
      level: 30,
      msg: expect.stringMatching(/^mlserve: listening on http/),
    });
    expect(startup.every((l) => typeof l.time === 'number' && typeof l.pid === 'number')).toBe(true);
    expect(startup.find((l) => l.phase === 'ready')).toMatchObject({ model: 'mnist', version: '1' });

    // 1. x-request-id given: it is the id.
    const a = await fetch(`${url}/v2/models/mnist/infer`, {
      method: 'POST',
      headers: { ...JSON_CT, 'x-request-id': 'hdr-1' },
      body: digit(0),
    });
    expect(a.status).toBe(200);
    expect(a.headers.get('x-request-id')).toBe('hdr-1');
    expect((await a.json()).id).toBe('hdr-1');
    // 2. A V2 body id wins over the header: the answer, the header and the log all say body-7.
    const b = await fetch(`${url}/v2/models/mnist/infer`, {
      method: 'POST',
      headers: { ...JSON_CT, 'x-request-id': 'hdr-2' },
      body: digit(1, 'body-7'),
    });
    expect(b.headers.get('x-request-id')).toBe('body-7');
    expect((await b.json()).id).toBe('body-7');
    // 3. Neither: a UUID.
    const c = await fetch(`${url}/v2/models/nope/infer`, {
      method: 'POST',
      headers: JSON_CT,
      body: digit(2),
    });
    expect(c.status).toBe(404);
    const generated = c.headers.get('x-request-id')!;
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);

    const access = (id: string) =>
      r.waitFor((l) => l.msg === 'request' && l.reqId === id, `the access line of ${id}`, 10_000);
    expect(await access('hdr-1')).toMatchObject({
      level: 20,
      method: 'POST',
      url: '/v2/models/mnist/infer',
      status: 200,
      ms: expect.any(Number),
    });
    expect(await access('body-7')).toMatchObject({ status: 200 });
    expect(await access(generated)).toMatchObject({ status: 404, url: '/v2/models/nope/infer' });
    const lines = r.lines();
    // One id per request: the header's hdr-2 was replaced by the body's id everywhere.
    expect(lines.some((l) => l.reqId === 'hdr-2')).toBe(false);
    // The 404 is logged once with its code, under the same single id (no second requestId field).
    const notFound = lines.filter((l) => l.reqId === generated && l.code === 'NOT_FOUND');
    expect(notFound).toHaveLength(1);
    expect(lines.some((l) => 'requestId' in l)).toBe(false);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });

  it('serves metrics at /metrics by default, answers GET / with an index; --no-metrics turns metrics off', async () => {
    const { r, url } = await serveJson();
    expect(
      (await fetch(`${url}/v2/models/mnist/infer`, { method: 'POST', headers: JSON_CT, body: digit(3) }))
        .status,
    ).toBe(200);
    const metrics = await fetch(`${url}/metrics`);
    expect(metrics.status).toBe(200);
    const text = await metrics.text();
    expect(text).toContain('mlserve_model_versions{model="mnist",state="ready"} 1');
    expect(text).toMatch(/^nv_inference_request_success\{[^}]*model="mnist"[^}]*\} 1$/m);
    const index = await fetch(`${url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toMatch(/application\/json/);
    expect(await index.json()).toMatchObject({
      name: 'mlserve',
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      ready: true,
      models: [{ name: 'mnist', version: '1', state: 'ready' }],
      endpoints: {
        v2Infer: '/v2/models/{model}/infer',
        ready: '/v2/health/ready',
        metrics: '/metrics',
      },
    });
    // At the default level (info) a request writes no line.
    expect(r.lines().some((l) => l.msg === 'request')).toBe(false);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);

    const off = await serveJson('--no-metrics');
    expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
    const offIndex = (await (await fetch(`${off.url}/`)).json()) as { endpoints: Record<string, string> };
    expect(offIndex.endpoints.metrics).toBeUndefined();
    off.r.child.kill('SIGTERM');
    expect(await off.r.exited).toBe(0);
  });

  it('npx mlserve serve: SIGTERM to npx stops the server too (no orphan left holding the port)', async () => {
    const r = start(
      'npx',
      ['--no-install', 'mlserve', 'serve', '--model-repository', repo, '--port', '0', '--poll-interval', '0'],
      ROOT,
    );
    const listening = await r.waitFor((l) => typeof l.url === 'string', 'the listening line', 120_000);
    await r.waitFor((l) => Array.isArray(l.models), 'the model summary');
    const url = listening.url as string;
    const server = listening.pid as number;
    expect(server).not.toBe(r.child.pid);
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200);
    r.child.kill('SIGTERM');
    await r.exited;
    // The server notices npm is gone (it polls every 500 ms), drains and exits: bound 30 s.
    const end = Date.now() + 30_000;
    let alive = true;
    while (alive && Date.now() < end) {
      await new Promise((res) => setTimeout(res, 100));
      try {
        process.kill(server, 0);
      } catch {
        alive = false;
      }
    }
    if (alive) process.kill(server, 'SIGKILL');
    expect(alive, `server process ${server} still running 30 s after npx got SIGTERM`).toBe(false);
    await expect(fetch(`${url}/v2/health/live`)).rejects.toThrow();
  });
});
