import {
  compileValidator,
  type InferContext,
  type InferOptions,
  invalidArgument,
  type Model,
  type ModelMetadata,
  type ModelRegistry,
  notFound,
  type ParameterValue,
  type RequestValidator,
  type RolloutStatus,
  raceExpiry,
  type Tensors,
  unimplemented,
} from '@mlserve/core';
import { ROOT_CONTEXT, type Span, trace } from '@opentelemetry/api';
import { version as PACKAGE_VERSION } from '../package.json';
import { checkBearer, type ManagementOptions } from './auth.js';
import { batchSizesOf, ServerStats, tritonConfig } from './stats.js';
import { classificationLabels, classify, type RequestedOutput, v2ModelMetadata } from './v2.js';

/** Options of {@link createV2Service}: what both transports share. */
export interface V2ServiceOptions {
  /** The models to serve. */
  registry: ModelRegistry;
  /** The model repository extension: off unless given (`true`: index and unload, no token). */
  management?: boolean | ManagementOptions;
  /** Classification labels by model name (else `metadata().extra.labels`): a list, or lists by output. */
  labels?: Record<string, readonly string[] | Record<string, readonly string[]>>;
  /** Requests may not ask for a longer timeout than this, ms (default: no cap). */
  maxTimeoutMs?: number;
  /**
   * Check each request against the model's metadata before it runs (default true): compiled once
   * per loaded model version, run once per request; inner layers (`validation()`, the batcher,
   * backend-onnx) trust the request after that instead of checking it again.
   */
  validate?: boolean;
  /**
   * Extra per-model actions: `POST /v2/models/{name}[/versions/{v}]/{action}` over HTTP, answered
   * with the JSON the function returns (a model's ground-truth feedback, say). Reserved names
   * (`infer`, `ready`, `config`, `stats`) cannot be used.
   */
  modelActions?: Record<string, ModelAction>;
  /** Server metadata name and version (default `mlserve` and this package's version). */
  serverName?: string;
  serverVersion?: string;
}

/** A per-model action ({@link V2ServiceOptions.modelActions}). */
export type ModelAction = (request: {
  /** The model name from the path. */
  name: string;
  /** The version from the path, if any. */
  version: string | undefined;
  /** The parsed JSON body (`{}` for an empty body). */
  body: unknown;
  /** Request headers, lower-case names. */
  headers: Record<string, string | string[] | undefined>;
}) => unknown;

/** One inference request, already decoded from its transport. */
export interface V2Call {
  name: string;
  version: string | undefined;
  inputs: Tensors;
  /** The request id (the transport's fallback, such as `x-request-id`, already applied). */
  id: string | undefined;
  /** Model parameters: the request's, without the reserved ones (null prototype). */
  parameters: Record<string, ParameterValue>;
  /** The V2 `timeout` parameter, microseconds (0: none). */
  timeoutUs: number | undefined;
  /** A timeout from the transport, ms (HTTP's `x-request-timeout-ms`; 0: none). */
  timeoutMs?: number | undefined;
  /** An absolute deadline from the transport (gRPC's call deadline), ms since the epoch. */
  deadline?: number | undefined;
  /** The `priority` parameter (0: the default level). */
  priority: number | undefined;
  /** The sequence parameters (`sequence_id` 0 or '': none, as in Triton). */
  sequence: { id: string | number; start?: boolean; end?: boolean } | undefined;
  /** The outputs asked for (undefined: all), with classification where asked. */
  outputs: readonly RequestedOutput[] | undefined;
  /** Aborts when the client goes away. */
  signal?: AbortSignal | undefined;
}

/** What {@link V2Service.infer} answers. */
export interface V2Result {
  /** The outputs to send, classification applied, in a fresh record. */
  outputs: Tensors;
  /** The model version that ran. */
  model: { name: string; version: string; meta: ModelMetadata };
  /** The layers' notes (queue and compute time, batch size, cache hit, ...). */
  context: InferContext;
}

/** What a loaded model version costs to serve once, computed on its first request. */
interface Prepared {
  meta: ModelMetadata;
  check: RequestValidator | undefined;
}

