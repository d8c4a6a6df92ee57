import { parseArgs } from 'node:util';
import { parseBytes } from '@mlserve/repository';

/** Log levels, most severe first. */
export const LOG_LEVELS = ['silent', 'error', 'warn', 'info', 'debug'] as const;
/** How much `mlserve` prints. */
export type LogLevel = (typeof LOG_LEVELS)[number];
/** Log formats: pino JSON lines, or text for a person. */
export const LOG_FORMATS = ['json', 'pretty'] as const;
/** `json`: one JSON object per line (pino); `pretty`: text for a person. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/** `mlserve serve`'s options, parsed and checked. */
export interface ServeOptions {
  /** The model repository directory. */
  modelRepository: string;
  /** HTTP port (0: any free port; the one taken is printed). Default 8000. */
  port: number;
  /** Interface to listen on. Default 127.0.0.1: only this machine can connect. */
  host: string;
  /** Also serve KServe V2 over gRPC on this port (0: any free port, printed). Default: off. */
  grpcPort?: number;
  /**
   * Worker threads per model (0: run in the main thread). Default (absent): the repository's
   * `defaultServing()`: the main thread on up to 2 CPUs, one worker on 3 or more.
   */
  workers?: number;
  /** Scan the repository for changes this often, ms (0: never). Default 5000. */
  pollIntervalMs: number;
  /** Serve Prometheus metrics at /metrics on the HTTP port. Default true (`--no-metrics` turns them off). */
  metrics: boolean;
  logLevel: LogLevel;
  /**
   * `json` (pino JSON lines on stdout) or `pretty` (text). Default: `pretty` when stdout is a
   * terminal, `json` otherwise (a container, a process manager, a pipe).
   */
  logFormat?: LogFormat;
  /** onnxruntime intra-op threads per model. Default: the CPUs left beside the event loop's (1 on 2 CPUs). */
  intraOpThreads?: number;
  /** Turn on the repository (load/unload) endpoints. Default false. */
  management: boolean;
  /** Skip warmup (faster start, slower first requests). Default false. */
  noWarmup: boolean;
  /**
   * On SIGTERM, keep accepting and serving this long after readiness turns 503, so load balancers
   * stop sending before the listener closes (connections still queued in the kernel when it closes
   * are reset). Default 0.
   */
  shutdownDelayMs?: number;
  /**
   * Server processes sharing the ports (node:cluster); `'auto'`: the CPUs this server may use, the
   * cgroup quota included. Default 1 (no cluster).
   */
  processes?: number | 'auto';
  /** Also serve `/metrics` (every process aggregated) on this port. Turns `metrics` on. */
  metricsPort?: number;
  /** Keep every model's response cache (config.json "cache") in this Redis (`redis://host:6379/0`). */
  cacheRedis?: string;
  /** Per-command Redis timeout for the cache, ms (a slow lookup is a miss). Default 50. */
  cacheRedisTimeoutMs?: number;
  /** Key prefix in Redis. Default `mlserve:cache:`. */
  cacheRedisPrefix?: string;
  /** Web origins whose pages may POST to this server (`--trusted-origin`, repeatable). */
  trustedOrigins?: string[];
  /** Host names accepted on loopback besides localhost, 127.x.x.x and [::1] (`--allowed-host`, repeatable). */
  allowedHosts?: string[];
  /** Origins (or `*`) whose pages may call this server and read answers: CORS (`--cors-origin`, repeatable). */
  corsOrigins?: string[];
  /** A keys file (JSON lines of SHA-256 digests with scopes and rate limits): every route but health needs a key. */
  authKeys?: string;
  /** PEM certificate (chain) file: serve HTTPS and gRPC over TLS (with {@link ServeOptions.tlsKey}). */
  tlsCert?: string;
  /** PEM private key file of {@link ServeOptions.tlsCert}. */
  tlsKey?: string;
  /**
   * Longest a client may take to send a request's headers, ms, counted from the connection or
   * the previous request (0: no limit). Default {@link HTTP_DEFAULTS}.headersTimeoutMs (10 s).
   */
  headersTimeoutMs?: number;
  /** Longest a client may take to send a whole request, body included, ms (0: no limit). Default 60 s. */
  requestTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open after a response, ms. Default 72 s. */
  keepAliveTimeoutMs?: number;
  /** Close a connection after this long with no bytes either way, ms (0: never). Default 0. */
  connectionTimeoutMs?: number;
  /** The largest request body, bytes, before and after decompression. Default 64 MiB. */
  bodyLimit?: number;
  /**
   * Serve models on demand under this memory budget, bytes (`--model-memory-budget 2GiB`): the
   * least recently used idle models are unloaded to make room and load again on their next request.
   * Per server process. Default: none (every model stays loaded).
   */
  modelMemoryBudget?: number;
}

