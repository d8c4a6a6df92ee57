import cluster, { type Worker } from 'node:cluster';
import { createServer, type Server } from 'node:http';
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';

type metric = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];

import { crossOriginCheck } from '@mlserve/protocol/server';
import { cpuBudget } from '@mlserve/repository';
import type { ServeOptions } from './args.js';
import { type MetricsSource, type RunningServer, type ServeHooks, serve } from './serve.js';

/**
 * `mlserve serve --processes N`: one primary process that owns nothing but the children, and N
 * worker processes (node:cluster) that each load every model and serve HTTP (and gRPC) on the
 * shared ports. The primary accepts connections and hands them to the workers in turn (Node's
 * round-robin scheduling), so a connection, and every request on it, stays with one process.
 *
 * Across the processes:
 * - readiness (`/v2/health/ready`, and the image's HEALTHCHECK) is true only while every process
 *   has loaded its models; a process that died and is being replaced turns it false;
 * - `/metrics` (on any process, and on `--metrics-port` from the primary) aggregates every process
 *   with prom-client's `AggregatorRegistry.aggregate` (counters and histograms summed, gauges by
 *   each metric's aggregator), plus the primary's own `mlserve_cluster_*` series;
 * - SIGTERM or SIGINT to the primary drains every process (each with `--shutdown-delay`) and exits 0
 *   once all have; a second signal stops them at once (status 1);
 * - a process that exits on its own is replaced, after a back-off that doubles from 250 ms to 10 s
 *   while replacements keep dying within 10 s, and counted in `mlserve_cluster_process_restarts_total`.
 */

/** What the primary passes each worker in its environment. */
interface WorkerEnv {
  index: number;
  processes: number;
}

const ENV = 'MLSERVE_CLUSTER_WORKER';

type ToWorker =
  | { mlserve: 'ready'; ready: boolean }
  | { mlserve: 'shutdown' }
  | { mlserve: 'collect'; id: number }
  | { mlserve: 'metrics'; id: number; text?: string; contentType?: string; error?: string };
type ToPrimary =
  | { mlserve: 'started' }
  | { mlserve: 'collected'; id: number; metrics?: metric[]; error?: string }
  | { mlserve: 'metrics'; id: number };

function isMessage(m: unknown): m is { mlserve: string } {
  return typeof m === 'object' && m !== null && typeof (m as { mlserve?: unknown }).mlserve === 'string';
}

/** True in a worker process that `mlserve serve --processes` started. */
export function isClusterWorker(): boolean {
  return cluster.isWorker && process.env[ENV] !== undefined;
}

/**
 * How many processes `--processes auto` starts here: the CPUs this server may use (`cpuBudget()` of
 * @mlserve/repository: the CPU set lowered to the cgroup quota, so `docker run --cpus 1` is 1).
 */
export function autoProcesses(): number {
  return cpuBudget();
}

/**
 * The thread budget across processes: each process gets `floor(cpus / processes)` CPUs (at least 1)
 * as its own budget (`MLSERVE_CPUS` in its environment, which `cpuBudget()` and the repository's
 * `defaultServing()` read), so processes x worker threads x intra-op threads stay within the CPUs
 * the server may use. Returns a warning when the processes, or threads set explicitly with
 * `--workers` / `--intra-op-threads`, outnumber the CPUs.
 *
 * @example
 * ```ts
 * import { processBudget } from '@mlserve/cli';
 * processBudget({ workers: 0 }, 2, 8); // { cpusPerProcess: 4 }
 * ```
 */
export function processBudget(
  options: Pick<ServeOptions, 'workers' | 'intraOpThreads'>,
  processes: number,
  cpus: number,
): { cpusPerProcess: number; warning?: string } {
  const cpusPerProcess = Math.max(1, Math.floor(cpus / processes));
  let warning: string | undefined;
  if (processes > cpus) warning = `${processes} processes on ${cpus} CPU(s): they will compete`;
  else if (options.workers !== undefined && options.intraOpThreads !== undefined) {
    const threads = processes * Math.max(1, options.workers) * options.intraOpThreads;
    if (threads > cpus) {
      warning = `${processes} process(es) x ${Math.max(1, options.workers)} model thread(s) x ${options.intraOpThreads} intra-op thread(s) = ${threads} threads on ${cpus} CPU(s): they will compete`;
    }
  }
  return { cpusPerProcess, ...(warning && { warning }) };
}