const CONTEXT_KEYS = [
  'queueMs',
  'computeMs',
  'batchSize',
  'cacheHit',
  'coalesced',
  'worker',
  'backend',
] as const;
const RESERVED_ACTIONS = new Set(['infer', 'ready', 'config', 'stats']);
const tracer = trace.getTracer('@mlserve/protocol');

/**
 * The KServe V2 request path both transports share: request to InferOptions (parameters, outputs,
 * id, priority, sequence), the deadline merge (the V2 `timeout` parameter in µs, the transport's
 * timeout or deadline and `maxTimeoutMs`: the smallest wins), one model lookup, validation compiled
 * once per loaded model version and run once per request, the deadline race, span attributes, the
 * classification extension, Triton's statistics and model configuration, and the model repository
 * extension with its constant-time token check. `@mlserve/http` and `@mlserve/grpc` decode their
 * transport, call this, and encode the answer.
 *
 * @example
 * ```ts
 * import { createV2Service } from '@mlserve/protocol/server';
 * import { decodeV2Request } from '@mlserve/protocol';
 * const service = createV2Service({ registry });
 * const req = decodeV2Request(body);
 * const { outputs, model } = await service.infer({ name: 'mnist', version: undefined, ...req, id: req.id });
 * ```
 */
export function createV2Service(options: V2ServiceOptions) {
  const { registry, labels = {}, maxTimeoutMs, validate = true } = options;
  if (maxTimeoutMs !== undefined && !(maxTimeoutMs > 0))
    throw new TypeError('createV2Service: options.maxTimeoutMs must be positive');
  const management: ManagementOptions | undefined =
    options.management === true ? {} : options.management ? options.management : undefined;
  const modelActions = options.modelActions ?? {};
  for (const name of Object.keys(modelActions)) {
    if (RESERVED_ACTIONS.has(name) || !/^[a-z][a-z0-9_-]*$/.test(name))
      throw new TypeError(
        `createV2Service: options.modelActions: "${name}" is reserved or not a lower-case path segment`,
      );
  }
  const stats = new ServerStats();
  // One entry per loaded model version: the registry hands out one stable handle per version (a
  // reload or a new version is a new handle), so a WeakMap keyed by it forgets unloaded versions.
  // Backends hand out a deep copy of their metadata on every call: read once, not per request.
  const prepared = new WeakMap<Model, Prepared>();
  function prepare(model: Model): Prepared {
    let p = prepared.get(model);
    if (p === undefined) {
      const meta = model.metadata();
      p = { meta, check: validate ? compileValidator(meta) : undefined };
      prepared.set(model, p);
    }
    return p;
  }

  /** The deadline of a call: the smallest of what it carries and the server's cap, or undefined. */
  function deadlineOf(
    call: Pick<V2Call, 'timeoutUs' | 'timeoutMs' | 'deadline'>,
    now: number,
  ): number | undefined {
    let deadline = call.deadline;
    // Triton's convention: a timeout of 0 means none.
    if (call.timeoutMs !== undefined && call.timeoutMs > 0)
      deadline = Math.min(deadline ?? Number.POSITIVE_INFINITY, now + call.timeoutMs);
    if (call.timeoutUs !== undefined && call.timeoutUs > 0)
      deadline = Math.min(deadline ?? Number.POSITIVE_INFINITY, now + call.timeoutUs / 1000);
    if (maxTimeoutMs !== undefined)
      deadline = Math.min(deadline ?? Number.POSITIVE_INFINITY, now + maxTimeoutMs);
    return deadline;
  }

  /** The InferOptions a call becomes. */
  function optionsOf(call: V2Call, context: InferContext): InferOptions {
    const opts: InferOptions = { context, parameters: call.parameters };
    if (call.signal) opts.signal = call.signal;
    if (call.id) opts.id = call.id;
    // The clock is read only when something sets a deadline.
    if (
      call.deadline !== undefined ||
      (call.timeoutMs ?? 0) > 0 ||
      (call.timeoutUs ?? 0) > 0 ||
      maxTimeoutMs !== undefined
    ) {
      const deadline = deadlineOf(call, Date.now());
      if (deadline !== undefined) opts.deadline = deadline;
    }
    // Triton: priority 0 is the default level, sequence id 0 or '' is no sequence.
    if (call.priority !== undefined && call.priority !== 0) opts.priority = call.priority;
    const seq = call.sequence;
    if (seq !== undefined && seq.id !== 0 && seq.id !== '') opts.sequence = seq;
    if (call.outputs) opts.outputs = call.outputs.map((o) => o.name);
    return opts;
  }

  /**
   * Runs one inference: one lookup (none when the transport already resolved the model, as TF
   * Serving's decoding needs its metadata), one validation, the model racing the deadline, the
   * statistics, the span's attributes and classification. Throws ServeErrors.
   */
  async function infer(call: V2Call, span?: Span, resolved?: Model): Promise<V2Result> {
    const context: InferContext = { startedAt: performance.now() };
    const opts = optionsOf(call, context);
    const model = resolved ?? registry.get(call.name, call.version, opts);
    const { meta, check } = prepare(model);
    check?.(call.inputs, opts);
    let rows = 1;
    for (const n in call.inputs) {
      rows = call.inputs[n]!.dims[0] ?? 1;
      break;
    }
    const t0 = context.startedAt!;
    let raw: Tensors;
    try {
      // Only a deadline is raced here: a client that went away cannot be answered anyway, and the
      // layers below stop its work through the signal.
      const run = model.infer(call.inputs, opts);
      raw = await (opts.deadline === undefined ? run : raceExpiry(run, { deadline: opts.deadline }));
    } catch (err) {
      stats.record(model.name, model.version, false, performance.now() - t0, rows, context);
      throw err;
    }
    stats.record(model.name, model.version, true, performance.now() - t0, rows, context);
    // A span that records nothing (tracing off, or not sampled) gets no attributes: building their
    // names costs a string per key per request.
    if (span?.isRecording()) {
      span.setAttribute('mlserve.model.version', model.version);
      for (const k of CONTEXT_KEYS) {
        const v = context[k];
        if (v !== undefined) span.setAttribute(`mlserve.${k}`, v as string | number | boolean);
      }
      layerSpans(span, context);
    }
    // A shallow copy: classification replaces entries, the model's own record stays as it was.
    const outputs: Tensors = { ...raw };
    if (call.outputs) {
      for (const o of call.outputs) {
        const t = outputs[o.name];
        if (o.classification === undefined || !t) continue;
        const info = meta.outputs.find((x) => x.name === o.name);
        const batched = (info?.batched ?? false) && meta.maxBatchSize > 0;
        outputs[o.name] = classify(
          t,
          o.classification,
          batched,
          classificationLabels(labels, meta, o.name),
          o.name,
        );
      }
    }
    return { outputs, model: { name: model.name, version: model.version, meta }, context };
  }

  /** NOT_FOUND for an unknown model or version (UNAVAILABLE when not ready or shutting down). */
  function resolve(name: string, version: string | undefined): Model {
    return registry.get(name, version);
  }

  function needManagement(): ManagementOptions {
    if (!management) throw unimplemented('the model repository extension is not enabled on this server');
    return management;
  }

  /** Promotes or rejects a version held by a gated rollout (see `ManagementOptions.promote`). */
  async function repositoryRollout(
    authorization: string | undefined,
    name: string,
    version: string,
    action: 'promote' | 'reject',
    reason?: string,
  ): Promise<void> {
    const m = needManagement();
    checkBearer(m.token, authorization);
    if (!name) throw invalidArgument('model_name is required');
    if (!version) throw invalidArgument('a version is required to promote or reject');
    const hook = action === 'promote' ? m.promote : m.reject;
    if (!hook) throw unimplemented(`this server was given no rollout hooks: ${action} is not available`);
    if (action === 'promote') await m.promote!(name, version);
    else await m.reject!(name, version, reason);
  }

  return {
    registry,
    stats,
    /** Whether the repository extension is on. */
    management: management !== undefined,
    infer,
    resolve,
    /** A loaded version's metadata, read once per version (backends deep-copy it on every call). */
    metadataOf: (model: Model): ModelMetadata => prepare(model).meta,
    /** The deadline a call would get now (for transports that check before decoding). */
    deadlineOf: (call: Pick<V2Call, 'timeoutUs' | 'timeoutMs' | 'deadline'>) => deadlineOf(call, Date.now()),
    /** The action for `name`, if the server was given one. */
    modelAction: (name: string): ModelAction | undefined =>
      Object.hasOwn(modelActions, name) ? modelActions[name] : undefined,
    /** Server metadata, with the transport's extensions and the shared ones. */
    serverMetadata(transportExtensions: readonly string[]) {
      return {
        name: options.serverName ?? 'mlserve',
        version: options.serverVersion ?? PACKAGE_VERSION,
        extensions: [...transportExtensions, ...(management ? ['model_repository'] : [])],
      };
    },
    /** `GET /v2/models/{name}[/versions/{v}]` / ModelMetadata. */
    modelMetadata(name: string, version: string | undefined) {
      const meta = registry.get(name, version).metadata();
      const versions = version === undefined ? registry.versions(name) : [meta.version];
      return v2ModelMetadata(meta, versions);
    },
    /** Triton's model configuration (perf_analyzer reads it). */
    modelConfig(name: string, version: string | undefined) {
      return tritonConfig(registry.get(name, version).metadata());
    },
    /** Model readiness; NOT_FOUND when unknown. */
    modelReady(name: string, version: string | undefined): boolean {
      if (!registry.status(name, version)) {
        throw notFound(
          version === undefined
            ? `unknown model "${name}"`
            : `unknown version "${version}" of model "${name}"`,
        );
      }
      return registry.isReady(name, version);
    },
    /** Triton's statistics extension, for every model or one. */
    modelStats(name?: string, version?: string) {
      if (name !== undefined && !registry.status(name, version)) throw notFound(`unknown model "${name}"`);
      return stats.get(name, version, (n, v) => {
        let model: Model;
        try {
          model = registry.get(n, v);
        } catch {
          return undefined;
        }
        return batchSizesOf(model.stats?.());
      });
    },
    /**
     * RepositoryIndex: loaded versions (with a gated rollout's phase and figures in `reason`, and
     * over HTTP as `rollout`) plus what the repository could load.
     */
    async repositoryIndex(authorization: string | undefined) {
      const m = needManagement();
      checkBearer(m.token, authorization);
      const rows: IndexRow[] = registry.list().map((s) => {
        const row: IndexRow = {
          name: s.name,
          version: s.version,
          state: s.state.toUpperCase(),
          reason: s.error ?? (s.rollout ? rolloutReason(s.rollout) : ''),
        };
        if (s.rollout) row.rollout = s.rollout;
        return row;
      });
      if (m.index) {
        const known = new Set(rows.map((r) => r.name));
        for (const r of await m.index()) {
          const row = r.version ? rows.find((x) => x.name === r.name && x.version === r.version) : undefined;
          if (row) {
            if (r.state) row.state = r.state;
            if (r.reason) row.reason = row.reason ? `${row.reason}; ${r.reason}` : r.reason;
            continue;
          }
          if (known.has(r.name)) continue;
          rows.push({
            name: r.name,
            version: r.version ?? '',
            state: r.state ?? 'UNAVAILABLE',
            reason: r.reason ?? '',
          });
        }
      }
      return rows;
    },
    /**
     * RepositoryModelLoad: the loader's load, UNIMPLEMENTED without one. With the parameter
     * `rollout` (`promote` or `reject`) and `version` (and optionally `reason`), it promotes or
     * rejects that version instead: KServe's gRPC API has no method for it.
     */
    async repositoryLoad(
      authorization: string | undefined,
      name: string,
      parameters: Record<string, unknown>,
    ) {
      const m = needManagement();
      checkBearer(m.token, authorization);
      if (!name) throw invalidArgument('model_name is required');
      if (parameters.rollout !== undefined) {
        const action = parameters.rollout;
        if (action !== 'promote' && action !== 'reject')
          throw invalidArgument('parameter "rollout" must be "promote" or "reject"');
        const version = parameters.version;
        if (typeof version !== 'string' || version === '')
          throw invalidArgument('parameter "version" (a string) is required with "rollout"');
        const reason = parameters.reason;
        if (reason !== undefined && typeof reason !== 'string')
          throw invalidArgument('parameter "reason" must be a string');
        return repositoryRollout(authorization, name, version, action, reason);
      }
      if (!m.load) throw unimplemented('this server was given no loader: load is not available');
      await m.load(name, parameters);
    },
    /** RepositoryModelUnload: the repository's unload when it has one (the model stays unloaded), else the registry's. */
    async repositoryUnload(
      authorization: string | undefined,
      name: string,
      parameters: Record<string, unknown>,
    ) {
      const m = needManagement();
      checkBearer(m.token, authorization);
      if (!name) throw invalidArgument('model_name is required');
      if (m.unload) await m.unload(name, parameters);
      else await registry.remove(name);
    },
    /**
     * Promotes or rejects a version held by a gated rollout (the management hooks' `promote` /
     * `reject`; UNIMPLEMENTED without them).
     */
    repositoryRollout,
    /** The management token check alone (constant time), for routes that check before reading a body. */
    checkToken(authorization: string | undefined): void {
      needManagement();
      checkBearer(management?.token, authorization);
    },
  };
}

