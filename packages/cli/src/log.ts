import { requestIdOf } from '@mlserve/http';
import type { FastifyBaseLogger } from 'fastify';
import { type Logger, pino } from 'pino';
import type { LogFormat, LogLevel } from './args.js';

/** Where `serve` writes: stdout for what a person reads, stderr for logs. */
export interface Output {
  out: (line: string) => void;
  err: (line: string) => void;
}

/** The server's logger: pino, JSON lines or text for a person. */
export type ServerLogger = Logger;

const REQUEST = Symbol('mlserve.request');
/** A marker message that is not logged (Fastify's own "Server listening at" line). */
export const UNLOGGED = '\u0000mlserve-unlogged';

/**
 * The CLI's pino logger. `json`: one JSON object per line on `output.out` (stdout), pino's fields
 * (`level`, `time`, `pid`, `hostname`, `msg`) plus `reqId` on request lines. `pretty`: info lines
 * without a request id (startup progress, the model table, the curl line) are printed as they are
 * on stdout; everything else as `<ISO time> <level> <msg> key=value...` on stderr.
 *
 * @example
 * ```ts
 * import { createLogger } from '@mlserve/cli';
 * const log = createLogger('json', 'info', { out: (l) => console.log(l), err: (l) => console.error(l) });
 * log.info({ model: 'mnist' }, 'ready');
 * ```
 */
export function createLogger(format: LogFormat, level: LogLevel, output: Output): ServerLogger {
  const write =
    format === 'json' ? (s: string) => output.out(s.endsWith('\n') ? s.slice(0, -1) : s) : pretty(output);
  return pino(
    {
      level,
      // Request loggers carry the raw request: the id is read when a line is written, so a V2 body's
      // `id` that became the request id after the logger was made is the one logged.
      mixin(_obj, _level, logger) {
        const req = (logger as unknown as { [REQUEST]?: object })[REQUEST];
        const id = req && requestIdOf(req);
        return id === undefined ? {} : { reqId: id };
      },
      hooks: {
        logMethod(args, method) {
          if (args[0] === UNLOGGED) return;
          method.apply(this, args);
        },
      },
    },
    { write },
  );
}

type LevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
type LogFn = (...args: unknown[]) => void;

/**
 * A request's logger that makes its pino child only when it first writes a line (or is asked for
 * something only a pino logger has). Fastify makes one request logger per request; at the default
 * level (info) almost no request writes a line, and a pino child per request (its bindings, its
 * level methods) was measurable CPU and garbage per request under load. A line at a level that is
 * off costs one level check and makes nothing.
 */
class RequestLog {
  readonly #parent: Logger;
  readonly #options: object;
  readonly #raw: object;
  #child: Logger | undefined;

  constructor(parent: Logger, options: object, raw: object) {
    this.#parent = parent;
    this.#options = options;
    this.#raw = raw;
  }

  /** The pino child, made on first use; its `reqId` follows the request's id (see the mixin). */
  get pino(): Logger {
    if (this.#child === undefined) {
      const child = this.#parent.child({}, this.#options);
      (child as unknown as { [REQUEST]?: object })[REQUEST] = this.#raw;
      this.#child = child;
    }
    return this.#child;
  }

  #write(level: LevelName, args: unknown[]): void {
    if (this.#child === undefined && !this.#parent.isLevelEnabled(level)) return;
    (this.pino[level] as LogFn)(...args);
  }

  get level(): string {
    return (this.#child ?? this.#parent).level;
  }
  set level(value: string) {
    this.pino.level = value;
  }
  isLevelEnabled(level: string): boolean {
    return (this.#child ?? this.#parent).isLevelEnabled(level);
  }
  trace(...args: unknown[]): void {
    this.#write('trace', args);
  }
  debug(...args: unknown[]): void {
    this.#write('debug', args);
  }
  info(...args: unknown[]): void {
    this.#write('info', args);
  }
  warn(...args: unknown[]): void {
    this.#write('warn', args);
  }
  error(...args: unknown[]): void {
    this.#write('error', args);
  }
  fatal(...args: unknown[]): void {
    this.#write('fatal', args);
  }
  silent(): void {}
  child(bindings: Record<string, unknown>, options?: object): Logger {
    return this.pino.child(bindings, options);
  }
  bindings(): Record<string, unknown> {
    return this.pino.bindings();
  }
}

/**
 * Fastify's `childLoggerFactory`: a request logger whose `reqId` follows the request's id. The
 * pino child is made only when the request writes a line (see {@link RequestLog}); with a per-route
 * `logLevel` or `serializers` it is made at once.
 */
export function requestLogger(
  logger: FastifyBaseLogger,
  _bindings: unknown,
  options: object,
  raw: object,
): FastifyBaseLogger {
  const lazy = new RequestLog(logger as unknown as Logger, options, raw);
  const o = options as { level?: unknown; serializers?: unknown };
  if (o.level !== undefined || o.serializers !== undefined) void lazy.pino;
  return lazy as unknown as FastifyBaseLogger;
}

const NAMES: Record<number, string> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'msg']);

function pretty(output: Output): (s: string) => void {
  return (s) => {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(s) as Record<string, unknown>;
    } catch {
      output.err(s.trimEnd());
      return;
    }
    const level = Number(o.level);
    const msg = typeof o.msg === 'string' ? o.msg : '';
    if (level === 30 && o.reqId === undefined) {
      output.out(msg);
      return;
    }
    const extra = Object.entries(o)
      .filter(([k]) => !SKIP.has(k))
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    const time = new Date(Number(o.time) || Date.now()).toISOString();
    output.err(`${time} ${(NAMES[level] ?? String(level)).padEnd(5)} ${msg}${extra ? ` ${extra}` : ''}`);
  };
}
