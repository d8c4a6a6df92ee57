import { readFileSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import {
  type ModelMetadata,
  ModelRegistry,
  type RolloutStatus,
  type Tensors,
  toServeError,
} from '@mlserve/core';
import { type GrpcServing, serveGrpc } from '@mlserve/grpc';
import {
  type Authenticator,
  createAuthenticator,
  genRequestId,
  mlservePlugin,
  parseKeys,
} from '@mlserve/http';
import { metrics } from '@mlserve/metrics';
import { V2_DATATYPE } from '@mlserve/protocol';
import {
  Repository,
  type RepositoryLogger,
  sampleInputs,
  type VersionEvent,
  zeroInputs,
} from '@mlserve/repository';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { LogFormat, ServeOptions } from './args.js';
import { HTTP_DEFAULTS, UsageError } from './args.js';
import { createLogger, type Output, requestLogger, type ServerLogger, UNLOGGED } from './log.js';
import { redisCaches } from './redis-cache.js';

/** A `/metrics` source: a prom-client `Registry` fits as it is. */
export interface MetricsSource {
  contentType: string;
  metrics(): Promise<string>;
}

/** How `mlserve serve --processes` plugs a worker process into the cluster (see cluster.ts). */
export interface ServeHooks {
  /** Readiness is also gated on this (every process ready). */
  ready?: () => boolean;
  /** The `/metrics` route's source, given this process's registry (default: that registry). */
  metrics?: (local: Registry) => MetricsSource;
}

/** A running server. */
export interface RunningServer {
  /** The base URL, e.g. `http://127.0.0.1:8000`. */
  url: string;
  repository: Repository;
  app: FastifyInstance;
  /** With `grpcPort`: the gRPC address, e.g. `127.0.0.1:8001`, and its server. */
  grpc?: { address: string; serving: GrpcServing };
  /** With `metrics`: this process's Prometheus registry. */
  metrics?: Registry;
  /** Resolves once the first scan of the repository has loaded (or failed) every model. */
  loaded: Promise<void>;
  /**
   * Graceful stop: stop accepting, readiness 503, finish accepted requests, unload every model.
   * Idempotent.
   */
  close(): Promise<void>;
}

/**
 * A registry that reports not ready until the repository's first scan is done (so a load balancer
 * waits for the models) and from the moment shutdown begins.
 */
class ServingRegistry extends ModelRegistry {
  started = false;
  stopping = false;
  gate?: () => boolean;
  override isReady(name?: string, version?: string): boolean {
    if (this.stopping) return false;
    if (name === undefined && (!this.started || (this.gate && !this.gate()))) return false;
    return super.isReady(name, version);
  }
}

const defaultOutput: Output = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** The package's version (for `GET /` and `GET /v2`). */
export function cliVersion(): string {
  try {
    return (
      JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    ).version;
  } catch {
    return 'unknown';
  }
}

/**
 * Fastify options that turn its per-request info lines off: a `LogController` that writes none
 * (Fastify 5.12 and later), else the older `disableRequestLogging` (deprecated since 5.12).
 */
function quietRequestLogging(): { logController?: never; disableRequestLogging?: boolean } {
  const Base = (Fastify as unknown as { LogController?: new () => object }).LogController;
  if (!Base) return { disableRequestLogging: true };
  class Quiet extends Base {
    incomingRequest(): void {}
    requestCompleted(): void {}
  }
  return { logController: new Quiet() as never };
}

/** The format `serve` logs in: `options.logFormat`, else pretty on a terminal and JSON otherwise. */
export function logFormatOf(options: Pick<ServeOptions, 'logFormat'>): LogFormat {
  return options.logFormat ?? (process.stdout.isTTY ? 'pretty' : 'json');
}

function repositoryLogger(logger: ServerLogger): RepositoryLogger {
  return {
    debug: (m) => logger.debug(m),
    // The repository's info lines repeat the progress lines: keep them for debug.
    info: (m) => logger.debug(m),
    warn: (m) => logger.warn(m),
    error: (m) => logger.error(m),
  };
}

function displayHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

function sampleRequest(meta: ModelMetadata, sample: Tensors | undefined): string {
  const inputs =
    sample ?? zeroInputs(meta, meta.maxBatchSize > 0 && meta.inputs.every((i) => i.batched) ? 1 : 0);
  // With class labels, ask for the top class so the answer reads as a prediction.
  const labelled = Array.isArray(meta.extra?.labels) && meta.outputs.length === 1;
  return JSON.stringify({
    ...(labelled && { outputs: [{ name: meta.outputs[0]!.name, parameters: { classification: 1 } }] }),
    inputs: Object.entries(inputs).map(([name, t]) => ({
      name,
      shape: t.dims,
      datatype: V2_DATATYPE[t.type],
      data: Array.from(t.data as ArrayLike<number | bigint | string>, (v) =>
        typeof v === 'bigint' ? Number(v) : v,
      ),
    })),
  });
}

/**
 * Starts the model server: the HTTP port first (liveness answers at once, readiness is 503 while
 * models load), then the repository's first scan, then polling. Prints what it loaded and a curl
 * line that gets a prediction.
 *
 * @example
 * ```ts
 * import { serve } from '@mlserve/cli';
 * const server = await serve({ modelRepository: './models', port: 0, host: '127.0.0.1',
 *   pollIntervalMs: 5000, metrics: true, logLevel: 'info', management: false, noWarmup: false });
 * await server.loaded;
 * console.log(server.url);
 * await server.close();
 * ```
 */
export async function serve(
  options: ServeOptions,
  output: Output = defaultOutput,
  hooks: ServeHooks = {},
): Promise<RunningServer> {
  const dir = resolve(options.modelRepository);
  const info = await stat(dir).catch(() => undefined);
  if (!info?.isDirectory())
    throw new UsageError(`--model-repository ${options.modelRepository} is not a directory`);
  const format = logFormatOf(options);
  const logger = createLogger(format, options.logLevel, output);
  const log = repositoryLogger(logger);
  // Progress for a person: info lines (with fields in JSON; blank spacer lines only in text).
  const say: Say = (line, fields, level = 'info') => {
    if (format === 'json') {
      if (line !== '') logger[level](fields ?? {}, line.trim().replace(/ {2,}/g, ' '));
    } else logger.info(fields ?? {}, line);
  };

  const caches = redisCaches(
    {
      ...(options.cacheRedis !== undefined && { url: options.cacheRedis }),
      ...(options.cacheRedisTimeoutMs !== undefined && { timeoutMs: options.cacheRedisTimeoutMs }),
      ...(options.cacheRedisPrefix !== undefined && { prefix: options.cacheRedisPrefix }),
    },
    (line) => log.warn?.(line),
  );
  await caches.ready();
  const registry = new ServingRegistry();
  if (hooks.ready) registry.gate = hooks.ready;
  const prom = options.metrics ? new Registry() : undefined;
  if (prom) collectDefaultMetrics({ register: prom, prefix: 'mlserve_process_' });
  const repository = new Repository(dir, {
    registry,
    logger: log,
    ...(options.workers !== undefined && { workers: options.workers }),
    warmup: !options.noWarmup,
    cacheStore: caches.cacheStore,
    ...(options.intraOpThreads !== undefined && { intraOpThreads: options.intraOpThreads }),
    ...(options.modelMemoryBudget !== undefined && { modelMemoryBudget: options.modelMemoryBudget }),
    // Outermost on every version: request counts, latencies, queue/compute time, batch sizes, cache hits.
    ...(prom && { middleware: () => [metrics({ registry: prom, prefix: 'mlserve_' })] }),
  });
  if (prom) registerRepositoryMetrics(prom, repository, registry);

  const started = new Map<string, number>();
  repository.on('version', (e: VersionEvent) => progress(e, say, log, started));

  const token = process.env.MLSERVE_MANAGEMENT_TOKEN;
  const { auth, tls } = await security(options, token);
  // Slow and idle clients (see HTTP_DEFAULTS): Node checks the header and request limits on every
  // connection each connectionsCheckingInterval (its default, 30 s, would let a slowloris client
  // stay up to 30 s past the limit).
  const limit = <K extends keyof typeof HTTP_DEFAULTS>(key: K): number => options[key] ?? HTTP_DEFAULTS[key];
  const headersTimeout = limit('headersTimeoutMs');
  const requestTimeout = limit('requestTimeoutMs');
  const httpOptions = {
    headersTimeout,
    requestTimeout,
    connectionsCheckingInterval: Math.max(
      100,
      Math.min(1000, Math.round(Math.min(headersTimeout || Infinity, requestTimeout || Infinity) / 4)),
    ),
  };
  // With TLS, Fastify builds an https server from `https` (its `http` options are not used then).
  const app = Fastify({
    ...(tls ? { https: { ...httpOptions, cert: tls.cert, key: tls.key } } : {}),
    loggerInstance: logger as FastifyBaseLogger,
    // One id per request: x-request-id or a UUID, then a V2 body's `id`; the reqId of its log lines.
    genReqId: genRequestId,
    childLoggerFactory: requestLogger,
    // Fastify's "incoming request"/"request completed" pair at info is replaced by one access line
    // at debug (below).
    ...quietRequestLogging(),
    forceCloseConnections: 'idle',
    return503OnClosing: false,
    keepAliveTimeout: limit('keepAliveTimeoutMs'),
    requestTimeout,
    connectionTimeout: limit('connectionTimeoutMs'),
    http: httpOptions,
  }) as unknown as FastifyInstance;
  if (logger.isLevelEnabled('debug')) {
    app.addHook('onResponse', async (request, reply) => {
      request.log.debug(
        {
          method: request.method,
          url: request.url,
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 100) / 100,
        },
        'request',
      );
    });
  }
  // Shutdown: a request that reached the server is still served (return503OnClosing off), but every
  // response from then on closes its connection, so keep-alive clients cannot hold the server open.
  // A callback hook, not an async one: no promise per response.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (registry.stopping) reply.header('connection', 'close');
    done(null, payload);
  });
  const management = options.management ? { ...repository.management(), ...(token && { token }) } : false;
  await app.register(mlservePlugin, {
    registry,
    management,
    bodyLimit: limit('bodyLimit'),
    ...(prom && { metrics: hooks.metrics ? hooks.metrics(prom) : prom }),
    crossOrigin: {
      ...(options.trustedOrigins && { trustedOrigins: options.trustedOrigins }),
      ...(options.allowedHosts && { allowedHosts: options.allowedHosts }),
    },
    ...(options.corsOrigins && {
      cors: { origins: options.corsOrigins.includes('*') ? '*' : options.corsOrigins },
    }),
    ...(auth && { auth }),
    serverName: 'mlserve',
    serverVersion: cliVersion(),
  });
  // GET /: the index. With --auth-keys it needs a key with the metadata scope, like GET /v2.
  app.get('/', async (request, reply) => {
    try {
      auth?.check(request.headers, 'metadata');
    } catch (err) {
      const e = toServeError(err);
      return reply.code(e.status).send({ error: e.message, code: e.code });
    }
    return index(registry, options);
  });
  // Fastify's own "Server listening at" line: the line below says it with the repository.
  await app.listen({ port: options.port, host: options.host, listenTextResolver: () => UNLOGGED });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  const url = `${tls ? 'https' : 'http'}://${displayHost(options.host)}:${port}`;
  say(`mlserve: listening on ${url} (loading models from ${dir})`, { url, modelRepository: dir });
  // gRPC over the same registry: the same model handles, so the same batching, cache and metrics.
  let grpc: RunningServer['grpc'];
  if (options.grpcPort !== undefined) {
    let serving: GrpcServing;
    try {
      serving = await serveGrpc({
        registry,
        host: options.host,
        port: options.grpcPort,
        management,
        ...(auth && { auth }),
        ...(tls && { tls }),
        serverName: 'mlserve',
      });
    } catch (err) {
      await app.close();
      throw err;
    }
    grpc = { address: `${displayHost(options.host)}:${serving.port}`, serving };
    say(`mlserve: gRPC${tls ? ' (TLS)' : ''} on ${grpc.address} (KServe V2 inference.GRPCInferenceService)`, {
      grpc: grpc.address,
    });
  }

  let closing: Promise<void> | undefined;
  const requestFiles: string[] = [];
  const loaded = (async () => {
    try {
      await repository.poll();
    } catch (err) {
      log.error?.(`cannot scan ${dir}: ${toServeError(err).message}`);
    }
    registry.started = true;
    if (closing) return;
    // File-system events make changes show up at once; the interval catches what events miss
    // (network file systems, some container mounts).
    if (options.pollIntervalMs > 0) repository.watch(options.pollIntervalMs, { fsEvents: true });
    try {
      await summary(repository, url, options, format, say, requestFiles);
    } catch (err) {
      log.warn?.(`could not print the summary: ${toServeError(err).message}`);
    }
  })();

  const close = () => {
    closing ??= (async () => {
      registry.stopping = true;
      // Readiness is 503 from here; keep serving a while so load balancers stop sending first.
      if ((options.shutdownDelayMs ?? 0) > 0)
        await new Promise((r) => setTimeout(r, options.shutdownDelayMs));
      // Stop accepting; requests already accepted run to the end on models still loaded. Sockets
      // that turn idle after their last response are closed as they do.
      const sweep = setInterval(() => app.server.closeIdleConnections(), 50);
      try {
        await Promise.all([app.close(), grpc?.serving.close()]);
      } finally {
        clearInterval(sweep);
      }
      await repository.close();
      await loaded.catch(() => undefined);
      await caches.close();
      await Promise.all(requestFiles.map((f) => rm(f, { force: true })));
    })();
    return closing;
  };
  return { url, repository, app, ...(grpc && { grpc }), ...(prom && { metrics: prom }), loaded, close };
}