/** One row of the repository index (`POST /v2/repository/index`, gRPC RepositoryIndex). */
export interface IndexRow {
  name: string;
  version: string;
  state: string;
  reason: string;
  /** A gated rollout's phase and figures (sent over HTTP; gRPC has `reason` only). */
  rollout?: RolloutStatus;
}

/** A rollout as one line: `shadow (agreement 0.98, p99Ratio 1.05)`, `rejected: agreement 0.75 < 0.99`. */
function rolloutReason(r: RolloutStatus): string {
  const head = r.phase === 'canary' && r.weight !== undefined ? `canary ${r.weight}%` : r.phase;
  const figures = Object.entries(r.figures ?? {})
    .filter(([, v]) => Number.isFinite(v))
    .map(([k, v]) => `${k} ${Number.isInteger(v) ? v : v.toPrecision(3)}`)
    .join(', ');
  return `rollout ${head}${r.reason ? `: ${r.reason}` : ''}${figures ? ` (${figures})` : ''}`;
}

/** The object {@link createV2Service} returns. */
export type V2Service = ReturnType<typeof createV2Service>;

/**
 * Child spans for the stages the layers timed (queue, then compute), placed on the timeline from
 * what they wrote into the context, so a trace shows where a request's time went without every
 * layer depending on OpenTelemetry.
 */
function layerSpans(parent: Span, ctx: InferContext): void {
  if (!parent.isRecording()) return;
  const end = performance.timeOrigin + performance.now();
  const start = ctx.startedAt === undefined ? undefined : performance.timeOrigin + ctx.startedAt;
  const parentCtx = trace.setSpan(ROOT_CONTEXT, parent);
  const compute = typeof ctx.computeMs === 'number' ? ctx.computeMs : undefined;
  const queue = typeof ctx.queueMs === 'number' ? ctx.queueMs : undefined;
  if (queue !== undefined && start !== undefined) {
    const s = tracer.startSpan(
      'mlserve.queue',
      { startTime: start, attributes: { 'mlserve.queueMs': queue } },
      parentCtx,
    );
    s.end(start + queue);
  }
  if (compute !== undefined) {
    const computeStart = queue !== undefined && start !== undefined ? start + queue : end - compute;
    const s = tracer.startSpan(
      'mlserve.compute',
      {
        startTime: computeStart,
        attributes: { 'mlserve.computeMs': compute, 'mlserve.batchSize': Number(ctx.batchSize ?? 0) },
      },
      parentCtx,
    );
    s.end(computeStart + compute);
  }
}
