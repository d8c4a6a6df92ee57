import { describe, expect, it } from 'vitest';
import { Emitter } from '../src/index.js';

describe('Emitter', () => {
  it('calls listeners with typed arguments, once and off included', () => {
    const e = new Emitter<{ hit: [n: number]; done: [] }>();
    const seen: number[] = [];
    const listener = (n: number) => seen.push(n);
    e.on('hit', listener);
    e.once('hit', (n) => seen.push(n * 10));
    expect(e.emit('hit', 1)).toBe(true);
    e.emit('hit', 2);
    e.off('hit', listener);
    e.emit('hit', 3);
    expect(seen).toEqual([1, 10, 2]);
    expect(e.emit('done')).toBe(false);
    expect(e.listenerCount('hit')).toBe(0);
  });
});
