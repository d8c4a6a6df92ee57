import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One case of the suite, as RELIABILITY.md shows it. */
export interface CaseRecord {
  /** The section: `Hostile input`, `Fuzzing`, `Overload`, `Faults`, `Security`. */
  area: string;
  /** What the case checks, in a few words. */
  name: string;
  /** `fastify`, `express`, `cli` or `-` when no server is involved. */
  adapter: string;
  /** What was sent or broken. */
  sent: string;
  /** What came back. */
  got: string;
  /** Whether every assertion of the case held. */
  result: 'pass' | 'fail';
}

/** Free-form markdown a case adds under its section (tables of timings, RSS over time). */
export interface NoteRecord {
  area: string;
  title: string;
  markdown: string;
}

type Line = ({ kind: 'case' } & CaseRecord) | ({ kind: 'note' } & NoteRecord);

const FILE = 'records.jsonl';

/**
 * Appends one case to the results directory. Test files run in separate processes, so records go
 * to a JSON-lines file (one short `appendFileSync` per record) and are read back once at the end.
 *
 * @example
 * ```ts
 * recordCase(dir, { area: 'Hostile input', name: 'malformed JSON', adapter: 'fastify',
 *   sent: '{"inputs": [', got: '400 INVALID_ARGUMENT', result: 'pass' });
 * ```
 */
export function recordCase(dir: string, record: CaseRecord): void {
  append(dir, { kind: 'case', ...record });
}

/**
 * Appends a markdown note (a table of timings, say) to a section of the report.
 *
 * @example
 * ```ts
 * recordNote(dir, { area: 'Overload', title: 'RSS over time (fastify)', markdown: '| s | MiB |\n|---|---|\n| 1 | 80 |' });
 * ```
 */
export function recordNote(dir: string, note: NoteRecord): void {
  append(dir, { kind: 'note', ...note });
}

function append(dir: string, line: Line): void {
  appendFileSync(join(dir, FILE), `${JSON.stringify(line)}\n`);
}

/**
 * Reads back what {@link recordCase} and {@link recordNote} wrote (nothing when the file is absent).
 *
 * @example
 * ```ts
 * const { cases, notes } = readRecords(dir);
 * ```
 */
export function readRecords(dir: string): { cases: CaseRecord[]; notes: NoteRecord[] } {
  const file = join(dir, FILE);
  const cases: CaseRecord[] = [];
  const notes: NoteRecord[] = [];
  if (!existsSync(file)) return { cases, notes };
  for (const text of readFileSync(file, 'utf8').split('\n')) {
    if (!text.trim()) continue;
    const line = JSON.parse(text) as Line;
    if (line.kind === 'case') {
      const { kind: _, ...rest } = line;
      cases.push(rest);
    } else {
      const { kind: _, ...rest } = line;
      notes.push(rest);
    }
  }
  return { cases, notes };
}

/** The sections in the order the report shows them; unknown areas follow. */
export const AREAS = [
  'Hostile input',
  'Fuzzing',
  'Overload',
  'Slow clients',
  'Oversized headers',
  'Access control',
  'TLS',
  'Stateful sequences',
  'Rollout routes',
  'CLI flags',
  'Faults',
  'Security',
] as const;

/**
 * Escapes a value for one markdown table cell (pipes, newlines, over-long text).
 *
 * @example
 * ```ts
 * cell('a|b\nc'); // 'a\\|b c'
 * ```
 */
export function cell(value: string, max = 160): string {
  const flat = value.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat || '-';
}

/** What the report's header says about the run. */
export interface ReportMeta {
  /** `ci` (short soak) or `full`. */
  mode: string;
  startedAt: Date;
  durationMs: number;
  /** Machine, Node version and the like. */
  environment: string;
}

/**
 * Renders RELIABILITY.md: a summary, then per section a table of every case (what was sent or
 * broken, what came back, the result) followed by the section's notes.
 *
 * @example
 * ```ts
 * writeFileSync('RELIABILITY.md', renderReport(readRecords(dir), { mode: 'ci', startedAt, durationMs, environment }));
 * ```
 */
export function renderReport(
  records: { cases: CaseRecord[]; notes: NoteRecord[] },
  meta: ReportMeta,
): string {
  const { cases, notes } = records;
  const failed = cases.filter((c) => c.result === 'fail').length;
  const areas = [...AREAS, ...new Set([...cases, ...notes].map((c) => c.area))].filter(
    (a, i, all) => all.indexOf(a) === i,
  );
  const out: string[] = [
    '# Reliability and security',
    '',
    'Written by `npm run test:reliability` (packages/reliability). Every case runs against real',
    'servers on loopback (the Fastify plugin and the Express router of `@mlserve/http`, and the',
    '`mlserve` CLI), serving the real mnist-cnn on onnxruntime-node. Timings come from a shared,',
    'noisy machine: read them as orders of magnitude, not as benchmarks.',
    '',
    `- Run: ${meta.startedAt.toISOString()}, ${(meta.durationMs / 1000).toFixed(0)} s, mode \`${meta.mode}\``,
    `- Environment: ${meta.environment}`,
    `- Cases: ${cases.length}, passed ${cases.length - failed}, failed ${failed}`,
    '',
  ];
  for (const area of areas) {
    const rows = cases.filter((c) => c.area === area);
    const extra = notes.filter((n) => n.area === area);
    if (rows.length === 0 && extra.length === 0) continue;
    out.push(`## ${area}`, '');
    if (rows.length > 0) {
      out.push('| Case | Server | Sent or broken | Came back | Result |', '| --- | --- | --- | --- | --- |');
      for (const c of rows) {
        const result = c.result === 'pass' ? 'pass' : '**FAIL**';
        out.push(
          `| ${cell(c.name, 80)} | ${cell(c.adapter, 10)} | ${cell(c.sent)} | ${cell(c.got, 700)} | ${result} |`,
        );
      }
      out.push('');
    }
    for (const n of extra) out.push(`### ${n.title}`, '', n.markdown.trim(), '');
  }
  return `${out.join('\n').trimEnd()}\n`;
}