/**
 * The HTTP server's limits on slow and idle clients when no flag says otherwise. Node's own are
 * 60 s for headers and 300 s for a request, and Fastify turns the request limit off (0): a client
 * trickling a body one byte at a time would hold its connection for ever.
 *
 * @example
 * ```ts
 * import { HTTP_DEFAULTS } from '@mlserve/cli';
 * console.log(HTTP_DEFAULTS.headersTimeoutMs); // 10000
 * ```
 */
export const HTTP_DEFAULTS = {
  /** Slowloris: headers sent a line at a time. Real clients send theirs in one packet. */
  headersTimeoutMs: 10_000,
  /** A 64 MiB body (the default limit) at about 1 MiB/s; a slow body is cut at this point. */
  requestTimeoutMs: 60_000,
  /** Fastify's: longer than the 60 s idle timeout of common load balancers, so they close first. */
  keepAliveTimeoutMs: 72_000,
  /** Off: a model computing for a long time sends nothing, and that is no reason to cut it. */
  connectionTimeoutMs: 0,
  /** @mlserve/http's default. */
  bodyLimit: 64 * 1024 * 1024,
} as const;

/** A command-line mistake: printed with a hint, exit status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** `mlserve keys create`'s options. */
export interface KeysCreateOptions {
  /** The key's name (unique in a keys file). */
  name: string;
  /** Its scopes: infer, metadata, metrics, management. */
  scopes: ('infer' | 'metadata' | 'metrics' | 'management')[];
  /** Requests per second (both transports together); absent: unlimited. */
  perSecond?: number;
  /** Bucket size (default: perSecond). */
  burst?: number;
  /** Append the keys-file line to this file (created 0600) instead of printing it. */
  append?: string;
}

/** What the command line asks for. */
export type Command =
  | { command: 'serve'; options: ServeOptions }
  | { command: 'help'; topic?: string }
  | { command: 'keys-create'; options: KeysCreateOptions }
  | { command: 'version' };