/**
 * Reads `--auth-keys` and `--tls-cert`/`--tls-key` (UsageError naming the file when one is
 * missing or malformed). One Authenticator serves HTTP and gRPC, so a key's rate limit counts both.
 */
async function security(
  options: ServeOptions,
  token: string | undefined,
): Promise<{ auth?: Authenticator; tls?: { cert: Buffer; key: Buffer } }> {
  const read = (file: string, flag: string) =>
    readFile(file).catch((err: Error) => {
      throw new UsageError(`${flag} ${file}: ${err.message}`);
    });
  let auth: Authenticator | undefined;
  if (options.authKeys !== undefined) {
    if (token)
      throw new UsageError(
        '--auth-keys replaces MLSERVE_MANAGEMENT_TOKEN: unset it and give a key the management scope',
      );
    const text = (await read(options.authKeys, '--auth-keys')).toString('utf8');
    try {
      auth = createAuthenticator({ keys: parseKeys(text, options.authKeys) });
    } catch (err) {
      throw new UsageError(`--auth-keys ${(err as Error).message}`);
    }
  }
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (options.tlsCert !== undefined && options.tlsKey !== undefined) {
    const [cert, key] = await Promise.all([
      read(options.tlsCert, '--tls-cert'),
      read(options.tlsKey, '--tls-key'),
    ]);
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      throw new UsageError(`--tls-cert/--tls-key: ${(err as Error).message}`);
    }
    tls = { cert, key };
  }
  return { ...(auth && { auth }), ...(tls && { tls }) };
}

