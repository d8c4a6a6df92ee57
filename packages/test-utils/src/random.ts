/**
 * A seeded generator of uniform numbers in [0, 1) (mulberry32), so that a test or a script draws the
 * same numbers on every run and a failure reproduces.
 *
 * @example
 * ```ts
 * const random = seededRandom(42);
 * random(); // the same first draw every time
 * ```
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
