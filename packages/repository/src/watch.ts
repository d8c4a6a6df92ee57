/**
 * Watching: when to poll. A timer, and optionally file-system events that bring the next poll
 * forward; neither keeps the process alive.
 */
import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { toServeError } from '@mlserve/core';

/** What a {@link Watcher} drives. */
export interface WatchTarget {
  /** One scan. */
  poll(): Promise<unknown>;
  /** The directory to watch for events. */
  root(): Promise<string>;
  /** True when files were seen changing at the last poll (a quick second look confirms them settled). */
  settling(): boolean;
  /** True once the owner is closed: the watcher stops scheduling. */
  closed(): boolean;
  warn(message: string): void;
  error(message: string): void;
}

/**
 * Polls a {@link WatchTarget} every `intervalMs`; with `fsEvents`, file-system events also trigger
 * a poll (debounced by `debounceMs`), and polls repeat while new files are settling.
 *
 * @example
 * ```ts
 * const watcher = new Watcher(target);
 * watcher.start(30_000, { fsEvents: true });
 * watcher.stop();
 * ```
 */
export class Watcher {
  readonly #target: WatchTarget;
  #timer: NodeJS.Timeout | undefined;
  #watcher: FSWatcher | undefined;

  constructor(target: WatchTarget) {
    this.#target = target;
  }

  /** Starts (or restarts with new settings). */
  start(intervalMs: number, options: { fsEvents?: boolean; debounceMs?: number } = {}): void {
    if (!Number.isFinite(intervalMs) || intervalMs <= 0) {
      throw new TypeError('intervalMs must be a positive number');
    }
    const target = this.#target;
    const debounceMs = options.debounceMs ?? 250;
    this.stop();
    const schedule = (ms: number) => {
      if (target.closed()) return;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = setTimeout(tick, ms);
      this.#timer.unref();
    };
    const tick = () => {
      this.#timer = undefined;
      if (target.closed()) return;
      target
        .poll()
        .catch((err: unknown) => target.error(`poll failed: ${toServeError(err).message}`))
        .finally(() => {
          if (target.closed() || this.#timer !== undefined) return;
          // Files seen changing are confirmed settled by a quick second look when events drive us.
          schedule(this.#watcher && target.settling() ? debounceMs : intervalMs);
        });
    };
    schedule(intervalMs);
    if (options.fsEvents) {
      void target.root().then(
        (root) => {
          if (target.closed()) return;
          try {
            const watcher = fsWatch(root, { recursive: true }, () => schedule(debounceMs));
            watcher.on('error', (err) => {
              target.warn(`file watching stopped (${err.message}); polling every ${intervalMs} ms`);
              watcher.close();
              if (this.#watcher === watcher) this.#watcher = undefined;
            });
            watcher.unref();
            this.#watcher = watcher;
          } catch (err) {
            target.warn(`file watching is unavailable (${toServeError(err).message}); polling only`);
          }
        },
        (err: unknown) => target.error(toServeError(err).message),
      );
    }
  }

  /** Stops the timer and the file watcher. */
  stop(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#watcher?.close();
    this.#watcher = undefined;
  }
}