/**
 * A progress line: text in `pretty` (always on stdout), an info line with `fields` in `json` (or
 * `level`, for failures).
 */
type Say = (line: string, fields?: object, level?: 'info' | 'warn' | 'error') => void;

/** Prints a version's progress; warmup steps only once a load has taken over a second. */
function progress(e: VersionEvent, say: Say, log: RepositoryLogger, started: Map<string, number>): void {
  const id = `${e.name}/${e.version}`;
  const f = { model: e.name, version: e.version, phase: e.phase };
  switch (e.phase) {
    case 'loading':
      started.set(id, performance.now());
      say(`  loading  ${id} from ${e.file}`, { ...f, file: e.file });
      break;
    case 'warmup':
      if (e.progress && performance.now() - (started.get(id) ?? 0) > 1000) {
        say(
          `  warmup   ${id} batch ${e.progress.batchSize || 1} (${e.progress.done + 1}/${e.progress.total})`,
          { ...f, ...e.progress },
        );
      }
      break;
    case 'ready':
      started.delete(id);
      say(`  ready    ${id} on ${e.backend} in ${Math.round(e.ms ?? 0)} ms`, {
        ...f,
        backend: e.backend,
        ms: Math.round(e.ms ?? 0),
      });
      break;
    case 'failed':
      started.delete(id);
      say(`  FAILED   ${id}: ${e.error}`, { ...f, error: e.error }, 'error');
      break;
    case 'retired':
      say(`  retired  ${id}`, f);
      break;
    case 'unloaded':
      say(`  unloaded ${id}`, f);
      break;
    case 'reloaded':
      say(`  reloaded ${id} in ${Math.round(e.ms ?? 0)} ms`, { ...f, ms: Math.round(e.ms ?? 0) });
      break;
    case 'reloadFailed':
      say(
        `  FAILED   ${id} reload (still serving the loaded one): ${e.error}`,
        { ...f, error: e.error },
        'error',
      );
      break;
    case 'waiting':
      log.debug?.(`${id}: new files, waiting for them to stop changing`);
      break;
    case 'shadow':
    case 'canary':
    case 'promoted':
    case 'rejected':
      say(`  ${e.phase.padEnd(8)} ${id}: ${rolloutCell(e.rollout)}`, { ...f, rollout: e.rollout });
      break;
    case 'coldStart':
      log.info?.(`loaded ${id} on demand in ${Math.round(e.ms ?? 0)} ms (${mib(e.bytes)})`);
      break;
    case 'evicted':
      log.info?.(`unloaded ${id} to make room (${mib(e.bytes)}; memory budget)`);
      break;
  }
}

