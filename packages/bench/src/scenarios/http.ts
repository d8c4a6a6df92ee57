import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOnnxModel } from '@mlserve/backend-onnx';
import { ModelRegistry } from '@mlserve/core';
import { decodeV2Request, mlservePlugin, parseHeaderLength } from '@mlserve/http';
import { modelPath } from '@mlserve/test-utils';
import Fastify from 'fastify';
import { type LoadResult, ratioTable, scenario } from '../harness.js';

/** One wrk run's parsed output, plus wrk's own CPU time (from the shell's `times`). */
interface WrkRun {
  rps: number;
  requests: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  wrkCores: number;
}

function ms(text: string): number {
  const m = /([\d.]+)(us|ms|s)/.exec(text);
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

function wrk(url: string, script: string, seconds: number, connections: number): Promise<WrkRun> {
  // wrk runs in its own process; `times` prints the CPU its children used (user, then system).
  const cmd = `wrk -t1 -c${connections} -d${seconds}s --latency -s '${script}' '${url}'; times`;
  return new Promise((resolve, reject) => {
    execFile('bash', ['-c', cmd], { maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err) return reject(err);
      const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? Number.NaN);
      const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
      const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
      const sockErrors = sockErr ? sockErr.slice(1).reduce((s, v) => s + Number(v), 0) : 0;
      const pct = (p: string) => ms(new RegExp(`\\s${p}%\\s+([\\d.]+\\w+)`).exec(stdout)?.[1] ?? '');
      const times = stdout.trim().split('\n').slice(-1)[0] ?? '';
      const cpu = [...times.matchAll(/(\d+)m([\d.]+)s/g)].reduce(
        (s, m) => s + Number(m[1]) * 60 + Number(m[2]),
        0,
      );
      resolve({
        rps,
        requests,
        errors: non2xx + sockErrors,
        p50: pct('50'),
        p90: pct('90'),
        p99: pct('99'),
        wrkCores: cpu / seconds,
      });
    });
  });
}

