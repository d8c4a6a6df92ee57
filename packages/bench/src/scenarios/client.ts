import { type ChildProcess, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createClient } from '@mlserve/client';
import { type Tensor, tensor } from '@mlserve/core';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { closedLoop, interleaved, type LoadResult, ratioTable, scenario } from '../harness.js';

const CLI = fileURLToPath(new URL('../../../cli/dist/cli.js', import.meta.url));

/** Starts `mlserve serve` (no config.json) on a free port in a child process; resolves with its URL. */
async function serve(repo: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--model-repository', repo, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mlserve serve did not start:\n${out}`)), 60_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.stderr!.on('data', (d) => {
      out += d;
    });
    child.on('exit', (code) => reject(new Error(`mlserve serve exited ${code}:\n${out}`)));
  });
  return { url, child };
}

/**
 * @mlserve/client (binary tensors, undici pool) against what JavaScript users write today: `fetch`
 * with a V2 JSON body. The server is `mlserve serve` in a child process, so the CPU this process
 * spends is the client's alone.
 */
export default scenario({
  name: 'client',
  title: 'Client: @mlserve/client (binary) vs plain fetch + JSON, same server',
  async run({ pick, log, chart }) {
    const durationMs = pick(3000, 800);
    const rounds = pick(3, 1);
    const levels = pick([8, 32], [32]);
    const repo = await mkdtemp(join(tmpdir(), 'mlserve-bench-client-'));
    await mkdir(join(repo, 'mnist', '1'), { recursive: true });
    await copyFile(modelPath('mnist-cnn.onnx'), join(repo, 'mnist', '1', 'model.onnx'));
    const { url, child } = await serve(repo);
    const binary = createClient({ url });
    const json = createClient({ url, binary: false });
    // The model loads in the background: wait until it is ready.
    for (let i = 0; i < 1200 && !(await binary.modelReady('mnist').catch(() => false)); i++)
      await new Promise((r) => setTimeout(r, 100));
    const holdout = mnistHoldout();
    const images = Array.from({ length: 16 }, (_, i) => holdout.image(i));
    const inputs = images.map((d) => ({ image: tensor('float32', d, [1, 1, 28, 28]) }));
    const bodies = images.map((d) =>
      JSON.stringify({
        inputs: [{ name: 'image', shape: [1, 1, 28, 28], datatype: 'FP32', data: Array.from(d) }],
      }),
    );
    const inferUrl = `${url}/v2/models/mnist/infer`;
    const plainFetch = async (i: number): Promise<Float32Array> => {
      const res = await fetch(inferUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: bodies[i % bodies.length]!,
      });
      const body = (await res.json()) as { outputs?: { name: string; data: number[] }[]; error?: string };
      if (!res.ok || !body.outputs) throw new Error(body.error ?? `HTTP ${res.status}`);
      return Float32Array.from(body.outputs[0]!.data);
    };
    const logits = (t: Tensor | undefined) => t!.data as Float32Array;
    const configs: { name: string; fn: (i: number) => Promise<Float32Array> }[] = [
      { name: 'fetch + JSON', fn: plainFetch },
      {
        name: '@mlserve/client, binary (default)',
        fn: async (i) => logits((await binary.infer('mnist', inputs[i % 16]!)).logits),
      },
      {
        name: '@mlserve/client, JSON',
        fn: async (i) => logits((await json.infer('mnist', inputs[i % 16]!)).logits),
      },
    ];
    const sections: string[] = [
      `\`mlserve serve\` (no config.json) on mnist-cnn in a child process; this process only runs the client, so "CPU (cores)" is the client's CPU and "client CPU/req" its CPU time per answered request. Closed loop, ${durationMs / 1000} s per configuration, rounds interleaved ${rounds} times, median round kept. Each configuration decodes the logits into a Float32Array. Shared 2-core machine: the server and the client compete for the same cores, so the client's CPU also limits the server; read ratios within one table.`,
      '',
    ];
    const bars: { label: string; value: number; highlight?: boolean }[] = [];
    try {
      // Correctness first: the three give the same logits (JSON text round-trips float32 exactly).
      for (let i = 0; i < 4; i++) {
        const [a, b, c] = await Promise.all(configs.map((cfg) => cfg.fn(i)));
        if (a!.join() !== b!.join() || b!.join() !== c!.join())
          throw new Error(`digit ${i}: the clients disagree`);
      }
      for (const concurrency of levels) {
        const results: LoadResult[] = await interleaved(
          rounds,
          configs.map((cfg) => ({
            name: cfg.name,
            run: () => {
              log(`${concurrency} callers: ${cfg.name}`);
              return closedLoop(cfg.name, cfg.fn, { concurrency, durationMs, warmupMs: 300 });
            },
          })),
        );
        for (const r of results) {
          r.extra = { 'client CPU/req (µs)': Math.round((r.cpuCores * 1e6) / Math.max(1, r.throughput)) };
          bars.push({
            label: `${concurrency} callers: ${r.name}`,
            value: r.throughput / results[0]!.throughput,
            highlight: r === results[0],
          });
        }
        sections.push(
          ratioTable(
            `mnist-cnn, one digit per request, ${concurrency} callers`,
            results[0]!,
            results.slice(1),
          ),
        );
      }
      sections.push(
        chart('client', 'Client throughput vs fetch + JSON', bars, 'x fetch + JSON', { markAt: 1 }),
      );
    } finally {
      await Promise.all([binary.close(), json.close()]);
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await rm(repo, { recursive: true, force: true });
    }
    return sections.join('\n');
  },
});