/** The endpoints a client may call (`GET /` and the startup summary). */
function endpoints(url: string, options: ServeOptions): Record<string, string> {
  return {
    v2Infer: `${url}/v2/models/{model}/infer`,
    v2Metadata: `${url}/v2/models/{model}`,
    tfServingPredict: `${url}/v1/models/{model}:predict`,
    live: `${url}/v2/health/live`,
    ready: `${url}/v2/health/ready`,
    ...(options.metrics && { metrics: `${url}/metrics` }),
    ...(options.management && { repositoryIndex: `${url}/v2/repository/index` }),
  };
}

/** `GET /`: the server, its models and its endpoints (paths, relative to this server). */
function index(registry: ModelRegistry, options: ServeOptions) {
  return {
    name: 'mlserve',
    version: cliVersion(),
    ready: registry.isReady(),
    models: registry.list().map((s) => ({
      name: s.name,
      version: s.version,
      state: s.state,
      ...(s.labels.length > 0 && { labels: s.labels }),
    })),
    endpoints: endpoints('', options),
  };
}

async function summary(
  repository: Repository,
  url: string,
  options: ServeOptions,
  format: LogFormat,
  say: Say,
  requestFiles: string[],
): Promise<void> {
  const rows = repository.versions();
  const memory = repository.memory();
  let curl: string | undefined;
  const ready = rows.find((v) => v.state === 'ready');
  if (ready) {
    const meta = repository.registry.get(ready.name, ready.version).metadata();
    const sample = repository.config(ready.name)?.warmup.samples?.[0];
    let inputs: Tensors | undefined;
    if (sample) inputs = sampleInputs(meta, sample, 'config.json');
    // One file per server process: two servers on one machine must not overwrite each other's.
    const file = join(tmpdir(), `mlserve-${process.pid}-${ready.name}-request.json`);
    await writeFile(file, sampleRequest(meta, inputs));
    requestFiles.push(file);
    const key = options.authKeys !== undefined ? ` -H "x-api-key: $MLSERVE_KEY"` : '';
    curl = `curl -s ${url}/v2/models/${ready.name}/infer -H 'content-type: application/json'${key} -d @${file}`;
  }
  if (format === 'json') {
    say(
      rows.length === 0 ? `no models found in ${repository.dir}` : `serving ${rows.length} model version(s)`,
      {
        models: rows.map((v) => ({
          name: v.name,
          version: v.version,
          state: v.state,
          backend: v.backend,
          labels: v.labels,
          ...(v.rollout && { rollout: rolloutCell(v.rollout) }),
        })),
        endpoints: endpoints(url, options),
        ...(memory && {
          memory: {
            budget: memory.budget,
            used: memory.used,
            loaded: memory.versions.filter((x) => x.resident).length,
          },
        }),
        ...(curl && { curl }),
      },
    );
    return;
  }
  const table = [['MODEL', 'VERSION', 'STATE', 'BACKEND', 'LABELS', 'ROLLOUT']];
  if (memory) table[0]!.push('MEMORY');
  for (const v of rows) {
    const row = [
      v.name,
      v.version,
      v.state,
      v.backend ?? '-',
      v.labels.join(',') || '-',
      rolloutCell(v.rollout),
    ];
    // Under a budget: loaded now, or available (loads on its next request), with its measured cost
    // (~ an estimate from its file size until its first load).
    const m = memory?.versions.find((x) => x.name === v.name && x.version === v.version);
    if (memory)
      row.push(
        m
          ? `${m.resident ? 'loaded' : 'available'} ${m.measured ? '' : '~'}${mib(m.bytes)}${m.pinned ? ' pinned' : ''}`
          : '-',
      );
    table.push(row);
  }
  const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  say('');
  if (rows.length === 0) say(`no models found in ${repository.dir} (expected <model>/<version>/model.onnx)`);
  else for (const r of table) say(`  ${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}`.trimEnd());
  say('');
  say(`Index          ${url}/`);
  say(`KServe V2      ${url}/v2/models/<model>/infer`);
  say(`TF Serving     ${url}/v1/models/<model>:predict`);
  say(`Health         ${url}/v2/health/ready`);
  if (options.metrics) say(`Metrics        ${url}/metrics`);
  if (options.management) say(`Management     ${url}/v2/repository/index`);
  if (memory) {
    const loaded = memory.versions.filter((m) => m.resident).length;
    say(
      `Memory budget  ${mib(memory.budget)}: ${loaded} of ${memory.versions.length} loaded (${mib(memory.used)}); the others load on demand`,
    );
  }
  if (curl) {
    say('');
    say('Get a prediction:');
    say(`  ${curl}`);
  }
  say('');
}

