import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { defaultServing } from '@mlserve/repository';
import { freePort, modelPath, type TestModel } from '@mlserve/test-utils';
import { type LoadResult, ratioTable, scenario } from '../harness.js';
import { luaScript, wrk } from '../wrk.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const MODELS = [
  {
    name: 'mnist',
    file: 'mnist-cnn.onnx' as TestModel,
    label: 'mnist-cnn',
    compute: false,
    input: 'image',
    output: 'logits',
    dims: [1, 1, 28, 28],
  },
  {
    name: 'mobilenet',
    file: 'mobilenetv2.onnx' as TestModel,
    compute: true,
    label: 'mobilenetv2',
    input: 'input',
    output: 'output',
    dims: [1, 3, 224, 224],
  },
];

/** Nests a flat array into `dims` (TF Serving's row format carries shapes as nesting). */
function nest(data: Float32Array, dims: number[], offset = 0): unknown {
  if (dims.length === 0) return data[offset];
  const [d, ...rest] = dims;
  const stride = rest.reduce((a, b) => a * b, 1);
  return Array.from({ length: d! }, (_, i) => nest(data, rest, offset + i * stride));
}

/** The request bodies: V2 JSON (also what the hand-written servers and the ceiling parse), V2 binary, TF Serving. */
function bodies(input: string, output: string, dims: number[]) {
  const count = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(count);
  for (let i = 0; i < count; i++) data[i] = (i % 255) / 255;
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        { name: input, shape: dims, datatype: 'FP32', parameters: { binary_data_size: data.byteLength } },
      ],
      outputs: [{ name: output, parameters: { binary_data: true } }],
    }),
  );
  return {
    binary: Buffer.concat([header, Buffer.from(data.buffer)]),
    headerLength: header.byteLength,
    json: Buffer.from(
      JSON.stringify({ inputs: [{ name: input, shape: dims, datatype: 'FP32', data: Array.from(data) }] }),
    ),
    tfserving: Buffer.from(JSON.stringify({ instances: [nest(data, dims.slice(1))] })),
  };
}

/** CPU seconds (user + system) a process and its children (uvicorn's workers) have used so far, from /proc (Linux). */
function procCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    let children = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const list = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      for (const child of list ? list.split(' ') : []) children += procCpu(Number(child)) || 0;
    }
    return (Number(fields[11]) + Number(fields[12])) / 100 + children;
  } catch {
    return Number.NaN;
  }
}

/** Peak resident set size of a process so far, MiB (VmHWM). */
function procPeakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

interface Child {
  process: ChildProcess;
  port: number;
  /** What stderr said last (for a failure message). */
  stderr?: () => string;
}

/** Keeps the last 4 KB a child wrote to stderr. */
function tailOf(child: ChildProcess): () => string {
  let tail = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-4096);
  });
  return () => tail;
}