/** The running primary, for tests and the CLI. */
export interface ClusterPrimary {
  /** Resolves with the exit status once every worker has exited after a shutdown. */
  done: Promise<number>;
  /** Drains every worker (as SIGTERM does). */
  shutdown(): void;
}

/**
 * Starts the primary: forks `processes` workers running this same command line, replaces the ones
 * that die, aggregates their metrics and answers for their readiness. Call from the CLI's entry
 * point (the workers re-run it and take the {@link runClusterWorker} path).
 *
 * @example
 * ```ts compile-only
 * import { parseCommandLine, startClusterPrimary } from '@mlserve/cli';
 * const command = parseCommandLine(['serve', '--model-repository', './models', '--processes', '2']);
 * if (command.command === 'serve') {
 *   const primary = startClusterPrimary(command.options, 2);
 *   process.exitCode = await primary.done;
 * }
 * ```
 */
export function startClusterPrimary(
  options: ServeOptions,
  processes: number,
  err: (line: string) => void = (line) => process.stderr.write(`${line}\n`),
): ClusterPrimary {
  const cpus = cpuBudget();
  const budget = processBudget(options, processes, cpus);

  const prom = new Registry();
  const restarts = new Counter({
    name: 'mlserve_cluster_process_restarts_total',
    help: 'Server processes that exited on their own and were replaced',
    registers: [prom],
  });
  const alive = new Gauge({
    name: 'mlserve_cluster_processes',
    help: 'Server processes running, by readiness',
    labelNames: ['state'],
    registers: [prom],
  });

  const slots = new Map<number, { worker: Worker; ready: boolean; startedAt: number }>();
  let stopping = false;
  let forceExit = false;
  let allReady = false;
  let failuresInARow = 0;
  const pendingForks = new Set<NodeJS.Timeout>();
  const exitCodes: number[] = [];
  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => {
    resolveDone = r;
  });

  const broadcast = (message: ToWorker) => {
    for (const { worker } of slots.values()) if (worker.isConnected()) worker.send(message);
  };
  const updateReadiness = () => {
    const ready = !stopping && slots.size === processes && [...slots.values()].every((s) => s.ready);
    const readyCount = [...slots.values()].filter((s) => s.ready).length;
    alive.set({ state: 'ready' }, readyCount);
    alive.set({ state: 'starting' }, slots.size - readyCount);
    if (ready !== allReady) {
      allReady = ready;
      broadcast({ mlserve: 'ready', ready });
    }
  };

  // Metrics: every worker's registry as JSON, aggregated by prom-client, plus the primary's.
  let collectId = 0;
  const collecting = new Map<number, { pending: Set<number>; results: metric[][]; finish: () => void }>();
  const aggregated = async (): Promise<Registry> => {
    const id = ++collectId;
    const results: metric[][] = [];
    const pending = new Set<number>();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 3000);
      const finish = () => {
        clearTimeout(timer);
        resolve();
      };
      collecting.set(id, { pending, results, finish });
      for (const [slot, { worker }] of slots) {
        if (!worker.isConnected()) continue;
        pending.add(slot);
        worker.send({ mlserve: 'collect', id } satisfies ToWorker);
      }
      if (pending.size === 0) finish();
    });
    collecting.delete(id);
    results.push(await prom.getMetricsAsJSON());
    return AggregatorRegistry.aggregate(results);
  };
  const metricsText = async () => {
    const registry = await aggregated();
    return { text: await registry.metrics(), contentType: registry.contentType };
  };

  let metricsServer: Server | undefined;
  if (options.metricsPort !== undefined) {
    metricsServer = startMetricsPort(
      { contentType: prom.contentType, metrics: async () => (await metricsText()).text },
      options.host,
      options.metricsPort,
      err,
      options.allowedHosts,
    );
  }

  const fork = (slot: number) => {
    const env: WorkerEnv = { index: slot, processes };
    const worker = cluster.fork({ [ENV]: JSON.stringify(env), MLSERVE_CPUS: String(budget.cpusPerProcess) });
    const startedAt = Date.now();
    slots.set(slot, { worker, ready: false, startedAt });
    updateReadiness();
    worker.on('message', (message: unknown) => {
      if (!isMessage(message)) return;
      const m = message as ToPrimary;
      if (m.mlserve === 'started') {
        const s = slots.get(slot);
        if (s?.worker === worker) s.ready = true;
        failuresInARow = 0;
        updateReadiness();
        if (allReady) worker.send({ mlserve: 'ready', ready: true } satisfies ToWorker);
      } else if (m.mlserve === 'collected') {
        const c = collecting.get(m.id);
        if (!c) return;
        if (m.metrics) c.results.push(m.metrics);
        c.pending.delete(slot);
        if (c.pending.size === 0) c.finish();
      } else if (m.mlserve === 'metrics') {
        metricsText().then(
          ({ text, contentType }) => {
            if (worker.isConnected()) worker.send({ mlserve: 'metrics', id: m.id, text, contentType });
          },
          (error: unknown) => {
            if (worker.isConnected())
              worker.send({
                mlserve: 'metrics',
                id: m.id,
                error: String((error as Error)?.message ?? error),
              });
          },
        );
      }
    });
    worker.on('exit', (code, signal) => {
      if (slots.get(slot)?.worker === worker) slots.delete(slot);
      for (const c of collecting.values()) {
        c.pending.delete(slot);
        if (c.pending.size === 0) c.finish();
      }
      if (stopping) {
        exitCodes.push(code ?? 1);
        updateReadiness();
        if (slots.size === 0 && pendingForks.size === 0) finish();
        return;
      }
      restarts.inc();
      const quick = Date.now() - startedAt < 10_000;
      failuresInARow = quick ? failuresInARow + 1 : 1;
      const delay = Math.min(10_000, 250 * 2 ** (failuresInARow - 1));
      err(
        `mlserve: process ${worker.process.pid} exited (${signal ?? `status ${code}`}); replacing it in ${delay} ms`,
      );
      updateReadiness();
      const timer = setTimeout(() => {
        pendingForks.delete(timer);
        if (!stopping) fork(slot);
      }, delay);
      pendingForks.add(timer);
    });
  };

  const finish = () => {
    metricsServer?.close();
    const failed = exitCodes.some((c) => c !== 0);
    resolveDone(forceExit || failed ? 1 : 0);
  };

  const shutdown = () => {
    if (stopping) return;
    stopping = true;
    for (const t of pendingForks) clearTimeout(t);
    pendingForks.clear();
    updateReadiness();
    if (slots.size === 0) {
      finish();
      return;
    }
    broadcast({ mlserve: 'shutdown' });
  };

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      err(`mlserve: ${signal} again, stopping every process now`);
      forceExit = true;
      for (const { worker } of slots.values()) worker.process.kill('SIGKILL');
      return;
    }
    err(`mlserve: ${signal}: draining ${slots.size} process(es), then exiting`);
    shutdown();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  err(`mlserve: ${processes} processes on ${cpus} CPU(s), a budget of ${budget.cpusPerProcess} CPU(s) each`);
  if (budget.warning) err(`mlserve: warning: ${budget.warning}`);
  for (let i = 0; i < processes; i++) fork(i);
  return { done, shutdown };
}

