/**
 * Runs the benchmark scenarios in src/scenarios and prints their markdown.
 *
 *   npx tsx packages/bench/src/run.ts [--quick] [--only name[,name]] [--write FILE]
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import type { Scenario, ScenarioContext } from './harness.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    write: { type: 'string' },
    list: { type: 'boolean', default: false },
  },
});

const dir = new URL('./scenarios/', import.meta.url);
const files = readdirSync(dir)
  .filter((f) => /\.(ts|js)$/.test(f) && !f.endsWith('.test.ts') && !f.endsWith('.d.ts'))
  .sort();
const only = values.only ? new Set(values.only.split(',')) : undefined;

const scenarios: Scenario[] = [];
for (const f of files) {
  const mod = (await import(new URL(f, dir).href)) as { default?: Scenario };
  if (mod.default && (!only || only.has(mod.default.name))) scenarios.push(mod.default);
}
if (values.list) {
  for (const s of scenarios) console.log(`${s.name}\t${s.title}`);
  process.exit(0);
}
if (only && scenarios.length === 0) {
  console.error(`no scenario named ${values.only}; --list shows them`);
  process.exit(2);
}

const quick = values.quick ?? false;
const sections: string[] = [];
const started = performance.now();
for (const [i, s] of scenarios.entries()) {
  const t0 = performance.now();
  process.stderr.write(`[${i + 1}/${scenarios.length}] ${s.title}\n`);
  const ctx: ScenarioContext = {
    quick,
    log: (m) => process.stderr.write(`    ${m}\n`),
    pick: (full, q) => (quick ? q : full),
  };
  const body = await s.run(ctx);
  sections.push(`## ${s.title}\n\n${body.trim()}\n`);
  process.stderr.write(`    done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const header = [
  `Machine: ${cpu}, ${cpus().length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}.`,
  `Command: \`npm run bench${quick ? ' -- --quick' : ''}\`; ${((performance.now() - started) / 1000).toFixed(0)} s in all.`,
].join('\n');
const report = `${header}\n\n${sections.join('\n')}`;
console.log(report);
if (values.write) writeFileSync(values.write, report);