function startServer(kind: string): Promise<Child> {
  const file = fileURLToPath(new URL('../servers/http-server.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', file, kind], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server ${kind} did not start in 60 s`)), 60_000);
    child.once('exit', (code) => reject(new Error(`server ${kind} exited with ${code}`)));
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve({ process: child, port: (JSON.parse(line) as { port: number }).port });
    });
  });
}

/** Polls `url` until it answers 200 (or `ms` pass, or the child exits). */
async function waitReady(url: string, child: ChildProcess, what: string, ms: number, stderr: () => string) {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}): ${stderr().slice(-800)}`);
    }
    const ok = await fetch(url).then(
      (r) => r.arrayBuffer().then(() => r.status === 200),
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${what} was not ready in ${ms / 1000} s: ${stderr().slice(-800)}`);
}

/**
 * `mlserve serve` exactly as a user starts it: the CLI (packages/cli/dist/cli.js) as a child
 * process on a temporary repository holding only `<model>/1/model.onnx`, no config.json, no flag
 * but the port. With MLSERVE_BENCH_CPU_PROF=<dir>, node writes a CPU profile there on exit.
 */
async function startCli(model: { name: string; file: TestModel }, dir: string): Promise<Child> {
  const repo = join(dir, `repo-${model.name}`);
  mkdirSync(join(repo, model.name, '1'), { recursive: true });
  copyFileSync(modelPath(model.file), join(repo, model.name, '1', 'model.onnx'));
  const cli = join(ROOT, 'packages', 'cli', 'dist', 'cli.js');
  const prof = process.env.MLSERVE_BENCH_CPU_PROF;
  const child = spawn(
    process.execPath,
    [
      ...(prof ? ['--cpu-prof', '--cpu-prof-dir', prof, '--cpu-prof-interval', '500'] : []),
      cli,
      'serve',
      '--model-repository',
      repo,
      '--port',
      '0',
    ],
    { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stderr = tailOf(child);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('mlserve serve printed no URL in 60 s')), 60_000);
    child.once('exit', (code) => reject(new Error(`mlserve serve exited with ${code}: ${stderr()}`)));
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
  });
  await waitReady(`${url}/v2/models/${model.name}/ready`, child, 'mlserve serve', 120_000, stderr);
  return { process: child, port: Number(new URL(url).port), stderr };
}

/** A Python that has torch, onnx, fastapi and uvicorn (Debian's python3-* packages), or why not. */
function findPython(): { python?: string; why?: string } {
  const tried: string[] = [];
  for (const python of [process.env.MLSERVE_BENCH_PYTHON, '/usr/bin/python3', 'python3']) {
    if (!python) continue;
    const r = spawnSync(python, ['-c', 'import torch, onnx, fastapi, uvicorn'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.status === 0) return { python };
    tried.push(`${python}: ${(r.stderr || String(r.error ?? '')).trim().split('\n').slice(-1)[0]}`);
  }
  return {
    why: `no python3 with torch, onnx, fastapi and uvicorn (apt-get install -y python3-torch python3-onnx python3-fastapi python3-uvicorn; tried ${tried.join('; ')})`,
  };
}

/**
 * FastAPI + PyTorch under uvicorn (`--workers N`, torch on 1 thread per worker), serving both
 * models converted from the same ONNX files (servers/fastapi_server.py).
 */
async function startFastapi(python: string, workers: number): Promise<Child> {
  const port = await freePort();
  const child = spawn(
    python,
    [
      '-m',
      'uvicorn',
      'fastapi_server:app',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--workers',
      String(workers),
      '--log-level',
      'warning',
      '--no-access-log',
    ],
    {
      cwd: fileURLToPath(new URL('../servers/', import.meta.url)),
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...process.env,
        TORCH_THREADS: '1',
        OMP_NUM_THREADS: '1',
        BENCH_MODELS: MODELS.map((m) => `${m.name}=${modelPath(m.file)}`).join(','),
      },
    },
  );
  const stderr = tailOf(child);
  await waitReady(`http://127.0.0.1:${port}/health`, child, `uvicorn --workers ${workers}`, 180_000, stderr);
  return { process: child, port, stderr };
}

/** The first output of an answer as numbers: V2 JSON, V2 binary, TF Serving; undefined for a ceiling. */
function outputOf(body: Buffer, headers: Headers): Float32Array | undefined {
  const headerLength = headers.get('inference-header-content-length');
  if (headerLength) {
    const n = Number(headerLength);
    const head = JSON.parse(body.subarray(0, n).toString()) as {
      outputs: { parameters?: { binary_data_size?: number } }[];
    };
    const size = head.outputs[0]?.parameters?.binary_data_size ?? body.byteLength - n;
    const bytes = body.subarray(n, n + size);
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  }
  const json = JSON.parse(body.toString()) as {
    outputs?: { data?: number[] }[];
    predictions?: unknown[];
  };
  if (json.predictions) return Float32Array.from((json.predictions as unknown[]).flat(8) as number[]);
  const data = json.outputs?.[0]?.data;
  return data ? Float32Array.from(data) : undefined;
}

/** Largest |a - b| / max(1, |b|): 0 when equal; Infinity when the lengths differ. */
function maxDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let worst = 0;
  for (let i = 0; i < a.length; i++)
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(1, Math.abs(b[i]!)));
  return worst;
}

/** Open-loop load from its own process (src/openloop.ts): `rate` POSTs a second for `seconds`. */
function openLoopRun(
  url: string,
  bodyFile: string,
  headers: Record<string, string>,
  rate: number,
  seconds: number,
  connections: number,
): Promise<LoadResult> {
  const file = fileURLToPath(new URL('../openloop.ts', import.meta.url));
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        file,
        url,
        bodyFile,
        JSON.stringify(headers),
        String(Math.max(1, Math.round(rate))),
        String(seconds),
        String(connections),
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const stderr = tailOf(child);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.once('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out.trim().split('\n').slice(-1)[0]!) as LoadResult);
      else reject(new Error(`open-loop driver exited with ${code}: ${stderr()}`));
    });
  });
}

