import { type ChildProcess, fork } from 'node:child_process';
import type { ModelMetadata } from '@mlserve/core';
import { unavailable } from '@mlserve/core';
import {
  fromWireError,
  type InferResult,
  type InferTask,
  type WireError,
  type WorkerData,
} from './protocol.js';

/** @internal Parent to child. */
export type ParentMessage =
  | { kind: 'init'; data: WorkerData }
  | { kind: 'task'; id: number; task: InferTask }
  | { kind: 'warmup'; id: number };

/** @internal Child to parent. */
export type ChildMessage =
  | { kind: 'ready'; ok: true; metadata: ModelMetadata }
  | { kind: 'ready'; ok: false; error: WireError }
  | { kind: 'result'; id: number; result: InferResult }
  | { kind: 'warmed'; id: number; error?: WireError };

interface Pending {
  task: InferTask;
  /** The pid of the child this task must run on (a sequence's), if any. */
  pin?: number | undefined;
  resolve: (r: InferResult) => void;
  reject: (e: unknown) => void;
}

interface Child {
  proc: ChildProcess;
  ready: boolean;
  current?: { id: number; pending: Pending };
}

/** Options of {@link ProcessPool}. @internal */
export interface ProcessPoolOptions {
  file: string;
  processes: number;
  data: WorkerData;
  maxOldGenerationSizeMb?: number | undefined;
  loadTimeoutMs: number;
}

/**
 * `isolation: 'process'`: one child process per "thread", each with its own copy of the model.
 * A child that dies (a native crash, `abort()`, heap exhaustion) fails only its own request and
 * is replaced; the parent process lives on. Tensors are copied through the IPC channel (Node's
 * `advanced` serialization), so this costs a copy each way that threads avoid.
 * @internal
 */
export class ProcessPool {
  readonly #opts: ProcessPoolOptions;
  readonly #children = new Set<Child>();
  readonly #waiting: Pending[] = [];
  readonly #warmups = new Map<number, { resolve: () => void; reject: (e: unknown) => void }>();
  #nextId = 1;
  #destroyed = false;
  #busyMs = 0;
  readonly #t0 = performance.now();
  /** Children that died and were replaced. */
  deaths = 0;

  constructor(opts: ProcessPoolOptions) {
    this.#opts = opts;
  }

