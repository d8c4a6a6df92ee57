import { execFileSync } from 'node:child_process';

/**
 * What a suite does when a service it needs is missing: under CI it fails with the command that
 * installs it; elsewhere it says loudly that it skips. Returns true when the suite should run.
 *
 * @example
 * ```ts
 * const haveRedis = requireService('redis-server', 'apt-get install -y redis-server');
 * describe.runIf(haveRedis)('redis store', () => { ... });
 * ```
 */
export function requireService(binary: string, installCommand: string): boolean {
  if (hasBinary(binary)) return true;
  const message = `${binary} is not installed: run \`${installCommand}\``;
  if (process.env.CI) throw new Error(message);
  console.warn(`\n!!! SKIPPING tests that need ${binary}. ${message}\n`);
  return false;
}

/** Whether an executable is on PATH. */
export function hasBinary(binary: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${JSON.stringify(binary)}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