/** Onnxruntime alone: `session.run` on batches of `batch` rows, back to back; rows per second. */
async function rawBatched(
  file: TestModel,
  input: string,
  dims: number[],
  batch: number,
  threads: number,
  seconds: number,
): Promise<number> {
  const ort = await import('onnxruntime-node');
  const session = await ort.InferenceSession.create(modelPath(file), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
  });
  const shape = [batch, ...dims.slice(1)];
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < data.length; i++) data[i] = (i % 255) / 255;
  const feeds = { [input]: new ort.Tensor('float32', data, shape) };
  for (let i = 0; i < 3; i++) await session.run(feeds);
  let rows = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    await session.run(feeds);
    rows += batch;
  }
  const rate = (rows * 1000) / (performance.now() - t0);
  await session.release();
  return rate;
}

/** A configuration's name short enough for a chart label. */
function shortName(name: string): string {
  return name
    .replace('hand-written ', 'hand: ')
    .replace(' + session.run', '')
    .replace('onnxruntime defaults', 'ORT defaults')
    .replace('1 intra-op thread', '1 thread')
    .replace('HTTP ceiling: Fastify, parse JSON, constant answer', 'HTTP ceiling (no model)')
    .replace('HTTP ceiling: Fastify, read V2 binary, constant answer', 'binary ceiling (no model)')
    .replace('mlserve serve, no config.json', 'serve default')
    .replace(', uvicorn 1 worker, 1 torch thread', ' (1 worker)')
    .replace(', uvicorn --workers 2, 1 torch thread each', ' (2 workers)');
}

const HAND = [
  ['hand-fastify-default', 'hand-written Fastify + session.run, onnxruntime defaults'],
  ['hand-fastify-threads', 'hand-written Fastify + session.run, 1 intra-op thread'],
  ['hand-express-default', 'hand-written Express + session.run, onnxruntime defaults'],
  ['hand-express-threads', 'hand-written Express + session.run, 1 intra-op thread'],
] as const;

const DEFAULT = 'mlserve serve, no config.json, V2 JSON';
const DEFAULT_BINARY = 'mlserve serve, no config.json, V2 binary';
const TUNED = 'mlserve Fastify (tuned), V2 JSON';
const HAND_20 = 'hand-written Fastify + session.run, onnxruntime defaults';
const CEILING = 'HTTP ceiling: Fastify, parse JSON, constant answer';
const CEILING_BINARY = 'HTTP ceiling: Fastify, read V2 binary, constant answer';
const FASTAPI_1 = 'FastAPI + PyTorch, uvicorn 1 worker, 1 torch thread';
const FASTAPI_2 = 'FastAPI + PyTorch, uvicorn --workers 2, 1 torch thread each';

/**
 * mlserve over HTTP against what a user would otherwise write: `mlserve serve` on a repository
 * with no config.json (what a new user measures), mlserve tuned by hand (KServe V2 JSON and binary
 * and TF Serving REST through the Fastify plugin, V2 JSON through the Express router), hand-written
 * Express and Fastify routes calling `session.run` (onnxruntime's defaults, and 1 intra-op thread),
 * FastAPI + PyTorch on the same weights, and the HTTP ceilings (Fastify parsing the same JSON, or
 * reading the same binary body, and answering a constant). Closed loop (wrk) at 32 and 128
 * connections, then open loop at 50% and 80% of the JSON ceiling. Every server runs in its own
 * child process; the load generators in others.
 */
