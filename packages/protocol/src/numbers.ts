/**
 * A faster way through a KServe V2 JSON body whose input tensors carry their values as flat arrays
 * of numbers (what tritonclient, `curl -d @digit.json` and every V2 JSON client sends).
 *
 * `JSON.parse` turns each element into a JavaScript number (most of them heap-allocated doubles),
 * which the decoder then copies into a typed array: for a 28x28 image that is about half of the
 * server's CPU per request. {@link splitV2Json} scans the text once, takes each
 * `inputs[i].data` array that is a flat list of JSON numbers out of it (the rest, a few hundred
 * bytes, still goes through `JSON.parse`), and {@link NumberList} turns the numbers into a
 * `Float32Array` directly.
 *
 * Exactness: every value is the same as `Math.fround(JSON.parse(token))`, the float32 the general
 * path stores. A token of at most 15-16 significant digits and a decimal exponent within ±22 is
 * converted with one correctly rounded IEEE operation (Clinger's fast path), which is what
 * `JSON.parse` computes. Longer tokens are first converted approximately (relative error below
 * 2^-49); the float32 it rounds to is kept only when the value lies far from the midpoint between
 * two float32 values (more than 2^-47 relative), where no error of that size can change the
 * rounding; otherwise, and for every token outside these ranges, the token is converted with
 * `Number()`, as `JSON.parse` would. Anything this scanner does not accept exactly (nested arrays,
 * strings, `null`, duplicate keys, malformed numbers, unusual structure) makes it give up, and the
 * caller parses the whole text with `JSON.parse` as before, so errors are unchanged.
 */
import { concatBytes } from './codec.js';

/** One `data` array taken out of the body: where it was, and its values as float32. */
export class NumberList {
  /** Each value as `Math.fround(JSON.parse(token))`. */
  readonly values: Float32Array;
  readonly length: number;
  readonly source: Uint8Array;
  /** Where the array (from `[` to `]`) was in the source. */
  readonly from: number;
  readonly to: number;

  constructor(source: Uint8Array, from: number, to: number, values: Float32Array) {
    this.source = source;
    this.from = from;
    this.to = to;
    this.values = values;
    this.length = values.length;
  }

  /** The values as float32, each equal to `Math.fround(JSON.parse(token))`. */
  toFloat32(): Float32Array {
    return this.values;
  }

  /** The array as `JSON.parse` reads it (the general path, for every other element type). */
  toArray(): unknown {
    return JSON.parse(ascii(this.source, this.from, this.to)) as unknown;
  }
}

/** ASCII bytes as a string (a number token or a checked numeric array: ASCII by construction). */
function ascii(bytes: Uint8Array, from: number, to: number): string {
  let out = '';
  for (let i = from; i < to; i += 4096) {
    out += String.fromCharCode(...bytes.subarray(i, Math.min(to, i + 4096)));
  }
  return out;
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);
/** The relative distance from a float32 rounding boundary that an approximate value must keep. */
const MARGIN = 2 ** -47;

/** Whether `v` (approximate, relative error below 2^-49) is far enough from both float32 midpoints around `f`. */
function farFromMidpoint(v: number, f: number): boolean {
  if (!Number.isFinite(f) || f === 0) return false;
  const a = Math.abs(f);
  // Only normal float32 magnitudes well inside the range take the fast route.
  if (a < 1e-37 || a > 1e38) return false;
  F32[0] = a;
  const bits = U32[0]!;
  U32[0] = bits + 1;
  const up = F32[0]!;
  U32[0] = bits - 1;
  const down = F32[0]!;
  const av = Math.abs(v);
  const margin = av * MARGIN;
  return Math.abs(av - (a + up) / 2) > margin && Math.abs(av - (a + down) / 2) > margin;
}

const POW10 = [
  1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
  1e20, 1e21, 1e22,
];
/** Mantissas stay exact integers below this (2^53). */
const EXACT_LIMIT = 2 ** 53;

let scratch = new Float32Array(1024);