/**
 * The worker side: serves with the options the primary's command line gave, reports when its
 * models are loaded, takes readiness and `/metrics` from the primary, drains when told (or on its
 * own SIGTERM/SIGINT, e.g. Ctrl-C reaching the whole process group), and drains and exits if the
 * primary goes away.
 */
export async function runClusterWorker(options: ServeOptions): Promise<void> {
  const env = JSON.parse(process.env[ENV] ?? '{}') as Partial<WorkerEnv>;
  const index = env.index ?? 0;
  let clusterReady = false;
  let requestId = 0;
  const waiting = new Map<number, { resolve: (text: string) => void; reject: (e: Error) => void }>();
  let local: Registry | undefined;
  const hooks: ServeHooks = {
    ready: () => clusterReady,
    metrics: (registry): MetricsSource => {
      local = registry;
      return {
        contentType: registry.contentType,
        metrics: () =>
          new Promise<string>((resolve, reject) => {
            const id = ++requestId;
            waiting.set(id, { resolve, reject });
            process.send?.({ mlserve: 'metrics', id } satisfies ToPrimary);
          }),
      };
    },
  };
  process.on('message', (message: unknown) => {
    if (!isMessage(message)) return;
    const m = message as ToWorker;
    if (m.mlserve === 'ready') clusterReady = m.ready;
    else if (m.mlserve === 'shutdown') stop('primary');
    else if (m.mlserve === 'collect') {
      (local ? local.getMetricsAsJSON() : Promise.resolve([])).then(
        (metrics) => process.send?.({ mlserve: 'collected', id: m.id, metrics } satisfies ToPrimary),
        (error: unknown) =>
          process.send?.({ mlserve: 'collected', id: m.id, error: String(error) } satisfies ToPrimary),
      );
    } else if (m.mlserve === 'metrics') {
      const w = waiting.get(m.id);
      waiting.delete(m.id);
      if (!w) return;
      if (m.text !== undefined) w.resolve(m.text);
      else w.reject(new Error(m.error ?? 'no metrics from the primary'));
    }
  });

  const quiet = index > 0;
  const workerOptions: ServeOptions = { ...options };
  delete workerOptions.metricsPort;
  let server: RunningServer | undefined;
  let stopping: Promise<void> | undefined;
  const stop = (why: string) => {
    stopping ??= (async () => {
      if (why !== 'primary') process.stderr.write(`mlserve[${process.pid}]: ${why}: draining\n`);
      await server?.close();
      process.exit(0);
    })().catch((e: unknown) => {
      process.stderr.write(`mlserve[${process.pid}]: shutdown failed: ${String(e)}\n`);
      process.exit(1);
    });
  };
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) process.exit(1);
    stop(signal);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('disconnect', () => stop('primary gone'));

  server = await serve(
    workerOptions,
    {
      out: quiet ? () => {} : (line) => process.stdout.write(`${line}\n`),
      err: (line) => process.stderr.write(`${line}\n`),
    },
    hooks,
  );
  await server.loaded;
  if (!stopping) process.send?.({ mlserve: 'started' } satisfies ToPrimary);
}