export const HELP = `mlserve: serve a model repository over HTTP (KServe V2 and TF Serving REST)

Usage:
  mlserve serve --model-repository DIR [options]
  mlserve keys create --name NAME --scopes infer[,metadata,metrics,management]
                      [--rate-limit N] [--burst N] [--append FILE]
  mlserve --help | --version

Options:
  --model-repository DIR  The models: DIR/<model>/<version>/model.onnx (or model.json for
                          TF.js) with an optional DIR/<model>/config.json. Required.
  --port N                HTTP port (default 8000; 0 picks a free one and prints it).
  --grpc-port N           Also serve KServe V2 over gRPC (Triton's GRPCInferenceService, what
                          tritonclient.grpc and perf_analyzer use) on port N, from the same
                          models, batching, cache and metrics as HTTP (default: off; Triton
                          uses 8001; 0 picks a free one and prints it).
  --host ADDR             Interface to listen on (default 127.0.0.1, this machine only; use
                          0.0.0.0 to accept connections from the network).
  --workers N             Run each model in a pool of N worker threads so inference never
                          blocks the HTTP server; 0 runs models in the main thread. Default:
                          the main thread (1 intra-op thread) on up to 2 CPUs, one worker on
                          3 or more (cgroup quota included). A model's config.json "workers"
                          wins.
  --poll-interval T       Check the repository for new, changed and removed versions every T
                          and on file-system events (e.g. 5s, 500ms; 0 turns hot reload off;
                          default 5s). A new version loads once its files stop changing, warms
                          up, then replaces the old.
  --no-metrics            Do not serve Prometheus metrics. They are on by default, at /metrics on
                          the HTTP port (--metrics is accepted and changes nothing).
  --log-level L           silent, error, warn, info (default) or debug (adds one access log line
                          per request: method, url, status, ms, reqId).
  --log-format F          json: one pino JSON object per line on stdout; pretty: text for a
                          person (progress on stdout, warnings and errors on stderr). Default:
                          pretty when stdout is a terminal, json otherwise. Every request has one
                          id: the V2 body's "id", else the x-request-id header, else a UUID; it is
                          the reqId of its log lines and comes back in x-request-id.
  --intra-op-threads N    onnxruntime threads per model (default: the CPUs beside the event
                          loop's, at most 4: 1 on 2 CPUs).
  --management            Turn on POST /v2/repository/... (load, unload, index). Off by default:
                          anyone who can reach the port could unload models. Set
                          MLSERVE_MANAGEMENT_TOKEN to require "Authorization: Bearer <token>".
  --no-warmup             Skip warmup: faster start, slower first requests.
  --shutdown-delay T      On SIGTERM, keep serving for T after readiness turns 503 before the
                          listener closes, so a load balancer stops sending first (e.g. 5s behind
                          Kubernetes; default 0). Connections the kernel queued but the server had
                          not accepted when the listener closes are reset by the OS.
  --processes N|auto      Serve from N processes sharing the ports (HTTP and gRPC), each with
                          its own models; auto: one per CPU this server may use (a container's
                          CPU quota included). /metrics aggregates them; readiness waits for all;
                          a process that dies is replaced (default 1).
  --metrics-port N        Also serve /metrics (all processes aggregated) on port N.
  --cache-redis URL       Keep the response cache of every model whose config.json has "cache"
                          in Redis (redis://host:6379/0), shared by every process and replica.
  --cache-redis-timeout T Longest a cache lookup may take before it counts as a miss (default 50ms).
  --cache-redis-prefix P  Key prefix in Redis (default mlserve:cache:).
  --trusted-origin O      Let pages on origin O (scheme://host[:port]) POST here from a browser;
                          repeatable. Other web pages' requests are refused (403), and bodies
                          typed text/plain, form or multipart are 415, so a site a user visits
                          cannot drive this server. curl and API clients are not affected.
  --allowed-host NAME     Accept Host NAME on loopback connections besides localhost, 127.0.0.1
                          and [::1] (DNS rebinding protection; a local reverse proxy's name, say);
                          repeatable.
  --cors-origin O         CORS: let pages on origin O (scheme://host[:port], or * for any) call
                          this server and read the answers (preflights answered; O is also a
                          trusted origin); repeatable. Default: no CORS.
  --auth-keys FILE        Require an API key (Authorization: Bearer KEY or x-api-key: KEY) on
                          every route but health (/v2/health/*, model ready), HTTP and gRPC.
                          FILE: JSON lines {"sha256", "name", "scopes", "rateLimit"} (make one
                          with mlserve keys create). 401 without a valid key, 403 without the
                          scope (infer, metadata, metrics, management), 429 over its rate limit.
                          Replaces MLSERVE_MANAGEMENT_TOKEN (give a key the management scope).
  --tls-cert FILE         Serve HTTPS and gRPC over TLS with this PEM certificate (chain) and
  --tls-key FILE          its PEM private key (both needed). The --metrics-port server stays HTTP.
  --headers-timeout T     Close connections whose request headers have not all arrived within T
                          (408; slowloris; default 10s; 0: no limit).
  --request-timeout T     Close connections whose whole request, body included, has not arrived
                          within T (408; a body trickled byte by byte; default 60s; 0: no limit).
  --keep-alive-timeout T  Close idle keep-alive connections after T (default 72s: longer than the
                          60s idle timeout of common load balancers, so they close first).
  --connection-timeout T  Close a connection after T with no bytes either way (default 0: never;
                          a long inference sends nothing while it computes).
  --body-limit SIZE       Largest request body, before and after decompression (413 past it;
                          e.g. 16mb, 512kb, bytes; default 64mb).
  --model-memory-budget S Load models on demand within S of memory (e.g. 2GiB, 500MB), per
                          process: nothing loads at start (metadata from the ONNX header or
                          config.json "inputs"/"outputs"; other models load once to read it);
                          each model's cost is measured at its first load; the least
                          recently used idle ones are unloaded to make room (never one serving
                          a request, never one with "pinned": true in its config.json) and load
                          again on their next request (503 with Retry-After when that cannot
                          finish within the request's timeout). Default: every model stays loaded.
  -h, --help              Show this help.
  -v, --version           Print the version.

Signals: SIGTERM or SIGINT stops accepting connections, turns readiness to 503, finishes every
accepted request, unloads the models and exits 0. A second signal exits at once (status 1).

Example:
  mlserve serve --model-repository ./model-repository --port 8000
`;

