/**
 * Counts the requests running on something that will be disposed, so the disposer can wait for
 * them: "stop taking new requests, let the running ones finish, then dispose". A registry
 * retiring a version, a swapped-out model and an onnxruntime session each keep one.
 *
 * @example
 * ```ts
 * import { InFlight } from '@mlserve/core';
 *
 * const flight = new InFlight();
 * flight.enter();
 * const work = new Promise((resolve) => setTimeout(resolve, 10)).then(flight.leave);
 * await flight.idle(); // resolves once the request above has left
 * console.log(flight.count); // 0
 * await work;
 * ```
 */
export class InFlight {
  /** Requests running now. */
  count = 0;
  #waiting: (() => void)[] = [];

  /** A request starts. */
  enter(): void {
    this.count++;
  }

  /** A request ends (bound: pass it to `then` as it is). */
  readonly leave = (): void => {
    if (--this.count === 0 && this.#waiting.length > 0) for (const done of this.#waiting.splice(0)) done();
  };

  /** Resolves when no request is running (at once when none is). */
  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#waiting.push(resolve));
  }
}