function registerRepositoryMetrics(prom: Registry, repository: Repository, registry: ModelRegistry): void {
  new Gauge({
    name: 'mlserve_model_versions',
    help: 'Model versions by state',
    labelNames: ['model', 'state'],
    registers: [prom],
    collect() {
      this.reset();
      for (const s of registry.list()) this.inc({ model: s.name, state: s.state });
    },
  });
  const events = new Counter({
    name: 'mlserve_repository_events_total',
    help: 'Model repository events: loads, failures, retirements',
    labelNames: ['model', 'event'],
    registers: [prom],
  });
  repository.on('version', (e) => {
    if (
      ['ready', 'failed', 'retired', 'unloaded', 'reloaded', 'reloadFailed', 'promoted', 'rejected'].includes(
        e.phase,
      )
    ) {
      events.inc({ model: e.name, event: e.phase === 'reloadFailed' ? 'reload_failed' : e.phase });
    }
  });
  repository.on('configError', (name) => events.inc({ model: name, event: 'config_error' }));
  // Under a memory budget: loads (at a scan and on demand), evictions, cold-start time, costs.
  if (repository.memory()) {
    const loads = new Counter({
      name: 'mlserve_model_loads_total',
      help: 'Model version loads under the memory budget: at a scan (start) or on a request (demand)',
      labelNames: ['model', 'cause'],
      registers: [prom],
    });
    const evictions = new Counter({
      name: 'mlserve_model_evictions_total',
      help: 'Model versions unloaded to make room under the memory budget',
      labelNames: ['model'],
      registers: [prom],
    });
    const coldStart = new Histogram({
      name: 'mlserve_model_cold_start_seconds',
      help: 'Time a version took to load on demand (load and warmup), seconds',
      labelNames: ['model'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [prom],
    });
    repository.on('version', (e) => {
      // A version served on demand turns ready without loading (resident false): no load yet.
      if (e.phase === 'ready' && e.resident !== false) loads.inc({ model: e.name, cause: 'start' });
      else if (e.phase === 'coldStart') {
        loads.inc({ model: e.name, cause: 'demand' });
        coldStart.observe({ model: e.name }, (e.ms ?? 0) / 1000);
      } else if (e.phase === 'evicted') evictions.inc({ model: e.name });
    });
    new Gauge({
      name: 'mlserve_model_memory_bytes',
      help: 'Measured memory cost of each model version (RSS growth at its load), and whether it is loaded now',
      labelNames: ['model', 'version', 'loaded'],
      registers: [prom],
      collect() {
        this.reset();
        for (const v of repository.memory()?.versions ?? [])
          this.set({ model: v.name, version: v.version, loaded: String(v.resident) }, v.bytes);
      },
    });
    new Gauge({
      name: 'mlserve_model_memory_budget_bytes',
      help: 'The model memory budget (limit) and what the loaded versions use (used)',
      labelNames: ['kind'],
      registers: [prom],
      collect() {
        const m = repository.memory();
        if (!m) return;
        this.set({ kind: 'limit' }, m.budget);
        this.set({ kind: 'used' }, m.used);
      },
    });
  }
  new Gauge({
    name: 'mlserve_rollout_gate',
    help: 'Figures of gated rollouts (agreement, p99_ms, baseline_p99_ms, p99_ratio, requests, weight) by model, version and phase',
    labelNames: ['model', 'version', 'phase', 'figure'],
    registers: [prom],
    collect() {
      this.reset();
      for (const s of registry.list()) {
        if (!s.rollout) continue;
        const labels = { model: s.name, version: s.version, phase: s.rollout.phase };
        if (s.rollout.weight !== undefined) this.set({ ...labels, figure: 'weight' }, s.rollout.weight);
        for (const [k, v] of Object.entries(s.rollout.figures ?? {})) {
          if (Number.isFinite(v))
            this.set({ ...labels, figure: k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`) }, v);
        }
      }
    },
  });
}

/** Bytes as MiB for people: `12.3 MiB`. */
function mib(bytes: number | undefined): string {
  return `${((bytes ?? 0) / 2 ** 20).toFixed(1)} MiB`;
}

/** The ROLLOUT column: `shadow`, `canary 25%`, `rejected: agreement 0.75 < 0.99`, `-`. */
function rolloutCell(r: RolloutStatus | undefined): string {
  if (!r) return '-';
  const head = r.phase === 'canary' ? `canary ${r.weight}%` : r.phase;
  return r.reason ? `${head}: ${r.reason}` : head;
}
