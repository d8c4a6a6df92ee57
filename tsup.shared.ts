import type { Options } from 'tsup';

/**
 * The one build every package shares: ESM + CJS + d.ts, Node 20 floor.
 * A package passes its own entries (and anything else it needs) on top.
 */
export function packageBuild(overrides: Options = {}): Options {
  return {
    entry: ['src/index.ts'],
    format: ['esm', 'cjs'],
    dts: true,
    clean: true,
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    splitting: false,
    treeshake: false,
    ...overrides,
  };
}
