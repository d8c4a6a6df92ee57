/**
 * The CLI as a user runs it: the built `dist/cli.js` as a child process, real HTTP on loopback,
 * real models. `npm test` builds first; alone, run `npx turbo run build --filter=@mlserve/cli...`.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadInferenceProto } from '@mlserve/grpc';
import { defaultServing } from '@mlserve/repository';
import { mnistHoldout, modelPath, type TestModel } from '@mlserve/test-utils';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, killChildren, type Running, requireBuiltCli, spawnProcess } from './helpers.js';

afterEach(killChildren);

/** `mlserve <args>` from the built CLI. */
function run(args: string[], env: Record<string, string> = {}): Running {
  // These tests read the text a person reads; test/talk.test.ts reads the JSON lines.
  if (args[0] === 'serve' && !args.includes('--log-format')) args = [...args, '--log-format', 'pretty'];
  return spawnProcess(process.execPath, [CLI, ...args], { env });
}

let repo: string;
async function addModel(name: string, file: TestModel, config?: unknown): Promise<void> {
  await mkdir(join(repo, name, '1'), { recursive: true });
  await copyFile(modelPath(file), join(repo, name, '1', 'model.onnx'));
  if (config) await writeFile(join(repo, name, 'config.json'), JSON.stringify(config));
}

beforeAll(async () => {
  requireBuiltCli();
  repo = await mkdtemp(join(tmpdir(), 'mlserve-cli-'));
  await addModel('mnist', 'mnist-cnn.onnx');
});
afterAll(async () => {
  await rm(repo, { recursive: true, force: true });
});

function digitRequest(i: number) {
  return JSON.stringify({
    id: `digit-${i}`,
    inputs: [
      { name: 'image', shape: [1, 1, 28, 28], datatype: 'FP32', data: Array.from(mnistHoldout().image(i)) },
    ],
  });
}

