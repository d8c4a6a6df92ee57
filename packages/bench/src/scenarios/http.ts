import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { type LoadResult, ratioTable, scenario } from '../harness.js';
import { luaScript, wrk } from '../wrk.js';

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

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function procCpu(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
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
}

function startServer(kind: string): Promise<Child> {
  const file = fileURLToPath(new URL('../servers/http-server.ts', import.meta.url));
  const root = fileURLToPath(new URL('../../../../', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', file, kind], {
    cwd: root,
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

/** A configuration's name short enough for a chart label. */
function shortName(name: string): string {
  return name
    .replace('hand-written ', 'hand: ')
    .replace(' + session.run', '')
    .replace('onnxruntime defaults', 'ORT defaults')
    .replace('1 intra-op thread', '1 thread')
    .replace('HTTP ceiling: Fastify, parse JSON, constant answer', 'HTTP ceiling (no model)');
}

const HAND = [
  ['hand-fastify-default', 'hand-written Fastify + session.run, onnxruntime defaults'],
  ['hand-fastify-threads', 'hand-written Fastify + session.run, 1 intra-op thread'],
  ['hand-express-default', 'hand-written Express + session.run, onnxruntime defaults'],
  ['hand-express-threads', 'hand-written Express + session.run, 1 intra-op thread'],
] as const;

/**
 * mlserve over HTTP against what a user would otherwise write: KServe V2 JSON and binary and TF
 * Serving REST through the Fastify plugin, V2 JSON through the Express router, against hand-written
 * Express and Fastify routes calling `session.run` (onnxruntime's defaults, and 1 intra-op thread),
 * and against the HTTP ceiling (Fastify parsing the same JSON and answering a constant). Every
 * server runs in its own child process; wrk, in another, drives them all the same way.
 */
export default scenario({
  name: 'http',
  title: 'HTTP: mlserve (Fastify, Express) against hand-written servers and the HTTP ceiling (wrk)',
  async run({ quick, pick, log, chart, headline }) {
    const seconds = pick(3, 1);
    const rounds = pick(2, 1);
    const warmupMs = pick(1000, 200);
    const connections = 8;
    const dir = mkdtempSync(join(tmpdir(), 'mlserve-http-bench-'));
    const models = [
      { name: 'mnist', label: 'mnist-cnn', input: 'image', output: 'logits', dims: [1, 1, 28, 28] },
      { name: 'mobilenet', label: 'mobilenetv2', input: 'input', output: 'output', dims: [1, 3, 224, 224] },
    ];
    const kinds = ['mlserve-fastify', 'mlserve-express', ...HAND.map(([k]) => k), 'ceiling'];
    log(`starting ${kinds.length} servers, one child process each`);
    const servers = new Map<string, Child>();
    const started = await Promise.allSettled(kinds.map(async (k) => servers.set(k, await startServer(k))));
    const sections: string[] = [
      `Each server in its own child process; load from wrk (\`wrk -t1 -c${connections} -d${seconds}s\`, POST bodies from a generated Lua script) in a separate process, the same for every server; ${warmupMs} ms of warm-up load per server first, then ${rounds} round(s) rotated across the servers, the better round kept for each. mlserve serves \`pipeline(loadOnnxModel(model, { intraOpNumThreads: 1 }), metrics(), batching({ maxBatchSize: 16, maxDelayMs: 'auto' }))\`. The hand-written servers parse the V2 JSON body, build an \`ort.Tensor\` and call \`session.run\` per request. The ceiling parses the same JSON body and answers a constant. Baseline: the best hand-written server for that model. CPU is the server process's (from /proc), beside wrk's own; peak RSS is the server process's over the whole scenario. On 2 cores wrk competes with the server; the machine is shared and noisy: read ratios within a table.`,
      '',
    ];
    const bars: { label: string; value: number; highlight?: boolean }[] = [];
    const headline_: string[] = [];
    try {
      const failed = started.filter((s) => s.status === 'rejected');
      if (failed.length > 0) throw (failed[0] as PromiseRejectedResult).reason;
      for (const m of pick(models, models.slice(0, 1))) {
        const b = bodies(m.input, m.output, m.dims);
        const v2 = `/v2/models/${m.name}/infer`;
        const json = { 'Content-Type': 'application/json' };
        const configs = [
          {
            name: 'mlserve Fastify, V2 JSON',
            kind: 'mlserve-fastify',
            path: v2,
            body: b.json,
            headers: json,
          },
          {
            name: 'mlserve Fastify, V2 binary',
            kind: 'mlserve-fastify',
            path: v2,
            body: b.binary,
            headers: {
              'Content-Type': 'application/octet-stream',
              'Inference-Header-Content-Length': String(b.headerLength),
            },
          },
          {
            name: 'mlserve Fastify, TF Serving REST',
            kind: 'mlserve-fastify',
            path: `/v1/models/${m.name}:predict`,
            body: b.tfserving,
            headers: json,
          },
          {
            name: 'mlserve Express router, V2 JSON',
            kind: 'mlserve-express',
            path: v2,
            body: b.json,
            headers: json,
          },
          ...HAND.map(([kind, name]) => ({
            name,
            kind,
            path: `/predict/${m.name}`,
            body: b.json,
            headers: json,
          })),
          {
            name: 'HTTP ceiling: Fastify, parse JSON, constant answer',
            kind: 'ceiling',
            path: `/predict/${m.name}`,
            body: b.json,
            headers: json,
          },
        ];
        const results = new Map<string, LoadResult>();
        const scripts = new Map<string, string>();
        // Correctness and warm-up: each server must answer 200, then takes warm-up load (JIT,
        // onnxruntime's first runs, batching's 'auto' estimate) before any window is measured.
        for (const c of configs) {
          const url = `http://127.0.0.1:${servers.get(c.kind)!.port}${c.path}`;
          const until = performance.now() + warmupMs;
          await Promise.all(
            Array.from({ length: connections }, async () => {
              do {
                const res = await fetch(url, { method: 'POST', body: c.body, headers: c.headers });
                const text = await res.arrayBuffer();
                if (res.status !== 200) {
                  throw new Error(
                    `${c.name}: HTTP ${res.status} ${Buffer.from(text).toString().slice(0, 200)}`,
                  );
                }
              } while (performance.now() < until);
            }),
          );
          scripts.set(c.name, luaScript(dir, `${m.name}-${c.name.replace(/\W+/g, '-')}`, c.body, c.headers));
        }
        const measure = async (c: (typeof configs)[number]): Promise<LoadResult> => {
          const server = servers.get(c.kind)!;
          const url = `http://127.0.0.1:${server.port}${c.path}`;
          log(`${m.label}: ${c.name} (${c.body.byteLength} bytes per request)`);
          const pid = server.process.pid!;
          const cpu0 = procCpu(pid);
          const t0 = performance.now();
          const run = await wrk(url, scripts.get(c.name)!, seconds, connections);
          const wall = (performance.now() - t0) / 1000;
          return {
            name: c.name,
            requests: run.requests,
            errors: run.errors,
            durationMs: seconds * 1000,
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
        // Rounds, each starting at a different server; per configuration the better round is kept
        // (the same rule for every server: what it can do when the machine's noise lets it).
        const runs = configs.map(() => [] as LoadResult[]);
        for (let r = 0; r < rounds; r++) {
          for (let k = 0; k < configs.length; k++) {
            const idx = (k + r * 3) % configs.length;
            runs[idx]!.push(await measure(configs[idx]!));
          }
        }
        for (const [k, c] of configs.entries()) {
          const best = runs[k]!.reduce((a, b) => (b.throughput > a.throughput ? b : a));
          results.set(c.name, best);
        }
        const hand = HAND.map(([, name]) => results.get(name)!);
        const best = hand.reduce((a, r) => (r.throughput > a.throughput ? r : a));
        const rest = configs.map((c) => results.get(c.name)!).filter((r) => r !== best);
        sections.push(
          ratioTable(
            `${m.label} (${m.dims.join('x')} FP32), ${connections} connections, baseline: the best hand-written server`,
            best,
            rest,
          ),
        );
        const mlserve = configs.filter((c) => c.name.startsWith('mlserve')).map((c) => results.get(c.name)!);
        const top = mlserve.reduce((a, r) => (r.throughput > a.throughput ? r : a));
        const sameBody = results.get('mlserve Fastify, V2 JSON')!;
        const ceiling = results.get('HTTP ceiling: Fastify, parse JSON, constant answer')!;
        const x = (r: LoadResult) => r.throughput / best.throughput;
        headline_.push(
          `${m.label}: mlserve's best (${top.name}, ${top.extra?.['request bytes']} bytes a request) reaches **${x(top).toFixed(2)}x** the throughput of the best hand-written server ` +
            `(${best.name}, ${best.extra?.['request bytes']} bytes of JSON; ${Math.round(top.throughput)} vs ${Math.round(best.throughput)} req/s) at p99 ${top.p99.toFixed(1)} ms vs ${best.p99.toFixed(1)} ms. ` +
            `On the same V2 JSON body, mlserve Fastify is ${x(sameBody).toFixed(2)}x (p99 ${sameBody.p99.toFixed(1)} ms). ` +
            `The HTTP ceiling (same JSON, no model) is ${x(ceiling).toFixed(2)}x.`,
        );
        for (const r of [best, ...rest]) {
          bars.push({ label: `${m.label}: ${shortName(r.name)}`, value: x(r), highlight: r === best });
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
      ...(quick ? ['_Quick mode: mnist-cnn only, 1 s per server._', ''] : []),
      ...headline_.map((h) => `- ${h}`),
      '',
      ...sections,
      picture,
    ].join('\n');
  },
});