function luaScript(dir: string, name: string, body: Buffer, headers: Record<string, string>): string {
  const bodyFile = join(dir, `${name}.body`);
  writeFileSync(bodyFile, body);
  const lines = [
    'wrk.method = "POST"',
    ...Object.entries(headers).map(([k, v]) => `wrk.headers["${k}"] = "${v}"`),
    `local f = io.open("${bodyFile}", "rb")`,
    'wrk.body = f:read("*all")',
    'f:close()',
  ];
  const file = join(dir, `${name}.lua`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

/** A V2 request for one row of zeros-and-ramps of the input's shape, as binary and as JSON. */
function bodies(
  input: string,
  output: string,
  dims: number[],
): { binary: Buffer; headerLength: number; json: Buffer } {
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
  };
}

/**
 * KServe V2 over Fastify, driven by wrk from another process: binary tensor extension against
 * JSON, and each against a Fastify route that parses the same body and answers a constant (the
 * HTTP + parse ceiling).
 */
export default scenario({
  name: 'http',
  title: 'HTTP: KServe V2 binary vs JSON over Fastify, against the HTTP ceiling (wrk)',
  async run({ quick, log }) {
    const seconds = quick ? 3 : 10;
    const connections = 8;
    const dir = mkdtempSync(join(tmpdir(), 'mlserve-http-bench-'));
    const registry = new ModelRegistry();
    const models = [
      {
        file: 'mnist-cnn.onnx' as const,
        name: 'mnist',
        input: 'image',
        output: 'logits',
        dims: [1, 1, 28, 28],
      },
      {
        file: 'mobilenetv2.onnx' as const,
        name: 'mobilenet',
        input: 'input',
        output: 'output',
        dims: [1, 3, 224, 224],
      },
    ];
    for (const m of models) {
      registry.add(
        await loadOnnxModel(modelPath(m.file), {
          name: m.name,
          version: '1',
          intraOpNumThreads: 1,
          interOpNumThreads: 1,
        }),
      );
    }
    const app = Fastify({ logger: false, forceCloseConnections: true });
    await app.register(mlservePlugin, { registry });
    // The ceiling: same body handling (raw buffer, V2 decode), no model, a constant answer.
    await app.register(async (scope) => {
      scope.removeAllContentTypeParsers();
      scope.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: 64 * 1024 * 1024 }, (_r, body, done) =>
        done(null, body),
      );
      scope.post('/ceiling', async (req, reply) => {
        const body = req.body as Buffer;
        const hl = parseHeaderLength(
          req.headers['inference-header-content-length'] as string | undefined,
          body.byteLength,
        );
        decodeV2Request(body, hl);
        reply.header('content-type', 'application/json');
        return '{"model_name":"ceiling","outputs":[]}';
      });
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    const sections: string[] = [
      `wrk -t1 -c${connections}, ${seconds} s per configuration, in a separate process; the server and onnxruntime (1 intra-op thread) in this one. The machine is shared and noisy: compare ratios within a table, not absolute figures across runs.`,
      '',
    ];
    try {
      for (const m of models) {
        const b = bodies(m.input, m.output, m.dims);
        const binary = b.binary;
        const hdr = String(b.headerLength);
        const configs: { name: string; path: string; body: Buffer; headers: Record<string, string> }[] = [
          {
            name: 'V2 binary',
            path: `/v2/models/${m.name}/infer`,
            body: binary,
            headers: { 'Inference-Header-Content-Length': hdr },
          },
          {
            name: 'V2 JSON',
            path: `/v2/models/${m.name}/infer`,
            body: b.json,
            headers: { 'Content-Type': 'application/json' },
          },
          {
            name: 'ceiling, binary body',
            path: '/ceiling',
            body: binary,
            headers: { 'Inference-Header-Content-Length': hdr },
          },
          {
            name: 'ceiling, JSON body',
            path: '/ceiling',
            body: b.json,
            headers: { 'Content-Type': 'application/json' },
          },
        ];
        const results: LoadResult[] = [];
        for (const c of configs) {
          log(`${m.name}: ${c.name} (${c.body.byteLength} bytes per request)`);
          const script = luaScript(dir, `${m.name}-${c.name.replace(/\W+/g, '-')}`, c.body, c.headers);
          await wrk(`${base}${c.path}`, script, 1, connections); // warm-up, not measured
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          const run = await wrk(`${base}${c.path}`, script, seconds, connections);
          const wall = (performance.now() - t0) / 1000;
          const cpu = process.cpuUsage(cpu0);
          results.push({
            name: c.name,
            requests: run.requests,
            errors: run.errors,
            durationMs: seconds * 1000,
            throughput: run.rps,
            mean: Number.NaN,
            p50: run.p50,
            p90: run.p90,
            p99: run.p99,
            max: Number.NaN,
            cpuCores: (cpu.user + cpu.system) / 1e6 / wall,
            peakRssMb: process.memoryUsage().rss / 2 ** 20,
            loopDelayP99: Number.NaN,
            extra: { 'request bytes': c.body.byteLength, 'wrk CPU (cores)': run.wrkCores.toFixed(2) },
          });
        }
        const [bin, json, ceilBin, ceilJson] = results as [LoadResult, LoadResult, LoadResult, LoadResult];
        sections.push(
          ratioTable(`${m.name} (${m.dims.join('x')} FP32), baseline V2 binary`, bin, [
            json,
            ceilBin,
            ceilJson,
          ]),
        );
        sections.push(
          `JSON body is ${((json.extra!['request bytes'] as number) / (bin.extra!['request bytes'] as number)).toFixed(2)}x the binary body. ` +
            `V2 binary reaches ${(bin.throughput / ceilBin.throughput).toFixed(2)}x of its ceiling, V2 JSON ${(json.throughput / ceilJson.throughput).toFixed(2)}x of its ceiling.`,
          '',
        );
      }
    } finally {
      await app.close();
      await registry.close();
      rmSync(dir, { recursive: true, force: true });
    }
    return sections.join('\n');
  },
});
