import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { FAULTY } from './helpers.js';

const run = promisify(execFile);
const dist = fileURLToPath(new URL('../dist/', import.meta.url));

// The built package, as users load it: both module formats must find dist/worker.js.
const body = (load: string) => `
${load}
(async () => {
  const pool = await workerPool({ backend: { module: ${JSON.stringify(FAULTY)} }, source: 'x', threads: 1 });
  const out = await pool.infer({ x: { type: 'float32', dims: [1, 4], data: Float32Array.of(1, 2, 3, 4) } });
  console.log(JSON.stringify({ y: Array.from(out.y.data), backend: pool.metadata().backend }));
  await pool.dispose();
})();`;

describe('the built package', () => {
  it.each([
    [
      'ESM',
      ['--input-type=module', '-e', body(`import { workerPool } from ${JSON.stringify(`${dist}index.js`)};`)],
    ],
    [
      'CJS',
      [
        '--input-type=commonjs',
        '-e',
        body(`const { workerPool } = require(${JSON.stringify(`${dist}index.cjs`)});`),
      ],
    ],
  ])('%s build runs a pool from dist/worker.js', async (_format, args) => {
    const { stdout } = await run(process.execPath, args, { timeout: 20_000 });
    expect(JSON.parse(stdout.trim())).toEqual({ y: [2, 4, 6, 8], backend: 'worker-pool(test/faulty)' });
  });
});