function integer(value: string, flag: string, min: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new UsageError(
      `${flag} must be an integer${min > 0 ? ` of at least ${min}` : ' of 0 or more'} (got "${value}")`,
    );
  }
  return n;
}

/**
 * Parses `500ms`, `5s`, `2m` or a bare number of milliseconds.
 *
 * @example
 * ```ts
 * parseDuration('5s', '--poll-interval'); // 5000
 * ```
 */
export function parseDuration(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(value.trim());
  if (!m) throw new UsageError(`${flag} must be a duration such as 500ms, 5s or 1m (got "${value}")`);
  const n = Number(m[1]);
  const unit = m[2] ?? 'ms';
  return Math.round(unit === 'ms' ? n : unit === 's' ? n * 1000 : n * 60_000);
}

/** Parses `64mb`, `512kb`, `1gb` (binary multiples) or a bare number of bytes. */
function parseSize(value: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/i.exec(value.trim());
  const unit = (m?.[2] ?? 'b').toLowerCase().replace('i', '');
  const bytes = m ? Math.round(Number(m[1]) * 1024 ** ['b', 'kb', 'mb', 'gb'].indexOf(unit)) : Number.NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0)
    throw new UsageError(`${flag} must be a size such as 16mb, 512kb or a number of bytes (got "${value}")`);
  return bytes;
}

/**
 * Parses `mlserve`'s arguments (without `node` and the script). Throws {@link UsageError}.
 *
 * @example
 * ```ts
 * const command = parseCommandLine(process.argv.slice(2));
 * if (command.command === 'serve') await serve(command.options);
 * ```
 */
