/**
 * `npx mlserve serve` (and `npm exec`, `npm start`) runs the server under npm, through `sh -c`. On
 * SIGTERM npm exits without passing the signal on, and the server, reparented to PID 1, kept
 * running with nothing left to stop it. Under npm, this watches the parent process: when it changes
 * (npm is gone), the server shuts down as on SIGTERM. A container or a process manager should still
 * run `node .../cli.js` directly, so that signals reach the server with no npm in between.
 *
 * @example
 * ```ts compile-only
 * import { exitWithParent } from '@mlserve/cli';
 * exitWithParent(() => server.close().then(() => process.exit(0)));
 * ```
 */
export function exitWithParent(onOrphaned: () => void, intervalMs = 500): (() => void) | undefined {
  if (process.env.npm_command === undefined && process.env.npm_lifecycle_event === undefined)
    return undefined;
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === parent) return;
    clearInterval(timer);
    process.stderr.write(`mlserve: npm (the parent process, ${parent}) exited: shutting down\n`);
    onOrphaned();
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
