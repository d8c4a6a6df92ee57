import { type FileHandle, open, rename, rm, stat } from 'node:fs/promises';
import type { InferContext, Tensor, Tensors } from '@mlserve/core';

/** One logged request/response pair, as written to a sink. */
export interface PayloadRecord {
  /** Epoch milliseconds when the response was ready. */
  time: number;
  model: string;
  version: string;
  id?: string;
  inputs: Tensors;
  outputs: Tensors;
  context?: InferContext;
}

/** Counters of a sink. */
export interface SinkStats {
  written: number;
  /** Records dropped because the sink's buffer was full (the sink was slower than the traffic). */
  dropped: number;
  /** Writes that failed (file or Redis errors); the records are lost, requests never see it. */
  errors: number;
  /** Records waiting in the buffer now. */
  pending: number;
}

/**
 * Where sampled payloads go. `write` never blocks and never throws: it returns false when the
 * record was dropped.
 */
export interface PayloadSink {
  write(record: PayloadRecord): boolean;
  /** Resolves once everything buffered so far is written (or failed). */
  flush(): Promise<void>;
  /** Flushes, then releases the file or stops using the client. */
  close(): Promise<void>;
  stats(): SinkStats;
}

/** A tensor as JSON: `{ type, dims, data }` with bigints as strings and bytes as base64. */
export function tensorToJSON(t: Tensor): { type: string; dims: number[]; data: unknown[] } {
  let data: unknown[];
  if (t.type === 'string') {
    data = (t.data as (string | Uint8Array)[]).map((v) =>
      typeof v === 'string' ? v : Buffer.from(v).toString('base64'),
    );
  } else if (t.type === 'int64' || t.type === 'uint64') {
    data = Array.from(t.data as BigInt64Array, (v) => v.toString());
  } else data = Array.from(t.data as Float32Array);
  return { type: t.type, dims: [...t.dims], data };
}

/** One JSON line for a record. */
export function recordToJSON(r: PayloadRecord): string {
  const enc = (ts: Tensors) => Object.fromEntries(Object.entries(ts).map(([k, v]) => [k, tensorToJSON(v)]));
  const ctx = r.context
    ? Object.fromEntries(
        Object.entries(r.context).filter(([, v]) => typeof v !== 'object' && typeof v !== 'function'),
      )
    : undefined;
  return JSON.stringify({
    time: new Date(r.time).toISOString(),
    model: r.model,
    version: r.version,
    id: r.id,
    inputs: enc(r.inputs),
    outputs: enc(r.outputs),
    context: ctx,
  });
}

/** A bounded buffer drained by one async writer; the shared engine of both sinks. */
abstract class BufferedSink implements PayloadSink {
  #buffer: PayloadRecord[] = [];
  #running: Promise<void> | undefined;
  #closed = false;
  protected counters = { written: 0, dropped: 0, errors: 0 };
  constructor(
    readonly maxPending: number,
    readonly batchSize: number,
    where: string,
  ) {
    if (!Number.isInteger(maxPending) || maxPending < 1)
      throw new TypeError(`${where}: options.maxPending must be a positive integer`);
  }
  protected abstract writeBatch(records: PayloadRecord[]): Promise<void>;
  protected async release(): Promise<void> {}

  write(record: PayloadRecord): boolean {
    if (this.#closed || this.#buffer.length >= this.maxPending) {
      this.counters.dropped++;
      return false;
    }
    this.#buffer.push(record);
    this.#running ??= this.#drain();
    return true;
  }

