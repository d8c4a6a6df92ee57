/**
 * Finds the fenced code blocks of a Markdown file and what each is marked as.
 *
 * The convention for ```ts (and ```js) blocks:
 * - ```ts               typechecked and run
 * - ```ts compile-only  typechecked, not run (it needs something the test cannot provide)
 * - ```ts fragment      neither (partial code on purpose)
 */
export type Mode = 'run' | 'compile-only' | 'fragment';

export interface Block {
  /** README path relative to the repository root. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** The language word of the info string ('' when none). */
  lang: string;
  mode: Mode;
  /** Words of the info string after the language that are not a known marker. */
  unknown: string[];
  /** The code, with the fence's own indentation removed. */
  code: string;
}

const MARKERS = new Set(['compile-only', 'fragment']);

export function extractBlocks(file: string, text: string): Block[] {
  const lines = text.split(/\r?\n/);
  const blocks: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^( {0,3}|\s*)(`{3,}|~{3,})\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const fence = open[2]!;
    const words = open[3]!.trim().split(/\s+/).filter(Boolean);
    const lang = words[0] ?? '';
    const rest = words.slice(1);
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const close = new RegExp(`^\\s*${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`).exec(lines[j]!);
      if (close) break;
      body.push(lines[j]!.slice(Math.min(indent, /^\s*/.exec(lines[j]!)![0].length)));
    }
    blocks.push({
      file,
      line: i + 1,
      lang,
      mode: rest.includes('fragment') ? 'fragment' : rest.includes('compile-only') ? 'compile-only' : 'run',
      unknown: rest.filter((w) => !MARKERS.has(w)),
      code: body.join('\n'),
    });
    i = j;
  }
  return blocks;
}
