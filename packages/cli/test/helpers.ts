/**
 * Child processes for the CLI tests (cli, talk, cluster): the built `dist/cli.js` (or `npx`, a
 * shell) spawned with piped output, waited on by what it prints. `npm test` builds first; alone,
 * run `npx turbo run build --filter=@mlserve/cli...`.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The built CLI the tests run. */
export const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

/** Throws a clear error when the CLI is not built (call it in `beforeAll`). */
export function requireBuiltCli(): void {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: run npx turbo run build --filter=@mlserve/cli...`);
}

export interface Running {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first match of `re` in stdout (and in stderr with `matchStderr`). */
  waitFor: (re: RegExp, ms?: number) => Promise<RegExpExecArray>;
  /**
   * Resolves with what `found` returns once it is not undefined (checked at once and after each
   * chunk of output); rejects when the process exits first or after `ms`.
   */
  waitUntil: <T>(found: () => T | undefined, what: string, ms?: number) => Promise<T>;
  exited: Promise<number | null>;
}

export interface SpawnOptions {
  cwd?: string;
  /** Added to this process's environment. */
  env?: Record<string, string>;
  /** `waitFor` also matches stderr. */
  matchStderr?: boolean;
  /** `waitFor`'s and `waitUntil`'s default limit (60 s). */
  waitMs?: number;
}

const children: ChildProcess[] = [];

/** SIGKILLs every process {@link spawnProcess} started that is still running (call it in `afterEach`). */
export function killChildren(): void {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}

/** Spawns `command` with stdout and stderr piped and collected. */
export function spawnProcess(command: string, args: readonly string[], options: SpawnOptions = {}): Running {
  const child = spawn(command, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...options.env },
    ...(options.cwd && { cwd: options.cwd }),
  });
  children.push(child);
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  child.stdout!.on('data', (d) => {
    out += d;
    wake();
  });
  child.stderr!.on('data', (d) => {
    err += d;
    wake();
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitUntil = <T>(found: () => T | undefined, what: string, ms = options.waitMs ?? 60_000) =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${what}\nstdout:\n${out}\nstderr:\n${err}`)),
        ms,
      );
      const check = () => {
        const value = found();
        if (value !== undefined) {
          clearTimeout(timer);
          resolve(value);
        } else if (child.exitCode !== null) {
          clearTimeout(timer);
          reject(new Error(`exited ${child.exitCode} before ${what}\nstdout:\n${out}\nstderr:\n${err}`));
        } else waiters.push(check);
      };
      child.on('exit', check);
      check();
    });
  const waitFor = (re: RegExp, ms?: number) =>
    waitUntil(() => re.exec(out) ?? (options.matchStderr ? re.exec(err) : null) ?? undefined, String(re), ms);
  return { child, stdout: () => out, stderr: () => err, waitFor, waitUntil, exited };
}
