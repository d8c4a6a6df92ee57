/**
 * The container image, for real: scripts/docker-env.sh starts a container daemon if none answers
 * and makes the base image's stand-in if the daemon lacks it; then the UNCHANGED Dockerfile is built
 * (`docker build --network host`), and the image runs the demo repository with `--network host`:
 * V2 JSON and binary requests, a non-root server, a HEALTHCHECK that turns healthy, `docker stop`
 * draining requests in flight and exiting 0 within the grace period, and `--processes auto` under
 * `docker run --cpus 1` (the cgroup quota, not the host's cores). A daemon that cannot start fails
 * this suite, loudly: it never skips.
 */
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, mnistHoldout } from '@mlserve/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const demo = join(root, 'packages/examples/model-repository');
const IMAGE = 'mlserve:test';
const DOCKER = spawnSync('test', ['-x', '/usr/bin/docker']).status === 0 ? '/usr/bin/docker' : 'docker';
const MB = 1024 * 1024;

// Creating a container copies the image's file system with the vfs storage driver: minutes on a
// loaded machine.
function docker(args: string[], timeoutMs = 600_000): string {
  const r = spawnSync(DOCKER, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * MB });
  if (r.status !== 0) {
    throw new Error(`docker ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stderr}${r.stdout}`);
  }
  return r.stdout.trim();
}

/** Streams a long command's output to the test log and resolves with its status. */
function stream(command: string, args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('exit', (code) => resolve(code));
  });
}

const containers: string[] = [];
async function run(name: string, args: string[], serveArgs: string[]): Promise<string> {
  spawnSync(DOCKER, ['rm', '-f', name]);
  docker(['run', '-d', '--name', name, '--network', 'host', ...args, IMAGE, ...serveArgs]);
  containers.push(name);
  return name;
}

