import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** Worker threads run the built dist/worker.js: refuse to test a missing or stale build. */
export default function checkBuild(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const built = `${root}dist/worker.js`;
  const hint = 'run `npx turbo run build --filter=@mlserve/workers...` (npm test builds first)';
  if (!existsSync(built)) throw new Error(`@mlserve/workers tests need ${built}: ${hint}`);
  const builtAt = statSync(built).mtimeMs;
  for (const f of readdirSync(`${root}src`)) {
    if (f.endsWith('.test.ts')) continue;
    if (statSync(`${root}src/${f}`).mtimeMs > builtAt) {
      throw new Error(`@mlserve/workers: dist/worker.js is older than src/${f}; ${hint}`);
    }
  }
}