/**
 * Serves `GET /metrics` from `source` on its own port (`--metrics-port`), so Prometheus can scrape a
 * port that is not exposed to clients. Like the main server, on a loopback connection it answers
 * 403 to a `Host` other than localhost, 127.x.x.x, [::1] and `allowedHosts` (DNS rebinding).
 */
export function startMetricsPort(
  source: MetricsSource,
  host: string,
  port: number,
  err: (line: string) => void,
  allowedHosts?: readonly string[],
): Server {
  const check = crossOriginCheck(allowedHosts ? { allowedHosts } : {})!;
  const server = createServer((req, res) => {
    try {
      // Only the Host part applies: every method but GET is answered 404 below.
      check({ method: 'GET', headers: req.headers, localAddress: req.socket.localAddress });
    } catch (e) {
      res.writeHead(403, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`);
      return;
    }
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: GET /metrics\n');
      return;
    }
    source.metrics().then(
      (text) => res.writeHead(200, { 'content-type': source.contentType }).end(text),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(e)}\n`),
    );
  });
  server.on('error', (e) => err(`mlserve: metrics port ${port}: ${e.message}`));
  server.listen(port, host, () => {
    const a = server.address();
    err(`mlserve: metrics on http://${host}:${typeof a === 'object' && a ? a.port : port}/metrics`);
  });
  return server;
}