async function until<T>(
  what: string,
  f: () => Promise<T | undefined> | T | undefined,
  ms: number,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const health = (name: string) => docker(['inspect', '-f', '{{.State.Health.Status}}', name]);

function v2Json(batch: number) {
  const data: number[] = [];
  for (let i = 0; i < batch; i++) data.push(...mnistHoldout().image(i % 100));
  return JSON.stringify({ inputs: [{ name: 'image', shape: [batch, 1, 28, 28], datatype: 'FP32', data }] });
}

let buildSeconds = 0;
let imageBytes = 0;

beforeAll(async () => {
  const env = spawnSync('bash', [join(root, 'packages/deploy-tests/scripts/docker-env.sh')], {
    encoding: 'utf8',
    timeout: 900_000,
  });
  process.stdout.write(env.stdout);
  if (env.status !== 0) {
    throw new Error(
      `THE CONTAINER DAEMON OR THE BASE IMAGE IS NOT AVAILABLE: the image tests cannot run.\n${env.stderr}\n` +
        'Install docker.io and debootstrap (apt-get install docker.io debootstrap) and run as root, or start dockerd.',
    );
  }
  const started = performance.now();
  const status = await stream(DOCKER, ['build', '--network', 'host', '-t', IMAGE, root]);
  buildSeconds = (performance.now() - started) / 1000;
  if (status !== 0) throw new Error(`docker build failed (status ${status})`);
  imageBytes = Number(docker(['image', 'inspect', '-f', '{{.Size}}', IMAGE]));
  process.stdout.write(
    `image ${IMAGE}: ${(imageBytes / 1e6).toFixed(0)} MB (${(imageBytes / MB).toFixed(0)} MiB), built in ${buildSeconds.toFixed(0)} s\n`,
  );
});

afterAll(() => {
  for (const name of containers) spawnSync(DOCKER, ['rm', '-f', name]);
});

describe('the image', () => {
  it('is under 400 MB, runs the CLI with node as a non-root user, and carries labels, ports, volume and health check', () => {
    expect(imageBytes).toBeGreaterThan(100e6);
    expect(imageBytes).toBeLessThan(400e6);
    const config = JSON.parse(docker(['image', 'inspect', '-f', '{{json .Config}}', IMAGE])) as {
      User: string;
      Entrypoint: string[];
      Cmd: string[];
      ExposedPorts: Record<string, unknown>;
      Volumes: Record<string, unknown>;
      Healthcheck: { Test: string[] };
      Labels: Record<string, string>;
      Env: string[];
    };
    expect(config.User).toBe('node');
    expect(config.Entrypoint.slice(0, 2)).toEqual(['node', '/app/packages/cli/dist/cli.js']);
    expect(config.Entrypoint).toEqual(
      expect.arrayContaining(['--host', '0.0.0.0', '--model-repository', '/models']),
    );
    expect(Object.keys(config.ExposedPorts).sort()).toEqual(['8000/tcp', '8001/tcp', '8002/tcp']);
    expect(Object.keys(config.Volumes)).toEqual(['/models']);
    expect(config.Healthcheck.Test.join(' ')).toContain('/v2/health/ready');
    expect(config.Labels['org.opencontainers.image.title']).toBe('mlserve');
    expect(config.Labels['org.opencontainers.image.licenses']).toBe('MIT');
    expect(config.Env).toContain('ONNXRUNTIME_NODE_INSTALL=skip');
    // Only linux-x64 onnxruntime binaries.
    const bins = docker([
      'run',
      '--rm',
      '--entrypoint',
      'sh',
      IMAGE,
      '-c',
      'cd /app/node_modules/onnxruntime-node/bin/napi-v6 && ls -d */*',
    ]);
    expect(bins.split(/\s+/)).toEqual(['linux/x64']);
    // The Dockerfile pulls nothing extra: no syntax directive.
    expect(readFileSync(join(root, 'Dockerfile'), 'utf8')).not.toMatch(/^#\s*syntax=/m);
  });

  it('serves the demo repository: V2 JSON and binary, as a non-root user, health turns healthy', async () => {
    const port = await freePort();
    const name = await run(
      'mlserve-test-serve',
      ['-e', `MLSERVE_PORT=${port}`, '-v', `${demo}:/models:ro`],
      ['--port', String(port), '--poll-interval', '0'],
    );
    await until('healthy', () => (health(name) === 'healthy' ? true : undefined), 180_000);
    const url = `http://127.0.0.1:${port}`;
    // V2 JSON.
    const res = await fetch(`${url}/v2/models/mnist/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: v2Json(1),
    });
    expect(res.status).toBe(200);
    const out = (await res.json()) as { outputs: { name: string; data: number[] }[] };
    const scores = out.outputs[0]!.data;
    expect(scores.indexOf(Math.max(...scores))).toBe(mnistHoldout().labels[0]);
    // V2 binary extension: a JSON header, then the raw little-endian tensor.
    const image = Buffer.from(mnistHoldout().image(1).buffer.slice(0));
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          {
            name: 'image',
            shape: [1, 1, 28, 28],
            datatype: 'FP32',
            parameters: { binary_data_size: image.length },
          },
        ],
        outputs: [{ name: out.outputs[0]!.name, parameters: { binary_data: true } }],
      }),
    );
    const bin = await fetch(`${url}/v2/models/mnist/infer`, {
      method: 'POST',
      headers: {
        'content-type': 'application/octet-stream',
        'inference-header-content-length': String(header.length),
      },
      body: Buffer.concat([header, image]),
    });
    expect(bin.status).toBe(200);
    const headerLength = Number(bin.headers.get('inference-header-content-length'));
    const body = Buffer.from(await bin.arrayBuffer());
    const logits = new Float32Array(
      body.buffer.slice(body.byteOffset + headerLength, body.byteOffset + body.length),
    );
    expect(logits).toHaveLength(10);
    expect(logits.indexOf(Math.max(...logits))).toBe(mnistHoldout().labels[1]);
    // The TF.js model of the demo repository too.
    const tfjs = await fetch(`${url}/v2/models/mnist-tfjs/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: v2Json(1),
    });
    expect(tfjs.status).toBe(200);
    // Non-root: PID 1 (the server itself, no shell or npm in between) runs as uid 1000.
    const status = docker(['exec', name, 'cat', '/proc/1/status']);
    expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe('1000');
    expect(docker(['exec', name, 'cat', '/proc/1/cmdline']).split('\0').slice(0, 2)).toEqual([
      'node',
      '/app/packages/cli/dist/cli.js',
    ]);
  }, 300_000);

  it('docker stop drains the requests in flight and exits 0 within the grace period', async () => {
    const name = 'mlserve-test-serve';
    const port = Number(
      /MLSERVE_PORT=(\d+)/.exec(docker(['inspect', '-f', '{{json .Config.Env}}', name]))![1],
    );
    const url = `http://127.0.0.1:${port}`;
    const body = v2Json(32);
    const inFlight = Array.from({ length: 24 }, () =>
      fetch(`${url}/v2/models/mnist/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      }).then(
        async (r) => {
          await r.arrayBuffer();
          return r.status;
        },
        (e: unknown) => `failed: ${String(e)}`,
      ),
    );
    await new Promise((r) => setTimeout(r, 200));
    const grace = 30;
    const started = performance.now();
    docker(['stop', '-t', String(grace), name], (grace + 30) * 1000);
    const stopSeconds = (performance.now() - started) / 1000;
    const statuses = await Promise.all(inFlight);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect(docker(['inspect', '-f', '{{.State.ExitCode}}', name])).toBe('0');
    expect(stopSeconds).toBeLessThan(grace);
    const logs = spawnSync(DOCKER, ['logs', name], { encoding: 'utf8' });
    expect(logs.stderr).toMatch(/SIGTERM: finishing accepted requests/);
  }, 120_000);

  it('--processes auto under docker run --cpus 1 starts one process; --cpus 2 starts two that share the port', async () => {
    const one = await freePort();
    const single = await run(
      'mlserve-test-cpus1',
      ['--cpus', '1', '-e', `MLSERVE_PORT=${one}`, '-v', `${demo}:/models:ro`],
      ['--port', String(one), '--processes', 'auto', '--poll-interval', '0'],
    );
    await until('healthy (1 CPU)', () => (health(single) === 'healthy' ? true : undefined), 180_000);
    const singleLogs = spawnSync(DOCKER, ['logs', single], { encoding: 'utf8' });
    expect(singleLogs.stderr).not.toMatch(/processes on/);
    // One server process in the container (this shell's own command line names cli.js too: anchor
    // the match at the start).
    expect(
      docker([
        'exec',
        single,
        'sh',
        '-c',
        'ls /proc | grep -E "^[0-9]+$" | while read p; do cat /proc/$p/cmdline 2>/dev/null | tr "\\0" " "; echo; done | grep -c "^node /app/packages/cli/dist/cli.js serve"',
      ]),
    ).toBe('1');
    docker(['stop', '-t', '20', single], 60_000);
    expect(docker(['inspect', '-f', '{{.State.ExitCode}}', single])).toBe('0');

    const two = await freePort();
    const cluster = await run(
      'mlserve-test-cpus2',
      ['--cpus', '2', '-e', `MLSERVE_PORT=${two}`, '-v', `${demo}:/models:ro`],
      ['--port', String(two), '--processes', 'auto', '--poll-interval', '0', '--metrics'],
    );
    await until('healthy (2 CPUs)', () => (health(cluster) === 'healthy' ? true : undefined), 240_000);
    const clusterLogs = spawnSync(DOCKER, ['logs', cluster], { encoding: 'utf8' });
    expect(clusterLogs.stderr).toMatch(/2 processes on 2 CPU\(s\), a budget of 1 CPU\(s\) each/);
    const metrics = await (await fetch(`http://127.0.0.1:${two}/metrics`)).text();
    expect(metrics).toMatch(/^mlserve_cluster_processes\{state="ready"\} 2$/m);
    docker(['stop', '-t', '20', cluster], 60_000);
    expect(docker(['inspect', '-f', '{{.State.ExitCode}}', cluster])).toBe('0');
  }, 600_000);
});