export function parseCommandLine(argv: readonly string[]): Command {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0]!);
  }
  const { values, positionals } = parsed;
  if (values.version) return { command: 'version' };
  const [command, ...rest] = positionals;
  if (values.help || command === 'help')
    return { command: 'help', ...(rest[0] !== undefined && { topic: rest[0] }) };
  if (command === undefined) throw new UsageError('no command given');
  if (command === 'keys') return keysCommand(rest, values);
  if (command !== 'serve') throw new UsageError(`unknown command "${command}"`);
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (!values['model-repository']) throw new UsageError('--model-repository DIR is required');
  const logLevel = (values['log-level'] ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
  }
  const logFormat = values['log-format'];
  if (logFormat !== undefined && !(LOG_FORMATS as readonly string[]).includes(logFormat)) {
    throw new UsageError(`--log-format must be one of ${LOG_FORMATS.join(', ')} (got "${logFormat}")`);
  }
  if (values.metrics && values['no-metrics']) throw new UsageError('--metrics and --no-metrics contradict');
  const port = values.port === undefined ? 8000 : integer(values.port, '--port', 0);
  if (port > 65535) throw new UsageError(`--port must be at most 65535 (got ${port})`);
  const options: ServeOptions = {
    modelRepository: values['model-repository'],
    port,
    host: values.host ?? '127.0.0.1',
    pollIntervalMs:
      values['poll-interval'] === undefined
        ? 5000
        : parseDuration(values['poll-interval'], '--poll-interval'),
    metrics: !values['no-metrics'],
    logLevel,
    management: values.management ?? false,
    noWarmup: values['no-warmup'] ?? false,
    ...(logFormat !== undefined && { logFormat: logFormat as LogFormat }),
    shutdownDelayMs:
      values['shutdown-delay'] === undefined
        ? 0
        : parseDuration(values['shutdown-delay'], '--shutdown-delay'),
  };
  if (values['grpc-port'] !== undefined) {
    const grpcPort = integer(values['grpc-port'], '--grpc-port', 0);
    if (grpcPort > 65535) throw new UsageError(`--grpc-port must be at most 65535 (got ${grpcPort})`);
    if (grpcPort !== 0 && grpcPort === port) throw new UsageError('--grpc-port must differ from --port');
    options.grpcPort = grpcPort;
  }
  if (values.workers !== undefined) options.workers = integer(values.workers, '--workers', 0);
  if (values.processes !== undefined) {
    options.processes = values.processes === 'auto' ? 'auto' : integer(values.processes, '--processes', 1);
  }
  if (values['metrics-port'] !== undefined) {
    const metricsPort = integer(values['metrics-port'], '--metrics-port', 0);
    if (metricsPort > 65535)
      throw new UsageError(`--metrics-port must be at most 65535 (got ${metricsPort})`);
    if (metricsPort !== 0 && (metricsPort === port || metricsPort === options.grpcPort))
      throw new UsageError('--metrics-port must differ from --port and --grpc-port');
    if (!options.metrics) throw new UsageError('--metrics-port and --no-metrics contradict');
    options.metricsPort = metricsPort;
  }
  if (values['cache-redis'] !== undefined) {
    if (!/^rediss?:\/\//.test(values['cache-redis']))
      throw new UsageError(
        `--cache-redis must be a redis:// or rediss:// URL (got "${values['cache-redis']}")`,
      );
    options.cacheRedis = values['cache-redis'];
  }
  if (values['cache-redis-timeout'] !== undefined) {
    options.cacheRedisTimeoutMs = parseDuration(values['cache-redis-timeout'], '--cache-redis-timeout');
    if (options.cacheRedisTimeoutMs <= 0) throw new UsageError('--cache-redis-timeout must be more than 0');
  }
  if (values['cache-redis-prefix'] !== undefined) options.cacheRedisPrefix = values['cache-redis-prefix'];
  if (
    (options.cacheRedisTimeoutMs !== undefined || options.cacheRedisPrefix !== undefined) &&
    !options.cacheRedis
  )
    throw new UsageError('--cache-redis-timeout and --cache-redis-prefix need --cache-redis URL');
  const trustedOrigins: string[] = [];
  const allowedHosts: string[] = [];
  for (const origin of values['trusted-origin'] ?? []) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {}
    if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== origin.replace(/\/$/, ''))
      throw new UsageError(`--trusted-origin must be an origin, scheme://host[:port] (got "${origin}")`);
    trustedOrigins.push(parsed.origin);
  }
  for (const host of values['allowed-host'] ?? []) {
    if (!/^(\*|[a-z0-9.-]+|\[[0-9a-f:.]+\])$/i.test(host))
      throw new UsageError(`--allowed-host must be a host name without port (got "${host}")`);
    allowedHosts.push(host);
  }
  const corsOrigins: string[] = [];
  for (const origin of values['cors-origin'] ?? []) {
    if (origin === '*') {
      corsOrigins.push(origin);
      continue;
    }
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {}
    if (!parsed || !/^https?:$/.test(parsed.protocol) || parsed.origin !== origin.replace(/\/$/, ''))
      throw new UsageError(`--cors-origin must be an origin, scheme://host[:port], or * (got "${origin}")`);
    corsOrigins.push(parsed.origin);
  }
  if (corsOrigins.length > 0) options.corsOrigins = corsOrigins;
  if (values['auth-keys'] !== undefined) options.authKeys = values['auth-keys'];
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined))
    throw new UsageError('--tls-cert and --tls-key go together');
  if (values['tls-cert'] !== undefined) options.tlsCert = values['tls-cert'];
  if (values['tls-key'] !== undefined) options.tlsKey = values['tls-key'];
  if (trustedOrigins.length > 0) options.trustedOrigins = trustedOrigins;
  if (allowedHosts.length > 0) options.allowedHosts = allowedHosts;
  const durations = [
    ['headers-timeout', 'headersTimeoutMs'],
    ['request-timeout', 'requestTimeoutMs'],
    ['keep-alive-timeout', 'keepAliveTimeoutMs'],
    ['connection-timeout', 'connectionTimeoutMs'],
  ] as const;
  for (const [flag, key] of durations) {
    const value = values[flag];
    if (value !== undefined) options[key] = parseDuration(value, `--${flag}`);
  }
  if (options.keepAliveTimeoutMs === 0) throw new UsageError('--keep-alive-timeout must be more than 0');
  const headersMs = options.headersTimeoutMs ?? HTTP_DEFAULTS.headersTimeoutMs;
  const requestMs = options.requestTimeoutMs ?? HTTP_DEFAULTS.requestTimeoutMs;
  if (requestMs > 0 && (headersMs === 0 || headersMs > requestMs))
    throw new UsageError(
      `--headers-timeout (${headersMs} ms) must be on and at most --request-timeout (${requestMs} ms)`,
    );
  if (values['body-limit'] !== undefined) options.bodyLimit = parseSize(values['body-limit'], '--body-limit');
  if (values['intra-op-threads'] !== undefined) {
    options.intraOpThreads = integer(values['intra-op-threads'], '--intra-op-threads', 1);
  }
  if (values['model-memory-budget'] !== undefined) {
    try {
      options.modelMemoryBudget = parseBytes(values['model-memory-budget'], '--model-memory-budget');
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }
  return { command: 'serve', options };
}

