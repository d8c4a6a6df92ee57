import { describe, expect, it } from 'vitest';
import { extractBlocks } from '../src/extract.js';

describe('extractBlocks', () => {
  it('reads markers, the fence line and indented fences', () => {
    const md = [
      '# T',
      '```ts',
      'const a = 1;',
      '```',
      'text',
      '```ts compile-only',
      'b();',
      '```',
      '- item',
      '  ```js fragment',
      '  x();',
      '    y();',
      '  ```',
      '```ts frgment',
      '```',
      '```',
      'plain',
      '```',
    ].join('\n');
    const blocks = extractBlocks('R.md', md);
    expect(blocks.map((b) => [b.line, b.lang, b.mode])).toEqual([
      [2, 'ts', 'run'],
      [6, 'ts', 'compile-only'],
      [10, 'js', 'fragment'],
      [14, 'ts', 'run'],
      [16, '', 'run'],
    ]);
    expect(blocks[0]!.code).toBe('const a = 1;');
    expect(blocks[2]!.code).toBe('x();\n  y();');
    expect(blocks[3]!.unknown).toEqual(['frgment']);
    expect(blocks[3]!.code).toBe('');
  });
});