export default scenario({
  name: 'http',
  title: 'HTTP: mlserve (Fastify, Express) against hand-written servers and the HTTP ceiling (wrk)',
  async run({ quick, pick, log, chart, headline }) {
    const seconds = pick(3, 1);
    const rounds = pick(2, 1);
    const warmupMs = pick(1000, 200);
    const connectionCounts = pick([32, 128], [32]);
    const openSeconds = pick(4, 1);
    const openShares = pick([0.5, 0.8], [0.5]);
    const dir = mkdtempSync(join(tmpdir(), 'mlserve-http-bench-'));
    const models = pick(MODELS, MODELS.slice(0, 1));
    const { python, why: noPython } = findPython();
    if (noPython) log(`SKIPPING the FastAPI + PyTorch rows: ${noPython}`);
    const threads = defaultServing().intraOpThreads;
    // Quick mode (CI): the rows the issue's targets need, nothing else.
    const hands = pick([...HAND], HAND.slice(0, 1));
    const uvicornWorkers = python ? pick([1, 2], [1]) : [];
    const kinds = [
      'mlserve-fastify',
      ...pick(['mlserve-express'], []),
      ...hands.map(([k]) => k),
      'ceiling',
      'ceiling-binary',
    ];
    log(
      `starting ${kinds.length} servers, ${models.length} mlserve serve CLI(s)${python ? ` and ${uvicornWorkers.length} uvicorn server(s)` : ''}, one child process each`,
    );
    const servers = new Map<string, Child>();
    const started = await Promise.allSettled([
      ...kinds.map(async (k) => servers.set(k, await startServer(k))),
      ...models.map(async (m) => servers.set(`serve-${m.name}`, await startCli(m, dir))),
      ...uvicornWorkers.map(async (w) => servers.set(`fastapi-${w}`, await startFastapi(python!, w))),
    ]);
    const sections: string[] = [
      `Each server in its own child process; closed-loop load from wrk (\`wrk -t1 -c<N> -d${seconds}s\`, N = ${connectionCounts.join(' and ')}; mobilenetv2 at 32 connections for ${pick(8, 2)} s, since it is compute-bound; POST bodies from a generated Lua script) in a separate process, the same for every server; ${warmupMs} ms of warm-up load per server first, then ${rounds} round(s) rotated across the servers, the better round kept for each. **mlserve serve, no config.json** is the CLI as a user starts it (\`mlserve serve --model-repository DIR --port 0\`, a repository holding only \`<model>/1/model.onnx\`): its defaults, logging at info, nothing tuned. **mlserve (tuned)** serves \`pipeline(loadOnnxModel(model, { intraOpNumThreads: 1 }), metrics(), batching({ maxBatchSize: 16, maxDelayMs: 'auto' }))\` in the main thread. The hand-written servers parse the V2 JSON body, build an \`ort.Tensor\` and call \`session.run\` per request; the one with onnxruntime's defaults is the issue's 20-line server. FastAPI + PyTorch: a plain \`def\` route under uvicorn, torch on 1 thread per worker, the ONNX graph's weights loaded into torch (servers/fastapi_server.py). The ceilings parse the same JSON body (or read the same binary body) and answer a constant. Every model-serving answer is checked against the hand-written server's (onnxruntime) before any window: within 1e-4 (relative above 1). Baseline: the best hand-written server for that model. CPU is the server process's and its children's (from /proc; uvicorn's workers included), beside wrk's own; peak RSS is the server process's over the whole scenario. On 2 cores the load generator competes with the server; the machine is shared and noisy: read ratios within a table.`,
      '',
    ];
    if (noPython) sections.push(`**FastAPI + PyTorch rows SKIPPED**: ${noPython}.`, '');
    const bars: { label: string; value: number; highlight?: boolean }[] = [];
    const headline_: string[] = [];
    const targets: string[] = [
      '#### Issue 18 targets (ratios from this run)',
      '',
      '| model | connections | mlserve serve default vs | ratio (throughput) | p99 ratio |',
      '| --- | --- | --- | --- | --- |',
    ];
    try {
      const failed = started.filter((s) => s.status === 'rejected');
      if (failed.length > 0) throw (failed[0] as PromiseRejectedResult).reason;
      for (const m of models) {
        const b = bodies(m.input, m.output, m.dims);
        const v2 = `/v2/models/${m.name}/infer`;
        const json = { 'Content-Type': 'application/json' };
        const binaryHeaders = {
          'Content-Type': 'application/octet-stream',
          'Inference-Header-Content-Length': String(b.headerLength),
        };
        const configs = [
          { name: DEFAULT, kind: `serve-${m.name}`, path: v2, body: b.json, headers: json },
          { name: DEFAULT_BINARY, kind: `serve-${m.name}`, path: v2, body: b.binary, headers: binaryHeaders },
          { name: TUNED, kind: 'mlserve-fastify', path: v2, body: b.json, headers: json },
          ...pick(
            [
              {
                name: 'mlserve Fastify (tuned), V2 binary',
                kind: 'mlserve-fastify',
                path: v2,
                body: b.binary,
                headers: binaryHeaders,
              },
              {
                name: 'mlserve Fastify (tuned), TF Serving REST',
                kind: 'mlserve-fastify',
                path: `/v1/models/${m.name}:predict`,
                body: b.tfserving,
                headers: json,
              },
              {
                name: 'mlserve Express router (tuned), V2 JSON',
                kind: 'mlserve-express',
                path: v2,
                body: b.json,
                headers: json,
              },
            ],
            [],
          ),
          ...hands.map(([kind, name]) => ({
            name: name as string,
            kind: kind as string,
            path: `/predict/${m.name}`,
            body: b.json,
            headers: json,
          })),
          ...uvicornWorkers.map((w) => ({
            name: w === 1 ? FASTAPI_1 : FASTAPI_2,
            kind: `fastapi-${w}`,
            path: `/predict/${m.name}`,
            body: b.json,
            headers: json,
          })),
          { name: CEILING, kind: 'ceiling', path: `/predict/${m.name}`, body: b.json, headers: json },
          {
            name: CEILING_BINARY,
            kind: 'ceiling-binary',
            path: `/predict/${m.name}`,
            body: b.binary,
            headers: { 'Content-Type': 'application/octet-stream' },
          },
        ];
        const scripts = new Map<string, string>();
        const bodyFiles = new Map<string, string>();
        // Correctness and warm-up: each server must answer 200 with what onnxruntime computes
        // (the hand-written server's answer), then takes warm-up load (JIT, onnxruntime's first
        // runs, batching's estimates) before any window is measured.
        let reference: Float32Array | undefined;
        for (const c of [...configs].sort((x, y) => (x.name === HAND_20 ? -1 : y.name === HAND_20 ? 1 : 0))) {
          const url = `http://127.0.0.1:${servers.get(c.kind)!.port}${c.path}`;
          const res = await fetch(url, { method: 'POST', body: c.body, headers: c.headers });
          const answer = Buffer.from(await res.arrayBuffer());
          if (res.status !== 200)
            throw new Error(`${c.name}: HTTP ${res.status} ${answer.toString().slice(0, 200)}`);
          if (!c.name.startsWith('HTTP ceiling')) {
            const out = outputOf(answer, res.headers);
            if (!out) throw new Error(`${c.name}: no output in ${answer.toString().slice(0, 200)}`);
            if (!reference) reference = out;
            const diff = maxDiff(out, reference);
            if (!(diff <= 1e-4)) {
              throw new Error(`${c.name}: the answer differs from onnxruntime's by ${diff} (over 1e-4)`);
            }
          }
          const until = performance.now() + warmupMs;
          await Promise.all(
            Array.from({ length: 16 }, async () => {
              do {
                const r = await fetch(url, { method: 'POST', body: c.body, headers: c.headers });
                const text = await r.arrayBuffer();
                if (r.status !== 200) {
                  throw new Error(
                    `${c.name}: HTTP ${r.status} ${Buffer.from(text).toString().slice(0, 200)}`,
                  );
                }
              } while (performance.now() < until);
            }),
          );
          const file = `${m.name}-${c.name.replace(/\W+/g, '-')}`;
          scripts.set(c.name, luaScript(dir, file, c.body, c.headers));
          bodyFiles.set(c.name, join(dir, `${file}.body`));
        }
        // MobileNetV2 is compute-bound (a few dozen 2.9 MB JSON requests a second on 2 cores): longer
        // windows, and 32 connections only (128 would only queue longer).
        const window = m.compute ? pick(8, 2) : seconds;
        const counts = m.compute ? connectionCounts.slice(0, 1) : connectionCounts;
        const measure = async (c: (typeof configs)[number], connections: number): Promise<LoadResult> => {
          const server = servers.get(c.kind)!;
          const url = `http://127.0.0.1:${server.port}${c.path}`;
          log(`${m.label}, ${connections} connections: ${c.name} (${c.body.byteLength} bytes per request)`);
          const pid = server.process.pid!;
          const cpu0 = procCpu(pid);
          const t0 = performance.now();
          const run = await wrk(url, scripts.get(c.name)!, window, connections);
          const wall = (performance.now() - t0) / 1000;
          return {
            name: c.name,
            requests: run.requests,
            errors: run.errors,
            durationMs: window * 1000,
            throughput: run.rps,
            mean: run.mean,
            p50: run.p50,
            p90: run.p90,
            p99: run.p99,
            max: run.max,
            cpuCores: (procCpu(pid) - cpu0) / wall,
            peakRssMb: procPeakRss(pid),
            loopDelayP99: Number.NaN,
            extra: {
              'request bytes': c.body.byteLength,
              'wrk CPU (cores)': run.wrkCores.toFixed(2),
            },
          };
        };
        let ceiling32: LoadResult | undefined;
        for (const connections of counts) {
          const results = new Map<string, LoadResult>();
          const load0 = loadavg()[0]!;
          // Rounds, each starting at a different server; per configuration the better round is
          // kept (the same rule for every server: what it can do when the machine's noise lets it).
          const runs = configs.map(() => [] as LoadResult[]);
          for (let r = 0; r < rounds; r++) {
            for (let k = 0; k < configs.length; k++) {
              const idx = (k + r * 3) % configs.length;
              runs[idx]!.push(await measure(configs[idx]!, connections));
            }
          }
          for (const [k, c] of configs.entries()) {
            results.set(
              c.name,
              runs[k]!.reduce((a, b) => (b.throughput > a.throughput ? b : a)),
            );
          }
          const load1 = loadavg()[0]!;
          const hand = hands.map(([, name]) => results.get(name)!);
          const best = hand.reduce((a, r) => (r.throughput > a.throughput ? r : a));
          const rest = configs.map((c) => results.get(c.name)!).filter((r) => r !== best);
          sections.push(
            ratioTable(
              `${m.label} (${m.dims.join('x')} FP32), ${connections} connections, baseline: the best hand-written server (load average ${load0.toFixed(1)} -> ${load1.toFixed(1)})`,
              best,
              rest,
            ),
          );
          const def = results.get(DEFAULT)!;
          const defBinary = results.get(DEFAULT_BINARY)!;
          const ceiling = results.get(CEILING)!;
          const ceilingBinary = results.get(CEILING_BINARY)!;
          const hand20 = results.get(HAND_20)!;
          if (connections === counts[0]) ceiling32 = ceiling;
          const row = (vs: string, r: LoadResult | undefined) => {
            if (r && !(r.throughput > 0 && def.throughput > 0)) {
              targets.push(
                `| ${m.label} | ${connections} | ${vs} | no request completed in the window (${Math.round(def.throughput)} vs ${Math.round(r.throughput)} req/s): unreliable | - |`,
              );
              return;
            }
            if (!r) {
              targets.push(
                `| ${m.label} | ${connections} | ${vs} | skipped: ${noPython ?? 'not run in quick mode'} | - |`,
              );
              return;
            }
            targets.push(
              `| ${m.label} | ${connections} | ${vs} | **${(def.throughput / r.throughput).toFixed(2)}x** (${Math.round(def.throughput)} vs ${Math.round(r.throughput)} req/s) | ${(def.p99 / r.p99).toFixed(2)} (${def.p99.toFixed(1)} vs ${r.p99.toFixed(1)} ms) |`,
            );
          };
          row('the HTTP ceiling (same JSON)', ceiling);
          row('the 20-line hand-written Fastify server (ORT defaults)', hand20);
          row('the best hand-written server', best);
          row(FASTAPI_1, results.get(FASTAPI_1));
          row(FASTAPI_2, results.get(FASTAPI_2));
          row('mlserve tuned by hand (config in code)', results.get(TUNED));
          if (connections === counts[0]) {
            // V2 binary against the lower of its ceiling route and onnxruntime alone on batches of
            // 32 with the threads the default server gives the model.
            const raw = await rawBatched(m.file, m.input, m.dims, 32, threads, pick(2, 0.5));
            const bound = Math.min(raw, ceilingBinary.throughput);
            targets.push(
              `| ${m.label} | ${connections} | V2 binary vs min(binary ceiling ${Math.round(ceilingBinary.throughput)} req/s, raw session.run batch 32 on ${threads} thread(s) ${Math.round(raw)} rows/s) | **${(defBinary.throughput / bound).toFixed(2)}x** (${Math.round(defBinary.throughput)} req/s) | - |`,
            );
          }
          const x = (r: LoadResult) => r.throughput / best.throughput;
          if (connections === counts[counts.length - 1] || quick) {
            for (const r of [best, ...rest]) {
              bars.push({
                label: `${m.label} c${connections}: ${shortName(r.name)}`,
                value: x(r),
                highlight: r === best || r === def,
              });
            }
          }
          const fa = results.get(FASTAPI_1);
          const r = (a: LoadResult, b: LoadResult, d = 2) =>
            b.throughput > 0 ? `${(a.throughput / b.throughput).toFixed(d)}x` : 'unmeasured (0 req/s)';
          headline_.push(
            `${m.label}, ${connections} connections: \`mlserve serve\` with no config.json reaches **${r(def, ceiling)}** the HTTP ceiling, **${r(def, hand20)}** the 20-line hand-written Fastify server (p99 ${def.p99.toFixed(1)} vs ${hand20.p99.toFixed(1)} ms)${fa ? ` and **${r(def, fa, 1)}** FastAPI + PyTorch (1 worker)` : ''}; ${Math.round(def.throughput)} req/s (load average ${load1.toFixed(1)}).`,
          );
        }
        // Open loop: a fixed offered load whatever the latency, as a share of the JSON ceiling.
        if (m.name === 'mnist' && ceiling32) {
          const openConfigs = configs.filter((c) =>
            pick([DEFAULT, TUNED, HAND_20, FASTAPI_1, CEILING], [DEFAULT, HAND_20]).includes(c.name),
          );
          for (const share of openShares) {
            const rate = ceiling32.throughput * share;
            const out: LoadResult[] = [];
            for (const c of openConfigs) {
              const server = servers.get(c.kind)!;
              log(`${m.label}, open loop at ${Math.round(rate)} req/s: ${c.name}`);
              const pid = server.process.pid!;
              const cpu0 = procCpu(pid);
              const t0 = performance.now();
              const r = await openLoopRun(
                `http://127.0.0.1:${server.port}${c.path}`,
                bodyFiles.get(c.name)!,
                c.headers,
                rate,
                openSeconds,
                128,
              );
              r.name = c.name;
              r.cpuCores = (procCpu(pid) - cpu0) / ((performance.now() - t0) / 1000);
              r.peakRssMb = procPeakRss(pid);
              r.extra = { offered: `${Math.round(rate)}/s`, dropped: r.dropped ?? 0 };
              out.push(r);
            }
            const base = out.find((r) => r.name === HAND_20)!;
            sections.push(
              ratioTable(
                `${m.label}, open loop at ${Math.round(share * 100)}% of the JSON ceiling (${Math.round(rate)} req/s offered, ${openSeconds} s, up to 128 connections; latency from each request's scheduled start; load average ${loadavg()[0]!.toFixed(1)}), baseline: the 20-line hand-written server`,
                base,
                out.filter((r) => r !== base),
              ),
            );
            const def = out.find((r) => r.name === DEFAULT)!;
            targets.push(
              `| ${m.label} | open loop ${Math.round(share * 100)}% of ceiling | the 20-line hand-written server | ${(def.throughput / base.throughput).toFixed(2)}x served | ${(def.p99 / base.p99).toFixed(2)} (${def.p99.toFixed(1)} vs ${base.p99.toFixed(1)} ms) |`,
            );
          }
        }
      }
    } finally {
      for (const s of servers.values()) s.process.kill('SIGTERM');
      await Promise.all(
        [...servers.values()].map(
          (s) =>
            new Promise<void>((resolve) => {
              if (s.process.exitCode !== null || s.process.signalCode !== null) resolve();
              else s.process.once('exit', () => resolve());
            }),
        ),
      );
      rmSync(dir, { recursive: true, force: true });
    }
    for (const h of headline_) headline(`**HTTP** ${h}`);
    const picture = chart(
      'http',
      'HTTP throughput (wrk), x the best hand-written server',
      bars,
      'x the throughput of the best hand-written Fastify/Express + session.run server',
      { markAt: 1 },
    );
    return [
      ...(quick
        ? [
            `_Quick mode: mnist-cnn only, ${connectionCounts.join(', ')} connections, 1 s per server, open loop at 50% only, the tuned mlserve and one hand-written server only, FastAPI with 1 worker only${python ? '' : '; FastAPI + PyTorch rows SKIPPED (no Python with torch)'}._`,
            '',
          ]
        : []),
      ...headline_.map((h) => `- ${h}`),
      '',
      ...targets,
      '',
      ...sections,
      picture,
    ].join('\n');
  },
});
