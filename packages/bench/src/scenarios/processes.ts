/**
 * `mlserve serve --processes 2` against one process, both with their defaults (no config.json, no
 * flag but the port): the CLI as a user starts it, mnist-cnn over V2 JSON, wrk in its own process.
 * The two servers run one at a time (each has the machine), in alternating rounds; per
 * configuration the round with the best throughput is kept. CPU and memory are the whole process
 * tree's (the primary and its workers).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mnistHoldout, modelPath } from '@mlserve/test-utils';
import { type LoadResult, ratioTable, scenario } from '../harness.js';
import { luaScript, wrk } from '../wrk.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const CLI = join(ROOT, 'packages', 'cli', 'dist', 'cli.js');

/** The process and its descendants. */
function tree(pid: number): number[] {
  const out = [pid];
  try {
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      const list = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      for (const child of list ? list.split(' ') : []) out.push(...tree(Number(child)));
    }
  } catch {}
  return out;
}

/** CPU seconds used by the tree so far. */
function treeCpu(pid: number): number {
  let total = 0;
  for (const p of tree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {}
  }
  return total;
}

/** Sum of each process's peak RSS (MiB). */
function treePeakRss(pid: number): number {
  let total = 0;
  for (const p of tree(pid)) {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) total += Number(m[1]) / 1024;
    } catch {}
  }
  return total;
}

async function start(repo: string, args: string[]): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--model-repository', repo, '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out = (out + d).slice(-8192);
  });
  const end = performance.now() + 120_000;
  let port = 0;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mlserve serve exited: ${out}`);
    if (performance.now() > end) throw new Error(`mlserve serve not ready in 120 s: ${out}`);
    port ||= Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out)?.[1] ?? 0);
    if (port) {
      const ok = await fetch(`http://127.0.0.1:${port}/v2/health/ready`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) return { child, port };
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await done;
}

export default scenario({
  name: 'processes',
  title: 'mlserve serve --processes 2 vs one process (mnist-cnn, V2 JSON, defaults)',
  async run({ pick, log, headline }) {
    const dir = mkdtempSync(join(tmpdir(), 'mlserve-bench-processes-'));
    try {
      const repo = join(dir, 'repo');
      mkdirSync(join(repo, 'mnist', '1'), { recursive: true });
      copyFileSync(modelPath('mnist-cnn.onnx'), join(repo, 'mnist', '1', 'model.onnx'));
      const body = Buffer.from(
        JSON.stringify({
          inputs: [
            {
              name: 'image',
              shape: [1, 1, 28, 28],
              datatype: 'FP32',
              data: Array.from(mnistHoldout().image(0)),
            },
          ],
        }),
      );
      const script = luaScript(dir, 'mnist', body, { 'content-type': 'application/json' });
      const seconds = pick(8, 3);
      const rounds = pick(3, 1);
      const connections = 32;
      const configs = [
        { name: 'one process (default)', args: [] as string[] },
        { name: '--processes 2 (default)', args: ['--processes', '2'] },
      ];
      const runs = configs.map(() => [] as LoadResult[]);
      const load0 = loadavg()[0]!;
      for (let r = 0; r < rounds; r++) {
        for (let k = 0; k < configs.length; k++) {
          const idx = (k + r) % configs.length;
          const c = configs[idx]!;
          log(`round ${r + 1}/${rounds}: ${c.name}`);
          const { child, port } = await start(repo, c.args);
          try {
            // Run-in: every process warm (wrk's connections spread over them).
            await wrk(`http://127.0.0.1:${port}/v2/models/mnist/infer`, script, 1, connections);
            const pid = child.pid!;
            const cpu0 = treeCpu(pid);
            const t0 = performance.now();
            const run = await wrk(
              `http://127.0.0.1:${port}/v2/models/mnist/infer`,
              script,
              seconds,
              connections,
            );
            const wall = (performance.now() - t0) / 1000;
            runs[idx]!.push({
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
              cpuCores: (treeCpu(pid) - cpu0) / wall,
              peakRssMb: treePeakRss(pid),
              loopDelayP99: Number.NaN,
              extra: { processes: tree(pid).length, 'wrk CPU (cores)': run.wrkCores.toFixed(2) },
            });
          } finally {
            await stop(child);
          }
        }
      }
      const load1 = loadavg()[0]!;
      const [one, two] = runs.map((list) => list.reduce((a, b) => (b.throughput > a.throughput ? b : a))) as [
        LoadResult,
        LoadResult,
      ];
      const ratio = two.throughput / one.throughput;
      headline(
        `\`mlserve serve --processes 2\` serves ${ratio.toFixed(2)}x one process on mnist-cnn V2 JSON, both with their defaults (target >= 1.3x on 2 cores; load average ${load0.toFixed(1)} -> ${load1.toFixed(1)}).`,
      );
      return [
        ratioTable(
          `mnist-cnn, V2 JSON, ${connections} connections, wrk ${seconds} s, best of ${rounds} round(s) (load average ${load0.toFixed(1)} -> ${load1.toFixed(1)})`,
          one,
          [two],
        ),
        '',
        `Target: \`--processes 2\` >= 1.3x one process on 2 cores: **${ratio.toFixed(2)}x** (${ratio >= 1.3 ? 'met' : 'not met'}). CPU and peak RSS are the whole process tree's (peak RSS summed over the processes: each loads its own models). Both run the CLI's default placement for their CPU budget (see the CLI README, "Defaults, and why"): one process has a budget of both CPUs, each of two processes a budget of one. Two processes have two event loops parsing JSON in parallel where one process has one.`,
        '',
      ].join('\n');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
});