const OPTIONS = {
  'model-repository': { type: 'string' },
  port: { type: 'string' },
  'grpc-port': { type: 'string' },
  host: { type: 'string' },
  workers: { type: 'string' },
  'poll-interval': { type: 'string' },
  metrics: { type: 'boolean' },
  'no-metrics': { type: 'boolean' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  'intra-op-threads': { type: 'string' },
  management: { type: 'boolean' },
  'no-warmup': { type: 'boolean' },
  'shutdown-delay': { type: 'string' },
  processes: { type: 'string' },
  'metrics-port': { type: 'string' },
  'cache-redis': { type: 'string' },
  'cache-redis-timeout': { type: 'string' },
  'cache-redis-prefix': { type: 'string' },
  'trusted-origin': { type: 'string', multiple: true },
  'allowed-host': { type: 'string', multiple: true },
  'cors-origin': { type: 'string', multiple: true },
  'auth-keys': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  name: { type: 'string' },
  scopes: { type: 'string' },
  'rate-limit': { type: 'string' },
  burst: { type: 'string' },
  append: { type: 'string' },
  'headers-timeout': { type: 'string' },
  'request-timeout': { type: 'string' },
  'keep-alive-timeout': { type: 'string' },
  'connection-timeout': { type: 'string' },
  'body-limit': { type: 'string' },
  'model-memory-budget': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

const SCOPES = ['infer', 'metadata', 'metrics', 'management'] as const;

function positiveNumber(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0)
    throw new UsageError(`${flag} must be a number above 0 (got "${value}")`);
  return n;
}

/** `mlserve keys create --name NAME --scopes a,b [--rate-limit N] [--burst N] [--append FILE]`. */
function keysCommand(rest: string[], values: Record<string, unknown>): Command {
  if (rest[0] !== 'create') throw new UsageError('usage: mlserve keys create --name NAME --scopes infer,...');
  if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"`);
  const name = values.name;
  if (typeof name !== 'string' || name.length === 0 || name.length > 128)
    throw new UsageError('--name NAME is required (who holds the key; unique in the keys file)');
  const scopes = String(values.scopes ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (scopes.length === 0) throw new UsageError(`--scopes is required: a comma list of ${SCOPES.join(', ')}`);
  for (const s of scopes) {
    if (!(SCOPES as readonly string[]).includes(s))
      throw new UsageError(`--scopes: "${s}" is not one of ${SCOPES.join(', ')}`);
  }
  const options: KeysCreateOptions = { name, scopes: scopes as KeysCreateOptions['scopes'] };
  if (typeof values['rate-limit'] === 'string')
    options.perSecond = positiveNumber(values['rate-limit'], '--rate-limit');
  if (typeof values.burst === 'string') {
    if (options.perSecond === undefined) throw new UsageError('--burst needs --rate-limit');
    options.burst = positiveNumber(values.burst, '--burst');
  }
  if (typeof values.append === 'string') options.append = values.append;
  return { command: 'keys-create', options };
}
