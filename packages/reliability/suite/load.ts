import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { type Agent, request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { percentile, sleep } from './helpers.js';

/** The repository root (child processes run there so `--import tsx` and the workspace resolve). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** One request's outcome, as the load generator saw it. */
export interface Outcome {
  status: number;
  /** Round trip, ms. */
  ms: number;
  retryAfter: string | undefined;
  /** A socket error or a timeout instead of an answer. */
  error: string | undefined;
  /** `code` of an error body. */
  code: string | undefined;
  /** When it was sent, ms since the run started. */
  at: number;
}

/** A POST on a keep-alive agent that always settles: an answer, a socket error or a timeout. */
export function fire(
  agent: Agent,
  url: string,
  path: string,
  body: Buffer,
  headers: Record<string, string>,
  timeoutMs: number,
  at = 0,
): Promise<Outcome> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (o: Omit<Outcome, 'ms' | 'at'>) => {
      if (settled) return;
      settled = true;
      resolve({ ...o, ms: performance.now() - t0, at });
    };
    const req = httpRequest(
      `${url}${path}`,
      { method: 'POST', agent, headers: { ...headers, 'content-length': String(body.byteLength) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (e) => done({ status: 0, retryAfter: undefined, error: e.message, code: undefined }));
        res.on('end', () => {
          let code: string | undefined;
          if ((res.statusCode ?? 0) >= 400) {
            try {
              code = (JSON.parse(Buffer.concat(chunks).toString()) as { code?: string }).code;
            } catch {}
          }
          const ra = res.headers['retry-after'];
          done({
            status: res.statusCode ?? 0,
            retryAfter: Array.isArray(ra) ? ra[0] : ra,
            error: undefined,
            code,
          });
        });
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`timeout after ${timeoutMs} ms`)));
    req.on('error', (e) => done({ status: 0, retryAfter: undefined, error: e.message, code: undefined }));
    req.end(body);
  });
}

/** A closed loop: `concurrency` clients, each sending its next request when the last returns. */
export async function closedLoop(
  send: (at: number) => Promise<Outcome>,
  concurrency: number,
  durationMs: number,
): Promise<Outcome[]> {
  const out: Outcome[] = [];
  const start = performance.now();
  const end = start + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) out.push(await send(performance.now() - start));
    }),
  );
  return out;
}

/**
 * An open loop: requests at `rate` per second whatever the answers, for `durationMs`, at most
 * `rate * duration` of them; resolves once every request has settled. `onTick` runs once a second.
 */
export async function openLoop(
  send: (at: number) => Promise<Outcome>,
  rate: number,
  durationMs: number,
  onTick?: (elapsedMs: number) => void,
): Promise<Outcome[]> {
  const pending: Promise<Outcome>[] = [];
  const total = Math.floor((rate * durationMs) / 1000);
  const start = performance.now();
  let nextTick = 1000;
  while (pending.length < total) {
    const elapsed = performance.now() - start;
    const due = Math.min(total, Math.floor((elapsed * rate) / 1000));
    while (pending.length < due) pending.push(send(elapsed));
    if (onTick && elapsed >= nextTick) {
      onTick(elapsed);
      nextTick += 1000;
    }
    await sleep(5);
  }
  return Promise.all(pending);
}

/** Summary of a set of outcomes. */
export function summarize(outcomes: readonly Outcome[], durationMs: number) {
  const ok = outcomes.filter((o) => o.status === 200);
  const shed = outcomes.filter((o) => o.status === 429 || o.status === 503);
  const other = outcomes.filter((o) => o.status !== 200 && o.status !== 429 && o.status !== 503);
  return {
    total: outcomes.length,
    ok: ok.length,
    shed: shed.length,
    other,
    okPerSec: (ok.length * 1000) / durationMs,
    okP50: percentile(
      ok.map((o) => o.ms),
      50,
    ),
    okP99: percentile(
      ok.map((o) => o.ms),
      99,
    ),
    shedP50: percentile(
      shed.map((o) => o.ms),
      50,
    ),
    shedP99: percentile(
      shed.map((o) => o.ms),
      99,
    ),
    shedWithoutRetryAfter: shed.filter((o) => !o.retryAfter).length,
  };
}

/** Resident set size of another process, MiB (Linux /proc; NaN elsewhere). */
export function processRssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** A child process that printed `READY <port>`. */
export interface Child {
  child: ChildProcess;
  port: number;
  output: () => string;
  exited: Promise<number | null>;
}

/** Spawns a TypeScript script (through tsx) and waits for its `READY <port>` line. */
export async function spawnReady(script: string, args: string[], timeoutMs = 90_000): Promise<Child> {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_ENV: 'production' },
  });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
  });
  child.stderr!.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const m = /READY (\d+)/.exec(out);
    if (m) return { child, port: Number(m[1]), output: () => out, exited };
    if (child.exitCode !== null) break;
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`${script} did not start:\n${out}`);
}
