import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { invalidArgument } from '@mlserve/core';

/** What bulk ingestion feeds: a monitor (or anything with its `feedback` method). */
export interface FeedbackTarget {
  feedback(requestId: string, label: unknown): boolean;
  /**
   * Whether a label for this request id is joined (false when the join is sampled and the id is
   * outside the sample): tells a skipped label from an unmatched one.
   */
  joins?(requestId: string): boolean;
}

/** Counts of one bulk ingestion. */
export interface IngestStats {
  /** Records read. */
  records: number;
  /** Joined to a logged prediction. */
  joined: number;
  /** No prediction under that id in this process (unknown, expired, already labelled). */
  unmatched: number;
  /** Outside the join's sample (see the monitor's `feedback.sampleRate`): not joined, by design. */
  skipped: number;
  /** Not JSON, no id, or a label the monitor rejected. */
  invalid: number;
  /** The last invalid record's reason. */
  lastError?: string;
}

function apply(target: FeedbackTarget, stats: IngestStats, record: unknown): void {
  stats.records++;
  try {
    const r = record as { id?: unknown; label?: unknown; target?: unknown; labels?: unknown };
    if (typeof r !== 'object' || r === null || typeof r.id !== 'string')
      throw invalidArgument('a feedback record needs a string "id"');
    const label = r.label ?? r.target ?? r.labels;
    if (label === undefined) throw invalidArgument('a feedback record needs "label" (or "target")');
    if (target.feedback(r.id, label)) stats.joined++;
    else if (target.joins?.(r.id) === false) stats.skipped++;
    else stats.unmatched++;
  } catch (err) {
    stats.invalid++;
    stats.lastError = err instanceof Error ? err.message : String(err);
  }
}

/**
 * Feeds labels from a JSON-lines file (`{"id": "...", "label": 7}` per line; `target` for
 * regression, an array for a batch) into a monitor. Lines that do not parse or are rejected are
 * counted, never thrown.
 *
 * @example
 * ```ts
 * const { joined, unmatched } = await ingestFeedbackFile(watch, 'labels-2026-12-07.jsonl');
 * ```
 */
export async function ingestFeedbackFile(target: FeedbackTarget, path: string): Promise<IngestStats> {
  const stats: IngestStats = { records: 0, joined: 0, unmatched: 0, skipped: 0, invalid: 0 };
  const lines = createInterface({
    input: createReadStream(path, 'utf8'),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of lines) {
    if (line.trim() === '') continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      stats.records++;
      stats.invalid++;
      stats.lastError = 'not JSON';
      continue;
    }
    apply(target, stats, record);
  }
  return stats;
}

/** Options of {@link feedbackFromRedisStream}. */
export interface RedisFeedbackOptions {
  /** An ioredis client; the reader blocks on a duplicate of it, so the client stays free. */
  client: import('ioredis').Redis;
  /** Stream key (default `'mlserve:feedback'`). */
  stream?: string;
  /**
   * A consumer group, to share the labels among consumers (each label read once, acknowledged
   * after it is applied). Leave it out when every replica must see every label (each joins the
   * predictions it served; the others count as unmatched in that replica).
   */
  group?: string;
  /** This consumer's name in the group (default `mlserve-<pid>`). */
  consumer?: string;
  /** Where a reader without a group starts: `'$'` (new entries, the default) or `'0'` (all). */
  from?: string;
  /** Entries per read (default 500). */
  count?: number;
  /** How long one read blocks, ms (default 1000). */
  blockMs?: number;
}

/** A running Redis stream reader. */
export interface FeedbackReader {
  stats(): IngestStats;
  /** Stops reading and closes the reader's connection. */
  close(): Promise<void>;
}

/**
 * Reads labels from a Redis stream (`XADD mlserve:feedback * id <request id> label <json>`, or one
 * field `record` holding `{"id", "label"}` as JSON) and feeds them into a monitor as they come.
 *
 * @example
 * ```ts
 * const reader = await feedbackFromRedisStream(watch, { client: redis, stream: 'mlserve:feedback' });
 * // ... later
 * await reader.close();
 * ```
 */
export async function feedbackFromRedisStream(
  target: FeedbackTarget,
  options: RedisFeedbackOptions,
): Promise<FeedbackReader> {
  const {
    client,
    stream = 'mlserve:feedback',
    group,
    consumer = `mlserve-${process.pid}`,
    from = '$',
    count = 500,
    blockMs = 1000,
  } = options;
  const stats: IngestStats = { records: 0, joined: 0, unmatched: 0, skipped: 0, invalid: 0 };
  const conn = client.duplicate();
  if (group) {
    try {
      await conn.xgroup('CREATE', stream, group, '$', 'MKSTREAM');
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) {
        conn.disconnect();
        throw err;
      }
    }
  }
  let last = from;
  if (!group && from === '$') {
    // Resolve '$' once, so entries added between two reads are not skipped.
    const info = (await conn.xrevrange(stream, '+', '-', 'COUNT', 1)) as [string, string[]][];
    last = info[0]?.[0] ?? '0';
  }
  let stopped = false;
  const toRecord = (fields: string[]): unknown => {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    if (f.record !== undefined) return JSON.parse(f.record);
    const parse = (v: string | undefined) => {
      if (v === undefined) return undefined;
      try {
        return JSON.parse(v);
      } catch {
        return v;
      }
    };
    return { id: f.id, label: parse(f.label), target: parse(f.target) };
  };
  const loop = (async () => {
    while (!stopped) {
      let reply: [string, [string, string[]][]][] | null;
      try {
        reply = group
          ? ((await conn.xreadgroup(
              'GROUP',
              group,
              consumer,
              'COUNT',
              count,
              'BLOCK',
              blockMs,
              'STREAMS',
              stream,
              '>',
            )) as [string, [string, string[]][]][] | null)
          : ((await conn.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', stream, last)) as
              | [string, [string, string[]][]][]
              | null);
      } catch (err) {
        if (stopped) break;
        stats.lastError = err instanceof Error ? err.message : String(err);
        await new Promise((r) => setTimeout(r, Math.min(blockMs, 1000)));
        continue;
      }
      const entries = reply?.[0]?.[1] ?? [];
      for (const [entryId, fields] of entries) {
        let record: unknown;
        try {
          record = toRecord(fields);
        } catch {
          stats.records++;
          stats.invalid++;
          stats.lastError = 'not JSON';
          continue;
        }
        apply(target, stats, record);
        last = entryId;
      }
      if (group && entries.length > 0) await conn.xack(stream, group, ...entries.map(([id]) => id));
    }
  })();
  return {
    stats: () => ({ ...stats }),
    async close() {
      stopped = true;
      conn.disconnect();
      await loop;
    },
  };
}
