import type { InferOptions, SharedSignal, Tensors } from '@mlserve/core';
import type { GroupState } from './policy.js';

/**
 * The queue: requests grouped by what they may share a batch with, FIFO within a group unless
 * priorities differ (then highest effective priority first, aging by the wait). It keeps the
 * counts the batcher and its stats read; it never runs anything.
 */

export const QUEUED = 0;
export const RUNNING = 1;
export const DONE = 2;

/** One request (or one chunk of an oversized one) waiting in or running through the batcher. */
export class Entry {
  state = QUEUED;
  shared: SharedSignal | undefined = undefined;
  onAbort: (() => void) | undefined = undefined;
  resolve!: (out: Tensors) => void;
  reject!: (err: unknown) => void;
  constructor(
    readonly inputs: Tensors,
    readonly options: InferOptions | undefined,
    readonly rows: number,
    readonly group: Group,
    readonly enqueuedAt: number,
    /** The deadline on the performance.now() scale; Infinity when none. */
    readonly deadlineAt: number,
    readonly priority: number,
    readonly seq: number,
    /** Queued while every compute slot was busy (or in the turn its slot freed). */
    readonly queuedBusy: boolean,
  ) {}
}

/** Requests that may share a batch. Doubles as the policy's view of it. */
export class Group implements GroupState {
  entries: Entry[] = [];
  items = 0;
  /** Entries with a priority other than 0 (FIFO is exact when there are none). */
  prioritized = 0;
  earliestDeadline = Number.POSITIVE_INFINITY;
  lastArrivalAt = 0;
  constructor(readonly key: string) {}
  get oldestAt(): number {
    return this.entries[0]!.enqueuedAt;
  }
  get oldestQueuedBusy(): boolean {
    return this.entries[0]!.queuedBusy;
  }
}

export class Queue {
  readonly groups = new Map<string, Group>();
  items = 0;
  requests = 0;
  /** The earliest deadline of any queued request; Infinity when none. */
  earliestDeadline = Number.POSITIVE_INFINITY;
  #solo = 0;

  constructor(readonly agingMs: number) {}

  /** Adds an entry's group (a key of undefined: a group of its own, never shared). */
  group(key: string | undefined): Group {
    if (key === undefined) {
      const g = new Group(`\0solo${this.#solo++}`);
      this.groups.set(g.key, g);
      return g;
    }
    let g = this.groups.get(key);
    if (!g) {
      g = new Group(key);
      this.groups.set(key, g);
    }
    return g;
  }

  push(e: Entry): void {
    const g = e.group;
    g.entries.push(e);
    g.items += e.rows;
    g.lastArrivalAt = e.enqueuedAt;
    if (e.priority !== 0) g.prioritized++;
    if (e.deadlineAt < g.earliestDeadline) g.earliestDeadline = e.deadlineAt;
    if (e.deadlineAt < this.earliestDeadline) this.earliestDeadline = e.deadlineAt;
    this.items += e.rows;
    this.requests++;
  }

  /** Takes an entry out of its group (it was aborted or expired). */
  remove(e: Entry): void {
    const g = e.group;
    const i = g.entries.indexOf(e);
    if (i >= 0) g.entries.splice(i, 1);
    this.#forget(g, e);
    if (g.entries.length === 0) this.groups.delete(g.key);
    else if (e.deadlineAt === g.earliestDeadline) g.earliestDeadline = minDeadline(g.entries);
  }

  #forget(g: Group, e: Entry): void {
    g.items -= e.rows;
    if (e.priority !== 0) g.prioritized--;
    this.items -= e.rows;
    this.requests--;
  }

  /** Takes out every entry whose deadline has passed and hands each to `expire`. */
  sweep(now: number, expire: (e: Entry) => void): void {
    let earliest = Number.POSITIVE_INFINITY;
    for (const g of this.groups.values()) {
      if (g.earliestDeadline > now) {
        if (g.earliestDeadline < earliest) earliest = g.earliestDeadline;
        continue;
      }
      let min = Number.POSITIVE_INFINITY;
      const keep: Entry[] = [];
      for (const e of g.entries) {
        if (e.deadlineAt <= now) {
          this.#forget(g, e);
          expire(e);
        } else {
          keep.push(e);
          if (e.deadlineAt < min) min = e.deadlineAt;
        }
      }
      g.entries = keep;
      g.earliestDeadline = min;
      if (keep.length === 0) this.groups.delete(g.key);
      if (min < earliest) earliest = min;
    }
    this.earliestDeadline = earliest;
  }

  /** Effective priority: priority plus one level per `priorityAgingMs` waited. */
  effective(e: Entry, now: number): number {
    return e.priority + (now - e.enqueuedAt) / this.agingMs;
  }

  /** The group's most urgent member's effective priority (which group goes first). */
  score(g: Group, now: number): number {
    if (g.prioritized === 0) return this.effective(g.entries[0]!, now);
    let max = Number.NEGATIVE_INFINITY;
    for (const e of g.entries) {
      const s = this.effective(e, now);
      if (s > max) max = s;
    }
    return max;
  }

  /**
   * Takes up to `limit` items from a group (always at least one request, even one larger than the
   * limit), most urgent first, and removes them from the queue.
   */
  take(g: Group, limit: number, now: number): Entry[] {
    let taken: Entry[];
    if (g.prioritized === 0) {
      let k = 0;
      let items = 0;
      const entries = g.entries;
      for (; k < entries.length; k++) {
        const rows = entries[k]!.rows;
        if (items + rows > limit && k > 0) break;
        items += rows;
      }
      // splice() from the front trims the array in place (no copy of the rest).
      if (k === entries.length) {
        taken = entries;
        g.entries = [];
      } else taken = entries.splice(0, k);
    } else {
      const order = g.entries.slice().sort((a, b) => {
        const d = this.effective(b, now) - this.effective(a, now);
        return d !== 0 ? d : a.seq - b.seq;
      });
      const picked = new Set<Entry>();
      let items = 0;
      for (const e of order) {
        if (items + e.rows > limit && picked.size > 0) continue;
        picked.add(e);
        items += e.rows;
        if (items >= limit) break;
      }
      taken = order.filter((e) => picked.has(e));
      g.entries = g.entries.filter((e) => !picked.has(e));
    }
    let recompute = false;
    for (const e of taken) {
      this.#forget(g, e);
      // (Infinity === Infinity: without deadlines there is nothing to recompute.)
      if (e.deadlineAt === g.earliestDeadline && e.deadlineAt !== Number.POSITIVE_INFINITY) recompute = true;
    }
    if (g.entries.length === 0) this.groups.delete(g.key);
    else if (recompute) g.earliestDeadline = minDeadline(g.entries);
    return taken;
  }

  /** Empties the queue, handing each entry to `each`. */
  clear(each: (e: Entry) => void): void {
    for (const g of this.groups.values()) for (const e of g.entries) each(e);
    this.groups.clear();
    this.items = 0;
    this.requests = 0;
    this.earliestDeadline = Number.POSITIVE_INFINITY;
  }
}

function minDeadline(entries: readonly Entry[]): number {
  let min = Number.POSITIVE_INFINITY;
  for (const e of entries) if (e.deadlineAt < min) min = e.deadlineAt;
  return min;
}