  async #drain(): Promise<void> {
    await Promise.resolve();
    try {
      while (this.#buffer.length > 0) {
        const batch = this.#buffer.splice(0, this.batchSize);
        try {
          await this.writeBatch(batch);
          this.counters.written += batch.length;
        } catch {
          this.counters.errors += batch.length;
        }
      }
    } finally {
      this.#running = undefined;
    }
  }

  async flush(): Promise<void> {
    while (this.#running) await this.#running;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
    await this.release();
  }

  stats(): SinkStats {
    return { ...this.counters, pending: this.#buffer.length };
  }
}

/** Options of {@link jsonLinesSink}. */
export interface JsonLinesSinkOptions {
  /** The file to append to; rotated files are `path.1` (newest) to `path.<keep>`. */
  path: string;
  /** Rotate when the file would grow past this many bytes (default 64 MiB). */
  maxBytes?: number;
  /** Rotated files kept besides the live one (default 5); older ones are deleted. */
  keep?: number;
  /** Records buffered while the disk is slow; beyond this they are dropped and counted (default 1000). */
  maxPending?: number;
}

class JsonLinesSink extends BufferedSink {
  #fh: FileHandle | undefined;
  #size = -1;
  readonly #path: string;
  readonly #maxBytes: number;
  readonly #keep: number;
  constructor(o: JsonLinesSinkOptions) {
    super(o.maxPending ?? 1000, 256, 'jsonLinesSink');
    this.#path = o.path;
    this.#maxBytes = o.maxBytes ?? 64 * 1024 * 1024;
    this.#keep = o.keep ?? 5;
    if (typeof o.path !== 'string' || o.path.length === 0)
      throw new TypeError('jsonLinesSink: options.path must be a non-empty string');
    if (!(this.#maxBytes > 0)) throw new TypeError('jsonLinesSink: options.maxBytes must be positive');
    if (!Number.isInteger(this.#keep) || this.#keep < 0)
      throw new TypeError('jsonLinesSink: options.keep must be an integer >= 0');
  }

  protected async writeBatch(records: PayloadRecord[]): Promise<void> {
    if (this.#size < 0)
      this.#size = await stat(this.#path).then(
        (s) => s.size,
        () => 0,
      );
    let chunk = '';
    let chunkBytes = 0;
    for (const r of records) {
      const line = `${recordToJSON(r)}\n`;
      const bytes = Buffer.byteLength(line);
      if (this.#size + chunkBytes + bytes > this.#maxBytes && this.#size + chunkBytes > 0) {
        if (chunk) await this.#append(chunk, chunkBytes);
        chunk = '';
        chunkBytes = 0;
        await this.#rotate();
      }
      chunk += line;
      chunkBytes += bytes;
    }
    if (chunk) await this.#append(chunk, chunkBytes);
  }

  async #append(chunk: string, bytes: number): Promise<void> {
    this.#fh ??= await open(this.#path, 'a');
    await this.#fh.write(chunk);
    this.#size += bytes;
  }

  async #rotate(): Promise<void> {
    await this.#fh?.close();
    this.#fh = undefined;
    if (this.#keep === 0) await rm(this.#path, { force: true });
    else {
      await rm(`${this.#path}.${this.#keep}`, { force: true });
      for (let i = this.#keep - 1; i >= 1; i--) {
        await rename(`${this.#path}.${i}`, `${this.#path}.${i + 1}`).catch(() => undefined);
      }
      await rename(this.#path, `${this.#path}.1`).catch(() => undefined);
    }
    this.#size = 0;
  }

  protected override async release(): Promise<void> {
    await this.#fh?.close();
    this.#fh = undefined;
  }
}

/**
 * A JSON-lines file that rotates by size and keeps the newest `keep` rotated files: training
 * data for the next model, written off the request path.
 *
 * @example
 * ```ts
 * const sink = jsonLinesSink({ path: '/var/log/mlserve/mnist.jsonl', maxBytes: 100e6, keep: 10 });
 * pipeline(model, monitor({ profile: ref, sink, sinkSampleRate: 0.01 }));
 * ```
 */
export function jsonLinesSink(options: JsonLinesSinkOptions): PayloadSink {
  return new JsonLinesSink(options);
}

/** The part of an ioredis client the stream sink uses. */
export interface StreamClient {
  pipeline(): unknown;
}

interface StreamPipeline {
  xadd(...args: (string | number)[]): unknown;
  exec(): Promise<[Error | null, unknown][] | null>;
}

/** Options of {@link redisStreamSink}. */
export interface RedisStreamSinkOptions {
  /** An ioredis client (or cluster); the sink never closes it. */
  client: StreamClient;
  /** Stream key (default `mlserve:payloads`). */
  stream?: string;
  /** Approximate cap on the stream length (`XADD MAXLEN ~`, default 100000). */
  maxLen?: number;
  /** Records buffered while Redis is slow or away; beyond this they are dropped (default 1000). */
  maxPending?: number;
}

class RedisStreamSink extends BufferedSink {
  readonly #o: Required<RedisStreamSinkOptions>;
  constructor(o: RedisStreamSinkOptions) {
    super(o.maxPending ?? 1000, 128, 'redisStreamSink');
    if (!o.client || typeof o.client.pipeline !== 'function')
      throw new TypeError('redisStreamSink: options.client must be an ioredis client');
    this.#o = { stream: 'mlserve:payloads', maxLen: 100_000, maxPending: 1000, ...o };
  }
  protected async writeBatch(records: PayloadRecord[]): Promise<void> {
    const p = this.#o.client.pipeline() as StreamPipeline;
    for (const r of records) {
      p.xadd(this.#o.stream, 'MAXLEN', '~', this.#o.maxLen, '*', 'record', recordToJSON(r));
    }
    const results = await p.exec();
    const failed = results?.find(([err]) => err);
    if (failed?.[0]) throw failed[0];
  }
}

/**
 * A Redis stream (`XADD ... MAXLEN ~ n`), for a consumer group that feeds labelling or
 * retraining. When Redis is away, records wait in a bounded buffer and then are dropped.
 *
 * @example
 * ```ts
 * const sink = redisStreamSink({ client: new Redis(), stream: 'payloads:mnist', maxLen: 50_000 });
 * ```
 */
export function redisStreamSink(options: RedisStreamSinkOptions): PayloadSink {
  return new RedisStreamSink(options);
}