  /** Starts every child and resolves with the model's metadata once all have loaded it. */
  async start(): Promise<ModelMetadata> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            unavailable(`the worker processes did not load the model within ${this.#opts.loadTimeoutMs} ms`),
          ),
        this.#opts.loadTimeoutMs,
      );
    });
    const loads = Array.from({ length: this.#opts.processes }, () => Promise.race([this.#spawn(), timeout]));
    const results = await Promise.allSettled(loads);
    clearTimeout(timer);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      await this.destroy();
      throw (failed as PromiseRejectedResult).reason;
    }
    return (results[0] as PromiseFulfilledResult<ModelMetadata>).value;
  }

  #spawn(): Promise<ModelMetadata> {
    const execArgv = this.#opts.maxOldGenerationSizeMb
      ? [`--max-old-space-size=${this.#opts.maxOldGenerationSizeMb}`]
      : [];
    const proc = fork(this.#opts.file, [], { serialization: 'advanced', execArgv, stdio: 'inherit' });
    const child: Child = { proc, ready: false };
    this.#children.add(child);
    return new Promise<ModelMetadata>((resolve, reject) => {
      proc.on('message', (message: ChildMessage) => {
        if (message.kind === 'ready') {
          if (!message.ok) {
            reject(fromWireError(message.error));
            proc.kill();
            return;
          }
          child.ready = true;
          resolve(message.metadata);
          this.#idle(child);
          this.#dispatch();
          return;
        }
        if (message.kind === 'warmed') {
          const w = this.#warmups.get(message.id);
          this.#warmups.delete(message.id);
          if (message.error) w?.reject(fromWireError(message.error));
          else w?.resolve();
          return;
        }
        const current = child.current;
        if (!current || current.id !== message.id) return;
        child.current = undefined;
        this.#idle(child);
        current.pending.resolve(message.result);
        this.#dispatch();
      });
      proc.on('error', () => {});
      proc.on('exit', (code, signal) => {
        this.#children.delete(child);
        const why = signal ? `signal ${signal}` : `code ${code}`;
        if (!child.ready) reject(unavailable(`the worker process exited while loading the model (${why})`));
        const current = child.current;
        child.current = undefined;
        if (this.#destroyed) {
          current?.pending.reject(unavailable('the worker pool is disposed'));
          return;
        }
        if (child.ready) {
          this.deaths++;
          current?.pending.reject(unavailable(`the worker process exited (${why}) and was replaced`));
          this.#spawn().catch((err: unknown) => {
            // The replacement could not load the model: if no process is left, fail the waiters.
            if (![...this.#children].some((c) => c.ready)) {
              for (const w of this.#waiting.splice(0)) w.reject(err);
            }
          });
        }
      });
      proc.send({ kind: 'init', data: this.#opts.data } satisfies ParentMessage);
    });
  }

  /** An idle child does not keep the parent process alive. */
  #idle(child: Child): void {
    child.proc.unref();
    (child.proc.channel as { unref?: () => void } | undefined)?.unref?.();
  }

  #dispatch(): void {
    if (this.#waiting.length === 0) return;
    const idle = [...this.#children].filter((c) => c.ready && !c.current);
    if (idle.length === 0) return;
    const alive = new Set([...this.#children].map((c) => c.proc.pid));
    // In order, except that a task pinned to a busy child lets the next ones pass.
    for (let i = 0; i < this.#waiting.length && idle.length > 0; ) {
      const pending = this.#waiting[i]!;
      const pin = pending.pin !== undefined && alive.has(pending.pin) ? pending.pin : undefined;
      const at = pin === undefined ? 0 : idle.findIndex((c) => c.proc.pid === pin);
      if (at < 0) {
        i++;
        continue;
      }
      this.#waiting.splice(i, 1);
      const child = idle.splice(at, 1)[0]!;
      this.#send(child, pending);
    }
  }

  #send(child: Child, pending: Pending): void {
    const id = this.#nextId++;
    child.current = { id, pending };
    child.proc.ref();
    (child.proc.channel as { ref?: () => void } | undefined)?.ref?.();
    const t0 = performance.now();
    const done = () => {
      this.#busyMs += performance.now() - t0;
    };
    const { resolve, reject } = pending;
    pending.resolve = (r) => {
      done();
      resolve(r);
    };
    pending.reject = (e) => {
      done();
      reject(e);
    };
    child.proc.send({ kind: 'task', id, task: pending.task } satisfies ParentMessage);
  }

  /** The ids (pids) of the children ready now. */
  ids(): number[] {
    return [...this.#children].filter((c) => c.ready && c.proc.pid !== undefined).map((c) => c.proc.pid!);
  }

  /** Runs a task; `pin` (a child's pid) keeps it on that child while the child lives. */
  run(task: InferTask, pin?: number): Promise<InferResult> {
    if (this.#destroyed) return Promise.reject(unavailable('the worker pool is disposed'));
    return new Promise((resolve, reject) => {
      this.#waiting.push({ task, resolve, reject, pin });
      this.#dispatch();
    });
  }

  /** Runs the model's warmup() in every ready child. */
  async warmup(): Promise<void> {
    const all = [...this.#children]
      .filter((c) => c.ready)
      .map(
        (c) =>
          new Promise<void>((resolve, reject) => {
            const id = this.#nextId++;
            this.#warmups.set(id, { resolve, reject });
            c.proc.send({ kind: 'warmup', id } satisfies ParentMessage);
            c.proc.once('exit', () => {
              if (this.#warmups.delete(id)) reject(unavailable('the worker process exited during warmup'));
            });
          }),
      );
    await Promise.all(all);
  }

  /** Children alive now (loaded or loading). */
  get live(): number {
    return this.#children.size;
  }

  /** Share of the children's time spent on tasks since the start. */
  get utilization(): number {
    const wall = (performance.now() - this.#t0) * this.#opts.processes;
    return wall > 0 ? Math.min(1, this.#busyMs / wall) : 0;
  }

  async destroy(): Promise<void> {
    this.#destroyed = true;
    for (const w of this.#waiting.splice(0)) w.reject(unavailable('the worker pool is disposed'));
    const exits = [...this.#children].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.proc.exitCode !== null || c.proc.signalCode !== null) return resolve();
          c.proc.once('exit', () => resolve());
          c.proc.kill();
        }),
    );
    await Promise.all(exits);
  }
}