async function post(url: string, body: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('mlserve', () => {
  it('--help explains every option and exits 0', async () => {
    const r = run(['--help']);
    expect(await r.exited).toBe(0);
    for (const flag of [
      '--model-repository',
      '--port',
      '--grpc-port',
      '--host',
      '--workers',
      '--poll-interval',
      '--metrics',
      '--log-level',
      '--management',
    ]) {
      expect(r.stdout()).toContain(flag);
    }
    expect(r.stdout()).toContain('default 127.0.0.1');
  });

  it('rejects bad command lines with status 2 and a message', async () => {
    const cases: [string[], string][] = [
      [['serve'], '--model-repository DIR is required'],
      [['serve', '--model-repository', repo, '--port', 'eighty'], '--port must be an integer'],
      [
        ['serve', '--model-repository', repo, '--poll-interval', 'soon'],
        '--poll-interval must be a duration',
      ],
      [['serve', '--model-repository', repo, '--bogus'], "Unknown option '--bogus'"],
      [['serve', '--model-repository', join(repo, 'nope')], 'is not a directory'],
      [['launch'], 'unknown command "launch"'],
    ];
    for (const [args, message] of cases) {
      const r = run(args);
      expect(await r.exited, args.join(' ')).toBe(2);
      expect(r.stderr()).toContain(message);
    }
  });

  it('serves the repository, prints what it loaded and a curl line that works, exits 0 on SIGTERM', async () => {
    const r = run([
      'serve',
      '--model-repository',
      repo,
      '--port',
      '0',
      '--metrics',
      '--intra-op-threads',
      '1',
    ]);
    const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const [, file] = await r.waitFor(/-d @(\S+)/);
    // Where the model runs by default: one worker thread on two or more CPUs, the main thread on one.
    expect(r.stdout()).toMatch(
      defaultServing().workers > 0
        ? /mnist\s+1\s+ready\s+worker-pool\(onnxruntime-node\/cpu\)/
        : /mnist\s+1\s+ready\s+onnxruntime-node\/cpu/,
    );
    expect(r.stdout()).toContain(`${url}/v2/models/mnist/infer`);
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200);
    const sample = await post(`${url}/v2/models/mnist/infer`, await readFile(file!, 'utf8'));
    expect(sample.status).toBe(200);
    const digit = await post(`${url}/v2/models/mnist/infer`, digitRequest(7));
    const logits = (digit.body.outputs as { data: number[] }[])[0]!.data;
    expect(logits.indexOf(Math.max(...logits))).toBe(mnistHoldout().labels[7]);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toContain('mlserve_model_versions{model="mnist",state="ready"} 1');
    // Management is off by default.
    expect((await fetch(`${url}/v2/repository/index`, { method: 'POST' })).status).toBe(404);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });

  it('--model-memory-budget loads models on demand: the table, a cold start, the metrics and the index', async () => {
    // Two MobileNetV2 copies (14 MB of weights each: a measured cost well above the noise) under a
    // budget of one byte: nothing loads at start, and each load unloads the other.
    const dir = await mkdtemp(join(tmpdir(), 'mlserve-cli-budget-'));
    try {
      for (const name of ['mn-a', 'mn-b']) {
        await mkdir(join(dir, name, '1'), { recursive: true });
        await copyFile(modelPath('mobilenetv2.onnx'), join(dir, name, '1', 'model.onnx'));
      }
      const r = run([
        'serve',
        '--model-repository',
        dir,
        '--port',
        '0',
        '--metrics',
        '--management',
        '--no-warmup',
        '--intra-op-threads',
        '1',
        '--model-memory-budget',
        '1B',
      ]);
      const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      await r.waitFor(/Memory budget {2}0\.0 MiB: 0 of 2 loaded/);
      // Both available, their cost estimated from the file size until they load.
      expect(r.stdout().match(/mn-[ab]\s+1\s+ready\s+\S+\s+-\s+-\s+available ~\d+\.\d MiB/g)).toHaveLength(2);
      const body = JSON.stringify({
        inputs: [
          {
            name: 'input',
            shape: [1, 3, 224, 224],
            datatype: 'FP32',
            data: new Array(3 * 224 * 224).fill(0),
          },
        ],
      });
      // Metadata without a load.
      const meta = (await (await fetch(`${url}/v2/models/mn-a`)).json()) as { inputs: { shape: number[] }[] };
      expect(meta.inputs[0]!.shape).toEqual([-1, 3, 224, 224]);
      let metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).not.toContain('mlserve_model_loads_total{');
      for (const name of ['mn-a', 'mn-b']) {
        const res = await post(`${url}/v2/models/${name}/infer`, body);
        expect(res.status).toBe(200);
      }
      metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toContain('mlserve_model_loads_total{model="mn-a",cause="demand"} 1');
      expect(metrics).toContain('mlserve_model_loads_total{model="mn-b",cause="demand"} 1');
      expect(metrics).not.toContain('cause="start"');
      expect(metrics).toContain('mlserve_model_evictions_total{model="mn-a"} 1');
      expect(metrics).toContain('mlserve_model_cold_start_seconds_count{model="mn-b"} 1');
      expect(metrics).toMatch(/mlserve_model_memory_budget_bytes\{kind="limit"\} 1\b/);
      const index = (await (await fetch(`${url}/v2/repository/index`, { method: 'POST' })).json()) as {
        name: string;
        reason: string;
      }[];
      expect(index.find((x) => x.name === 'mn-b')!.reason).toMatch(/^loaded/);
      expect(index.find((x) => x.name === 'mn-a')!.reason).toMatch(
        /loads on its next request \(\d+\.\d MiB\)/,
      );
      r.child.kill('SIGTERM');
      expect(await r.exited).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('--shutdown-delay keeps serving after SIGTERM while readiness is already 503', async () => {
    const r = run(['serve', '--model-repository', repo, '--port', '0', '--shutdown-delay', '1500ms']);
    const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    await r.waitFor(/-d @(\S+)/);
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(200);
    r.child.kill('SIGTERM');
    await new Promise((res) => setTimeout(res, 300));
    // Inside the delay: not ready, but new connections are still accepted and served.
    expect((await fetch(`${url}/v2/health/ready`)).status).toBe(503);
    expect((await fetch(`${url}/v2/health/live`)).status).toBe(200);
    expect(await r.exited).toBe(0);
  });

  it('--grpc-port serves KServe V2 over gRPC beside HTTP, from the same models', async () => {
    const r = run(['serve', '--model-repository', repo, '--port', '0', '--grpc-port', '0', '--metrics']);
    const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    const [, address] = await r.waitFor(/gRPC on (127\.0\.0\.1:\d+)/);
    await r.waitFor(/-d @(\S+)/);
    const { GRPCInferenceService } = loadInferenceProto();
    const client = new GRPCInferenceService(address!, grpc.credentials.createInsecure());
    const call = (method: string, req: unknown) =>
      new Promise<Record<string, unknown>>((resolve, reject) =>
        (
          client as unknown as Record<string, (r: unknown, cb: (e: Error | null, v: unknown) => void) => void>
        )[method]!.call(client, req, (e, v) => (e ? reject(e) : resolve(v as Record<string, unknown>))),
      );
    try {
      expect(await call('ServerLive', {})).toEqual({ live: true });
      expect(await call('ServerReady', {})).toEqual({ ready: true });
      const successes = async () => {
        const text = await (await fetch(`${url}/metrics`)).text();
        return Number(/nv_inference_request_success\{model="mnist",version="1"\} (\d+)/.exec(text)?.[1] ?? 0);
      };
      const before = await successes();
      const image = mnistHoldout().image(7);
      const res = await call('ModelInfer', {
        model_name: 'mnist',
        id: 'grpc-7',
        inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 28, 28] }],
        raw_input_contents: [Buffer.from(image.buffer, image.byteOffset, image.byteLength)],
      });
      expect(res).toMatchObject({ model_name: 'mnist', model_version: '1', id: 'grpc-7' });
      const raw = (res.raw_output_contents as Buffer[])[0]!;
      const logits = Array.from(
        new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength)),
      );
      // The same answer as over HTTP, counted by the same metrics.
      const http = await post(`${url}/v2/models/mnist/infer`, digitRequest(7));
      expect(logits).toEqual((http.body.outputs as { data: number[] }[])[0]!.data);
      expect(logits.indexOf(Math.max(...logits))).toBe(mnistHoldout().labels[7]);
      expect(await successes()).toBe(before + 2);
    } finally {
      client.close();
    }
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });

  it('hot-reloads: a version copied in while serving replaces the old one (--poll-interval)', async () => {
    const r = run([
      'serve',
      '--model-repository',
      repo,
      '--port',
      '0',
      '--poll-interval',
      '100ms',
      '--no-warmup',
    ]);
    const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    await r.waitFor(/Health/);
    try {
      await mkdir(join(repo, 'mnist', '2'));
      await copyFile(modelPath('mnist-cnn.onnx'), join(repo, 'mnist', '2', 'model.onnx'));
      await r.waitFor(/ready {4}mnist\/2/);
      await r.waitFor(/retired {2}mnist\/1/);
      const res = await post(`${url}/v2/models/mnist/infer`, digitRequest(5));
      expect(res.status).toBe(200);
      expect(res.body.model_version).toBe('2');
    } finally {
      r.child.kill('SIGTERM');
      await rm(join(repo, 'mnist', '2'), { recursive: true, force: true });
    }
    expect(await r.exited).toBe(0);
  });

  it('--management turns on the repository endpoints, behind MLSERVE_MANAGEMENT_TOKEN', async () => {
    const r = run(['serve', '--model-repository', repo, '--port', '0', '--management', '--no-warmup'], {
      MLSERVE_MANAGEMENT_TOKEN: 's3cret',
    });
    const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
    await r.waitFor(/Management/);
    const auth = { authorization: 'Bearer s3cret' };
    expect((await fetch(`${url}/v2/repository/index`, { method: 'POST' })).status).toBe(401);
    expect(
      (await fetch(`${url}/v2/repository/models/mnist/unload`, { method: 'POST', headers: auth })).status,
    ).toBe(200);
    expect((await post(`${url}/v2/models/mnist/infer`, digitRequest(0))).status).toBe(404);
    const index = await fetch(`${url}/v2/repository/index`, { method: 'POST', headers: auth });
    expect(await index.json()).toEqual([{ name: 'mnist', state: 'UNAVAILABLE', reason: 'unloaded' }]);
    const traversal = await fetch(`${url}/v2/repository/models/..%2Fetc/load`, {
      method: 'POST',
      headers: auth,
    });
    expect(traversal.status).toBe(400);
    expect(
      (await fetch(`${url}/v2/repository/models/mnist/load`, { method: 'POST', headers: auth })).status,
    ).toBe(200);
    expect((await post(`${url}/v2/models/mnist/infer`, digitRequest(0))).status).toBe(200);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });

  it('SIGTERM during load: readiness 503 while loading, every accepted request answered, exit 0', async () => {
    // mnist is ready at once; mobilenet's warmup takes seconds.
    await writeFile(join(repo, 'mnist', 'config.json'), JSON.stringify({ warmup: false }));
    await addModel('mobilenet', 'mobilenetv2.onnx', { warmup: { batchSizes: [1, 2, 4, 8, 16, 32, 48, 64] } });
    try {
      const r = run(['serve', '--model-repository', repo, '--port', '0', '--intra-op-threads', '1']);
      const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      const ready = await fetch(`${url}/v2/health/ready`);
      expect(ready.status).toBe(503);
      await r.waitFor(/ready {4}mnist\/1/);
      expect(r.stdout()).not.toMatch(/ready {4}mobilenet\/1/);
      // Requests keep coming while mobilenet still loads; SIGTERM lands in the middle of them.
      // Requests keep coming while mobilenet still loads; SIGTERM lands in the middle of them.
      let killed = false;
      const before: (number | string)[] = [];
      let after = 0;
      let stop = false;
      const client = async () => {
        while (!stop) {
          const sentBeforeKill = !killed;
          try {
            const { status } = await post(`${url}/v2/models/mnist/infer`, digitRequest(before.length % 200));
            if (sentBeforeKill) before.push(status);
            else after++;
          } catch (err) {
            const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
            // Sent before SIGTERM: the server had it and owed an answer.
            if (sentBeforeKill) before.push(code);
            // Sent after: refused or closed without being read is how a stopping server says no.
            else if (code === 'ECONNREFUSED') break;
          }
        }
      };
      const clients = [client(), client(), client()];
      while (before.length < 3) await new Promise((res) => setTimeout(res, 5));
      killed = true;
      r.child.kill('SIGTERM');
      const code = await r.exited;
      stop = true;
      await Promise.all(clients);
      expect(code).toBe(0);
      expect(r.stdout()).not.toMatch(/ready {4}mobilenet\/1/);
      expect(before.filter((s) => s !== 200)).toEqual([]);
      expect(before.length).toBeGreaterThanOrEqual(3);
      expect(after).toBeGreaterThanOrEqual(0);
    } finally {
      await rm(join(repo, 'mobilenet'), { recursive: true, force: true });
      await rm(join(repo, 'mnist', 'config.json'), { force: true });
    }
  });

  it('SIGTERM with slow requests in flight: they all finish with 200 before exit', async () => {
    await addModel('mobilenet', 'mobilenetv2.onnx', { warmup: false });
    try {
      const r = run(['serve', '--model-repository', repo, '--port', '0', '--intra-op-threads', '1']);
      const [, url] = await r.waitFor(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      await r.waitFor(/Health/);
      const batch = 8;
      const body = JSON.stringify({
        inputs: [
          {
            name: 'input',
            shape: [batch, 3, 224, 224],
            datatype: 'FP32',
            data: new Array(batch * 3 * 224 * 224).fill(0.1),
          },
        ],
      });
      const inFlight = Array.from({ length: 4 }, () => post(`${url}/v2/models/mobilenet/infer`, body));
      await new Promise((res) => setTimeout(res, 150));
      r.child.kill('SIGTERM');
      const statuses = (await Promise.all(inFlight)).map((x) => x.status);
      expect(statuses).toEqual([200, 200, 200, 200]);
      expect(await r.exited).toBe(0);
    } finally {
      await rm(join(repo, 'mobilenet'), { recursive: true, force: true });
    }
  });
});
