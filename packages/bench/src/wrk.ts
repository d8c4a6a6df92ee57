/**
 * wrk as the HTTP load generator: a separate process (so it never shares the server's event loop),
 * the same for every server compared, POST bodies from a generated Lua script.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** One wrk run's parsed output, plus wrk's own CPU time (from the shell's `times`). */
export interface WrkRun {
  rps: number;
  requests: number;
  errors: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
  wrkCores: number;
}

/** A wrk duration (`812.00us`, `1.47ms`, `2.10s`, `1.05m`) in milliseconds; NaN if unreadable. */
export function ms(text: string): number {
  const m = /([\d.]+)(us|ms|s|m)\b/.exec(text);
  if (!m) return Number.NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : m[2] === 'm' ? v * 60_000 : v;
}

/**
 * Parses what `wrk --latency` printed, followed by the shell's `times` (the last line: CPU time of
 * the shell's children, that is wrk's, user then system).
 */
export function parseWrk(stdout: string, seconds: number): WrkRun {
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? Number.NaN);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const sockErr = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const sockErrors = sockErr ? sockErr.slice(1).reduce((s, v) => s + Number(v), 0) : 0;
  const pct = (p: string) => ms(new RegExp(`\\s${p}%\\s+([\\d.]+\\w+)`).exec(stdout)?.[1] ?? '');
  const lat = /Latency\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)/.exec(stdout);
  const times = stdout.trim().split('\n').slice(-1)[0] ?? '';
  const cpu = [...times.matchAll(/(\d+)m([\d.]+)s/g)].reduce(
    (s, m) => s + Number(m[1]) * 60 + Number(m[2]),
    0,
  );
  return {
    rps,
    requests,
    errors: non2xx + sockErrors,
    p50: pct('50'),
    p90: pct('90'),
    p99: pct('99'),
    mean: ms(lat?.[1] ?? ''),
    max: ms(lat?.[3] ?? ''),
    wrkCores: cpu / seconds,
  };
}

/**
 * Runs wrk (one thread, `connections` connections, `seconds` long) against `url` with a Lua
 * script (see {@link luaScript}) in its own process, and parses its report and its CPU time.
 *
 * @example
 * ```ts
 * const run = await wrk('http://127.0.0.1:8000/v2/models/mnist/infer', luaScript(dir, 'mnist', body, headers), 5, 8);
 * console.log(run.rps, run.p99, run.wrkCores);
 * ```
 */
export function wrk(url: string, script: string, seconds: number, connections: number): Promise<WrkRun> {
  const cmd = `wrk -t1 -c${connections} -d${seconds}s --timeout 10s --latency -s '${script}' '${url}'; times`;
  return new Promise((resolve, reject) => {
    execFile('bash', ['-c', cmd], { maxBuffer: 1 << 20 }, (err, stdout) => {
      if (err) reject(err);
      else resolve(parseWrk(stdout, seconds));
    });
  });
}

/** Writes a Lua script that makes wrk POST `body` (kept in a file beside it) with `headers`; returns its path. */
export function luaScript(dir: string, name: string, body: Buffer, headers: Record<string, string>): string {
  const bodyFile = join(dir, `${name}.body`);
  writeFileSync(bodyFile, body);
  const lines = [
    'wrk.method = "POST"',
    ...Object.entries(headers).map(([k, v]) => `wrk.headers["${k}"] = "${v}"`),
    `local f = io.open("${bodyFile}", "rb")`,
    'wrk.body = f:read("*all")',
    'f:close()',
  ];
  const file = join(dir, `${name}.lua`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}