function grow(n: number): void {
  const next = new Float32Array(Math.max(n, scratch.length * 2));
  next.set(scratch);
  scratch = next;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/**
 * Reads a JSON array of numbers starting at `s[from] === '['`. Returns the list, or undefined when
 * the array holds anything but numbers (or is malformed), so the caller falls back.
 */
export function readNumberList(s: Uint8Array, from: number): NumberList | undefined {
  const len = s.length;
  let i = from + 1;
  let n = 0;
  while (i < len && isSpace(s[i] ?? -1)) i++;
  if (i < len && (s[i] ?? -1) === 0x5d) return new NumberList(s, from, i + 1, new Float32Array(0));
  for (;;) {
    // One number: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?
    const start = i;
    let c = s[i] ?? -1;
    let negative = false;
    if (c === 0x2d) {
      negative = true;
      c = s[++i] ?? -1;
    }
    let mantissa = 0;
    let exponent = 0;
    let exact = true;
    if (c === 0x30) {
      c = s[++i] ?? -1;
      if (c >= 0x30 && c <= 0x39) return undefined;
    } else if (c >= 0x31 && c <= 0x39) {
      do {
        if (mantissa < EXACT_LIMIT / 10 - 1) {
          mantissa = mantissa * 10 + (c - 0x30);
        } else {
          exponent++;
          if (c !== 0x30) exact = false;
        }
        c = s[++i] ?? -1;
      } while (c >= 0x30 && c <= 0x39);
    } else return undefined;
    if (c === 0x2e) {
      c = s[++i] ?? -1;
      if (!(c >= 0x30 && c <= 0x39)) return undefined;
      do {
        if (mantissa < EXACT_LIMIT / 10 - 1) {
          mantissa = mantissa * 10 + (c - 0x30);
          exponent--;
        } else if (c !== 0x30) exact = false;
        c = s[++i] ?? -1;
      } while (c >= 0x30 && c <= 0x39);
    }
    if (c === 0x65 || c === 0x45) {
      c = s[++i] ?? -1;
      let sign = 1;
      if (c === 0x2b || c === 0x2d) {
        if (c === 0x2d) sign = -1;
        c = s[++i] ?? -1;
      }
      if (!(c >= 0x30 && c <= 0x39)) return undefined;
      let e = 0;
      do {
        if (e < 100_000) e = e * 10 + (c - 0x30);
        c = s[++i] ?? -1;
      } while (c >= 0x30 && c <= 0x39);
      exponent += sign * e;
    }
    let value: number;
    if (mantissa === 0) {
      // Zero whatever its exponent (JSON.parse("0e999") is 0); digits dropped above cannot be
      // nonzero here, since a nonzero leading digit makes the mantissa nonzero.
      value = 0;
      exact = true;
    } else if (exponent >= 0 && exponent <= 22) {
      value = mantissa * POW10[exponent]!;
    } else if (exponent < 0 && exponent >= -22) {
      value = mantissa / POW10[-exponent]!;
    } else {
      value = Number.NaN;
      exact = false;
    }
    if (n === scratch.length) grow(n + 1);
    if (negative) value = -value;
    // Exact: the store rounds the correctly rounded double, as Math.fround(JSON.parse(token)) does.
    if (exact) scratch[n] = value;
    else {
      const f = Math.fround(value);
      scratch[n] = farFromMidpoint(value, f) ? f : Number(ascii(s, start, i));
    }
    n++;
    while (i < len && isSpace(c)) c = s[++i] ?? -1;
    if (c === 0x2c) {
      i++;
      while (i < len && isSpace(s[i] ?? -1)) i++;
      continue;
    }
    if (c === 0x5d) {
      i++;
      break;
    }
    return undefined;
  }
  return new NumberList(s, from, i, scratch.slice(0, n));
}

/** Whether the last string {@link skipString} skipped had an escape in it. */
let escaped = false;

/** Skips a JSON string starting at `s[i] === '"'`; returns the index after its closing quote, or -1. */
function skipString(s: Uint8Array, i: number): number {
  const len = s.length;
  escaped = false;
  i++;
  while (i < len) {
    const c = s[i] ?? -1;
    if (c === 0x22) return i + 1;
    if (c === 0x5c) {
      escaped = true;
      i += 2;
    } else i++;
  }
  return -1;
}

const INPUTS = [0x69, 0x6e, 0x70, 0x75, 0x74, 0x73]; // inputs
const DATA = [0x64, 0x61, 0x74, 0x61]; // data
const DATATYPE = [0x64, 0x61, 0x74, 0x61, 0x74, 0x79, 0x70, 0x65]; // datatype
const FP32_STRING = [0x22, 0x46, 0x50, 0x33, 0x32, 0x22]; // "FP32"
const ZERO = new Uint8Array([0x30]);

function matches(s: Uint8Array, at: number, word: readonly number[]): boolean {
  for (let k = 0; k < word.length; k++) if (s[at + k] !== word[k]) return false;
  return true;
}

/** The body with each taken `inputs[i].data` array replaced by `0`, and the lists by input index. */
export interface SplitV2Json {
  rest: Uint8Array;
  lists: Map<number, NumberList>;
}

/**
 * Takes the flat numeric `data` arrays of a V2 request's `inputs` out of its JSON text (see the
 * module comment). Undefined when there is nothing to take or the text is anything but plain: the
 * caller then parses the whole text with `JSON.parse`.
 */
export function splitV2Json(s: Uint8Array): SplitV2Json | undefined {
  const len = s.length;
  // Only worth it for bodies with sizeable arrays.
  if (len < 512) return undefined;
  let i = 0;
  while (i < len && isSpace(s[i] ?? -1)) i++;
  if ((s[i] ?? -1) !== 0x7b) return undefined;
  // Containers open: depth 1 = the request object, 2 = the inputs array, 3 = an input object.
  let depth = 0;
  let inInputs = false; // depth 2 is the top-level "inputs" array
  let inputsSeen = false;
  let element = 0; // index of the current element of the inputs array
  let dataSeen = false; // the current input object already had a "data" key
  let fp32 = false; // the current input object's "datatype" (so far) is "FP32"
  let keyStart = -1; // the last string read (a key when followed by ':')
  let keyEnd = -1;
  let keyEscaped = false;
  let pieces: Uint8Array[] | undefined;
  let last = 0;
  const lists = new Map<number, NumberList>();
  while (i < len) {
    const c = s[i] ?? -1;
    if (c === 0x22) {
      const end = skipString(s, i);
      if (end < 0) return undefined;
      keyStart = i + 1;
      keyEnd = end - 1;
      keyEscaped = escaped;
      i = end;
      continue;
    }
    if (c === 0x3a) {
      // A key: what matters is "inputs" at depth 1 and "data" in an input object (depth 3).
      const keyLength = keyEnd - keyStart;
      i++;
      // An escaped key could spell "inputs" or "data" (JSON.parse reads "d\u0061ta" as "data"):
      // where those keys matter, leave such bodies to JSON.parse.
      if (keyEscaped && (depth === 1 || (depth === 3 && inInputs))) return undefined;
      if (depth === 1 && keyLength === 6 && matches(s, keyStart, INPUTS)) {
        if (inputsSeen) return undefined;
        inputsSeen = true;
        while (i < len && isSpace(s[i] ?? -1)) i++;
        if ((s[i] ?? -1) !== 0x5b) return undefined;
        depth = 2;
        inInputs = true;
        element = 0;
        i++;
        continue;
      }
      if (depth === 3 && inInputs && keyLength === 8 && matches(s, keyStart, DATATYPE)) {
        while (i < len && isSpace(s[i] ?? -1)) i++;
        fp32 = matches(s, i, FP32_STRING);
        continue;
      }
      if (depth === 3 && inInputs && keyLength === 4 && matches(s, keyStart, DATA)) {
        // Only FP32 inputs whose datatype comes first (as every V2 client writes it); any other
        // body goes to JSON.parse whole, having cost no more than this scan of its first bytes.
        if (dataSeen || !fp32) return undefined;
        dataSeen = true;
        while (i < len && isSpace(s[i] ?? -1)) i++;
        if ((s[i] ?? -1) !== 0x5b) continue;
        const list = readNumberList(s, i);
        if (list === undefined) return undefined;
        pieces ??= [];
        pieces.push(s.subarray(last, i), ZERO);
        last = list.to;
        lists.set(element, list);
        i = list.to;
      }
      continue;
    }
    if (c === 0x7b || c === 0x5b) {
      depth++;
      if (depth === 3 && inInputs) {
        dataSeen = false;
        fp32 = false;
      }
      i++;
      continue;
    }
    if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth === 1 && inInputs) inInputs = false;
      if (depth < 0) return undefined;
      i++;
      continue;
    }
    if (c === 0x2c && depth === 2 && inInputs) element++;
    i++;
  }
  if (pieces === undefined) return undefined;
  pieces.push(s.subarray(last));
  return { rest: concatBytes(pieces), lists };
}
